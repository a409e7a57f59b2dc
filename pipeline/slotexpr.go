package pipeline

import (
	"reflect"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

// slotFn evaluates a compiled expression over a reading's slots. ok false
// means the closure does not decide for these inputs (a type it does not
// handle, a runtime error such as a comparison with null): the caller runs
// the expression on expr-lang's VM instead, which gives the result or the
// error exactly as the map path does. A slotFn never returns a result the
// VM would not.
type slotFn func(vals []slot) (v slot, ok bool)

// exprFields lists the identifiers an expression reads (a superset of the
// reading's fields it can see: local names and builtins are harmless
// extras). ok is false if it reads the whole environment ($env), which the
// slot path cannot give it.
func exprFields(prog *vm.Program) (names []string, ok bool) {
	c := &identCollector{ok: true}
	n := prog.Node()
	ast.Walk(&n, c)
	return c.names, c.ok
}

type identCollector struct {
	names []string
	ok    bool
}

func (c *identCollector) Visit(node *ast.Node) {
	if id, isID := (*node).(*ast.IdentifierNode); isID {
		if id.Value == "$env" {
			c.ok = false
		}
		c.names = append(c.names, id.Value)
	}
}

// compileSlotExpr compiles the checked and optimized tree of prog to a
// closure over slots of layout l, or returns nil when the tree uses
// anything but field access, number, string, boolean and null literals,
// arithmetic (+ - * / %), comparisons, the logical operators and the
// conditional; those run on the VM. Every identifier of prog must be in l.
func compileSlotExpr(prog *vm.Program, l *slotLayout) slotFn {
	return compileSlotNode(prog.Node(), l)
}

func constFn(c slot) slotFn { return func([]slot) (slot, bool) { return c, true } }

func compileSlotNode(node ast.Node, l *slotLayout) slotFn {
	switch n := node.(type) {
	case *ast.IdentifierNode:
		i, ok := l.index[n.Value]
		if !ok || n.Value == "$env" {
			return nil
		}
		return func(vals []slot) (slot, bool) { return vals[i], true }
	case *ast.IntegerNode:
		// The compiler pushes an integer literal as the type the checker
		// gave it.
		switch t := n.Type(); {
		case t == nil || t.Kind() == reflect.Int:
			return constFn(intSlot(n.Value))
		case t.Kind() == reflect.Float64:
			return constFn(floatSlot(float64(n.Value)))
		}
		return nil
	case *ast.FloatNode:
		if t := n.Type(); t != nil && t.Kind() == reflect.Float32 {
			return nil
		}
		return constFn(floatSlot(n.Value))
	case *ast.StringNode:
		return constFn(stringSlot(n.Value))
	case *ast.BoolNode:
		return constFn(boolSlot(n.Value))
	case *ast.NilNode:
		return constFn(slot{})
	case *ast.ConstantNode:
		switch n.Value.(type) {
		case nil, float64, int, string, bool:
			return constFn(slotOf(n.Value))
		}
		return nil
	case *ast.UnaryNode:
		return compileUnary(n, l)
	case *ast.BinaryNode:
		return compileBinary(n, l)
	case *ast.ConditionalNode:
		c, a, b := compileSlotNode(n.Cond, l), compileSlotNode(n.Exp1, l), compileSlotNode(n.Exp2, l)
		if c == nil || a == nil || b == nil {
			return nil
		}
		return func(vals []slot) (slot, bool) {
			cv, ok := c(vals)
			if !ok || cv.kind != slotBool {
				return slot{}, false
			}
			if cv.bool() {
				return a(vals)
			}
			return b(vals)
		}
	}
	return nil
}

func compileUnary(n *ast.UnaryNode, l *slotLayout) slotFn {
	x := compileSlotNode(n.Node, l)
	if x == nil {
		return nil
	}
	switch n.Operator {
	case "-":
		return func(vals []slot) (slot, bool) {
			v, ok := x(vals)
			switch {
			case !ok:
			case v.kind == slotFloat:
				return floatSlot(-v.float()), true
			case v.kind == slotInt:
				return intSlot(-v.int()), true
			}
			return slot{}, false
		}
	case "!", "not":
		return func(vals []slot) (slot, bool) {
			v, ok := x(vals)
			if !ok || v.kind != slotBool {
				return slot{}, false
			}
			return boolSlot(!v.bool()), true
		}
	}
	return nil
}

func isNum(v slot) bool { return v.kind == slotFloat || v.kind == slotInt }

// num is a number slot as float64, as expr-lang's runtime converts an int
// beside a float.
func num(v slot) float64 {
	if v.kind == slotInt {
		return float64(v.int())
	}
	return v.float()
}

func compileBinary(n *ast.BinaryNode, l *slotLayout) slotFn {
	a, b := compileSlotNode(n.Left, l), compileSlotNode(n.Right, l)
	if a == nil || b == nil {
		return nil
	}
	switch n.Operator {
	case "and", "&&":
		and := func(vals []slot) (slot, bool) {
			x, ok := a(vals)
			if !ok || x.kind != slotBool {
				return slot{}, false
			}
			if !x.bool() {
				return x, true
			}
			y, ok := b(vals)
			if !ok || y.kind != slotBool {
				return slot{}, false
			}
			return y, true
		}
		// A range test, "f > lo && f < hi" and the like: both comparisons
		// in one closure for a float64 field (no calls; both sides are
		// pure, so evaluating the second too changes nothing), and the
		// general closure for anything else.
		fa, oa, ka, okA := fieldConstCmp(n.Left, l)
		fb, ob, kb, okB := fieldConstCmp(n.Right, l)
		if okA && okB && fa == fb {
			return func(vals []slot) (slot, bool) {
				if x := &vals[fa]; x.kind == slotFloat {
					f := x.float()
					return boolSlot(cmpFloat(oa, f, ka) && cmpFloat(ob, f, kb)), true
				}
				return and(vals)
			}
		}
		return and
	case "or", "||":
		return func(vals []slot) (slot, bool) {
			x, ok := a(vals)
			if !ok || x.kind != slotBool {
				return slot{}, false
			}
			if x.bool() {
				return x, true
			}
			y, ok := b(vals)
			if !ok || y.kind != slotBool {
				return slot{}, false
			}
			return y, true
		}
	case "==", "!=":
		neg := n.Operator == "!="
		return func(vals []slot) (slot, bool) {
			x, ok1 := a(vals)
			y, ok2 := b(vals)
			if !ok1 || !ok2 {
				return slot{}, false
			}
			eq, ok := slotEqual(x, y)
			if !ok {
				return slot{}, false
			}
			return boolSlot(eq != neg), true
		}
	case "<", ">", "<=", ">=", "+", "-", "*", "/":
		return compileNumeric(n, a, b, l)
	case "%":
		return func(vals []slot) (slot, bool) {
			x, ok1 := a(vals)
			y, ok2 := b(vals)
			if !ok1 || !ok2 || x.kind != slotInt || y.kind != slotInt || y.int() == 0 {
				return slot{}, false
			}
			return intSlot(x.int() % y.int()), true
		}
	}
	return nil
}

// binop is an arithmetic or comparison operator.
type binop uint8

const (
	opLess binop = iota
	opMore
	opLessEq
	opMoreEq
	opAdd
	opSub
	opMul
	opDiv
)

var binops = map[string]binop{"<": opLess, ">": opMore, "<=": opLessEq, ">=": opMoreEq, "+": opAdd, "-": opSub, "*": opMul, "/": opDiv}

// compileNumeric compiles an arithmetic or comparison operator. The forms
// of most filters and maps, a field or a subexpression against a number
// literal, get closures that decide a float64 field without a call for the
// literal; everything else goes through evalBinop.
func compileNumeric(n *ast.BinaryNode, a, b slotFn, l *slotLayout) slotFn {
	s := compileNumericSlots(n, a, b, l)
	if ff := compileFloat(n, l); ff != nil {
		return func(vals []slot) (slot, bool) {
			if f, ok := ff(vals); ok {
				return floatSlot(f), true
			}
			return s(vals)
		}
	}
	return s
}

func compileNumericSlots(n *ast.BinaryNode, a, b slotFn, l *slotLayout) slotFn {
	op := binops[n.Operator]
	fi := -1
	if id, ok := n.Left.(*ast.IdentifierNode); ok {
		fi = l.index[id.Value]
	}
	if c, ok := constValue(n.Right, b); ok && isNum(c) {
		k := num(c)
		if fi >= 0 {
			if f := fieldCompare(op, fi, k, c); f != nil {
				return f
			}
			return func(vals []slot) (slot, bool) {
				x := &vals[fi]
				if x.kind == slotFloat {
					return floatOp(op, x.float(), k)
				}
				return evalBinop(op, *x, c)
			}
		}
		return func(vals []slot) (slot, bool) {
			x, ok := a(vals)
			if !ok {
				return slot{}, false
			}
			if x.kind == slotFloat {
				return floatOp(op, x.float(), k)
			}
			return evalBinop(op, x, c)
		}
	}
	return func(vals []slot) (slot, bool) {
		x, ok1 := a(vals)
		y, ok2 := b(vals)
		if !ok1 || !ok2 {
			return slot{}, false
		}
		return evalBinop(op, x, y)
	}
}

// floatFn evaluates an arithmetic expression over float64 fields, with no
// slot in between; ok is false when a field it reads does not
// hold a float64.
type floatFn func(vals []slot) (f float64, ok bool)

// compileFloat compiles an arithmetic expression (+ - * / and unary minus)
// over fields and number literals, each operation with a field or a
// subexpression on at least one side, to a floatFn; nil for anything else.
// When every field it reads holds a float64, every operation is one of two
// float64 (an integer literal beside one converted, as evalBinop does), so
// its result is the slot closure's and the VM's; otherwise the slot
// closure decides.
func compileFloat(node ast.Node, l *slotLayout) floatFn {
	switch n := node.(type) {
	case *ast.IdentifierNode:
		i, ok := l.index[n.Value]
		if !ok || n.Value == "$env" {
			return nil
		}
		return func(vals []slot) (float64, bool) {
			x := &vals[i]
			return x.float(), x.kind == slotFloat
		}
	case *ast.UnaryNode:
		if n.Operator != "-" {
			return nil
		}
		x := compileFloat(n.Node, l)
		if x == nil {
			return nil
		}
		return func(vals []slot) (float64, bool) {
			f, ok := x(vals)
			return -f, ok
		}
	case *ast.BinaryNode:
		op, isOp := binops[n.Operator]
		if !isOp || op < opAdd {
			return nil
		}
		a, b := compileFloat(n.Left, l), compileFloat(n.Right, l)
		switch {
		case a != nil && b != nil:
			return func(vals []slot) (float64, bool) {
				f, ok1 := a(vals)
				g, ok2 := b(vals)
				return arith(op, f, g), ok1 && ok2
			}
		case a != nil:
			if k, ok := numLiteral(n.Right, l); ok {
				return func(vals []slot) (float64, bool) {
					f, ok := a(vals)
					return arith(op, f, k), ok
				}
			}
		case b != nil:
			if k, ok := numLiteral(n.Left, l); ok {
				return func(vals []slot) (float64, bool) {
					g, ok := b(vals)
					return arith(op, k, g), ok
				}
			}
		}
	}
	return nil
}

// numLiteral is the value of a number literal, as float64.
func numLiteral(n ast.Node, l *slotLayout) (float64, bool) {
	fn := compileSlotNode(n, l)
	if fn == nil {
		return 0, false
	}
	c, ok := constValue(n, fn)
	if !ok || !isNum(c) {
		return 0, false
	}
	return num(c), true
}

// arith is the arithmetic op (opAdd … opDiv) of f and g, each result
// rounded to float64 (float64() keeps the compiler from fusing a multiply
// and an add).
func arith(op binop, f, g float64) float64 {
	switch op {
	case opAdd:
		return float64(f + g)
	case opSub:
		return float64(f - g)
	case opMul:
		return float64(f * g)
	}
	return float64(f / g)
}

// fieldConstCmp reports a comparison "field op k" of a field of the
// layout with a number literal k (or a negated one), as compileNumeric
// compiles to fieldCompare.
func fieldConstCmp(node ast.Node, l *slotLayout) (fi int, op binop, k float64, ok bool) {
	n, isBin := node.(*ast.BinaryNode)
	if !isBin {
		return 0, 0, 0, false
	}
	op, isOp := binops[n.Operator]
	if !isOp || op > opMoreEq {
		return 0, 0, 0, false
	}
	id, isID := n.Left.(*ast.IdentifierNode)
	if !isID || id.Value == "$env" {
		return 0, 0, 0, false
	}
	if fi, ok = l.index[id.Value]; !ok {
		return 0, 0, 0, false
	}
	fn := compileSlotNode(n.Right, l)
	if fn == nil {
		return 0, 0, 0, false
	}
	c, isConst := constValue(n.Right, fn)
	if !isConst || !isNum(c) {
		return 0, 0, 0, false
	}
	return fi, op, num(c), true
}

// cmpFloat is the comparison op (opLess … opMoreEq) of f and k.
func cmpFloat(op binop, f, k float64) bool {
	switch op {
	case opLess:
		return f < k
	case opMore:
		return f > k
	case opLessEq:
		return f <= k
	}
	return f >= k
}

// constValue is the value of a literal node compiled to fn.
func constValue(n ast.Node, fn slotFn) (slot, bool) {
	switch n.(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.ConstantNode:
		return fn(nil) // a literal's closure reads no slot
	}
	return slot{}, false
}

// fieldCompare is the closure of "field op k" for a comparison op, k the
// number literal c: one comparison for a float64 field.
func fieldCompare(op binop, fi int, k float64, c slot) slotFn {
	switch op {
	case opLess:
		return func(vals []slot) (slot, bool) {
			if x := &vals[fi]; x.kind == slotFloat {
				return boolSlot(x.float() < k), true
			}
			return evalBinop(op, vals[fi], c)
		}
	case opMore:
		return func(vals []slot) (slot, bool) {
			if x := &vals[fi]; x.kind == slotFloat {
				return boolSlot(x.float() > k), true
			}
			return evalBinop(op, vals[fi], c)
		}
	case opLessEq:
		return func(vals []slot) (slot, bool) {
			if x := &vals[fi]; x.kind == slotFloat {
				return boolSlot(x.float() <= k), true
			}
			return evalBinop(op, vals[fi], c)
		}
	case opMoreEq:
		return func(vals []slot) (slot, bool) {
			if x := &vals[fi]; x.kind == slotFloat {
				return boolSlot(x.float() >= k), true
			}
			return evalBinop(op, vals[fi], c)
		}
	}
	return nil
}

// floatOp is op on two float64 (an int beside a float64 is converted, as
// expr-lang's runtime does; NaN compares false, as in Go and expr-lang).
func floatOp(op binop, f, g float64) (slot, bool) {
	switch op {
	case opAdd, opSub, opMul, opDiv:
		return floatSlot(arith(op, f, g)), true
	case opLess:
		return boolSlot(f < g), true
	case opMore:
		return boolSlot(f > g), true
	case opLessEq:
		return boolSlot(f <= g), true
	}
	return boolSlot(f >= g), true
}

// evalBinop is op as expr-lang's runtime computes it, for numbers (and
// strings, compared); ok false for other operands.
func evalBinop(op binop, x, y slot) (slot, bool) {
	if op <= opMoreEq && x.kind == slotString && y.kind == slotString {
		switch op {
		case opLess:
			return boolSlot(x.str() < y.str()), true
		case opMore:
			return boolSlot(x.str() > y.str()), true
		case opLessEq:
			return boolSlot(x.str() <= y.str()), true
		}
		return boolSlot(x.str() >= y.str()), true
	}
	if !isNum(x) || !isNum(y) {
		return slot{}, false
	}
	if x.kind == slotInt && y.kind == slotInt && op != opDiv { // expr-lang divides as float64, also ints
		i, j := x.int(), y.int()
		switch op {
		case opAdd:
			return intSlot(i + j), true
		case opSub:
			return intSlot(i - j), true
		case opMul:
			return intSlot(i * j), true
		case opLess:
			return boolSlot(i < j), true
		case opMore:
			return boolSlot(i > j), true
		case opLessEq:
			return boolSlot(i <= j), true
		}
		return boolSlot(i >= j), true
	}
	return floatOp(op, num(x), num(y))
}

// slotEqual is expr-lang's runtime.Equal for slots; ok false for slotAny.
func slotEqual(x, y slot) (eq, ok bool) {
	if x.kind == slotAny || y.kind == slotAny {
		return false, false
	}
	switch {
	case x.kind == slotInt && y.kind == slotInt:
		return x.int() == y.int(), true
	case isNum(x) && isNum(y):
		return num(x) == num(y), true
	case x.kind != y.kind:
		return false, true
	case x.kind == slotString:
		return x.str() == y.str(), true
	case x.kind == slotBool:
		return x.bool() == y.bool(), true
	}
	return true, true // both null
}
