package pipeline

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/expr-lang/expr/vm"

	"github.com/eddy-stream/eddy/pipeline/lang"
)

// slotExprFields are the fields of the expression equivalence test; m is
// never set.
var slotExprFields = []string{"a", "b", "c", "s", "t", "f", "m"}

// randSlotExpr builds a random expression of depth up to d, mostly of the
// forms the closures compile, some they do not (calls, in, ??, **, string
// concatenation), so both paths and the fallback are exercised.
func randSlotExpr(rng *rand.Rand, d int) string {
	if d == 0 || rng.IntN(4) == 0 {
		switch rng.IntN(10) {
		case 0, 1, 2, 3:
			return slotExprFields[rng.IntN(len(slotExprFields))]
		case 4:
			return fmt.Sprint([]int{0, 1, 2, -3, 7, 1 << 40}[rng.IntN(6)])
		case 5:
			return []string{"0.0", "1.5", "-2.25", "32", "1e300", "0.1"}[rng.IntN(6)]
		case 6:
			return []string{`"x"`, `"y"`, `""`}[rng.IntN(3)]
		case 7:
			return []string{"true", "false"}[rng.IntN(2)]
		case 8:
			return "nil"
		}
		return slotExprFields[rng.IntN(len(slotExprFields))]
	}
	x, y := randSlotExpr(rng, d-1), randSlotExpr(rng, d-1)
	switch rng.IntN(12) {
	case 0:
		return "-" + x
	case 1:
		return "!" + x
	case 2:
		return "(" + x + " ? " + y + " : " + randSlotExpr(rng, d-1) + ")"
	case 3:
		return []string{"abs(", "len(", "string("}[rng.IntN(3)] + x + ")"
	case 4:
		return "(" + x + []string{" ?? ", " in ", " ** "}[rng.IntN(3)] + y + ")"
	}
	ops := []string{"+", "-", "*", "/", "%", "<", ">", "<=", ">=", "==", "!=", "&&", "||", "and", "or", "not"}
	op := ops[rng.IntN(len(ops))]
	if op == "not" {
		return "(not " + x + ")"
	}
	return "(" + x + " " + op + " " + y + ")"
}

func randSlotValue(rng *rand.Rand) (any, bool) {
	switch rng.IntN(16) {
	case 0:
		return nil, false // missing
	case 1:
		return nil, true // JSON null
	case 2, 3, 4:
		return []float64{0, 1, -1, 2.5, -50, 150, 1e300, -0.0, 3, math.Inf(1)}[rng.IntN(10)], true
	case 5, 6:
		return []int{0, 1, -1, 2, 7, math.MaxInt, math.MinInt}[rng.IntN(7)], true
	case 7, 8:
		return []string{"x", "y", "", "10"}[rng.IntN(4)], true
	case 9, 10:
		return rng.IntN(2) == 0, true
	case 11:
		return []any{1.0, "x"}, true
	case 12:
		return map[string]any{"k": 1.0}, true
	case 13:
		return math.NaN(), true
	}
	return rng.Float64()*200 - 50, true
}

// sameValue: the same Go type and value (NaN equal to NaN).
func sameValue(a, b any) bool {
	if fa, ok := a.(float64); ok {
		fb, ok := b.(float64)
		return ok && (fa == fb && math.Signbit(fa) == math.Signbit(fb) || fa != fa && fb != fb)
	}
	return reflect.DeepEqual(a, b)
}

// TestSlotExprMatchesVM compares, on random expressions and inputs (nulls,
// missing fields, type mismatches, int and float, division by zero,
// strings), the closure of every expression against expr-lang's VM on the
// map a reading's Fields would be: where the closure decides, it gives
// exactly the VM's result, and never where the VM fails.
func TestSlotExprMatchesVM(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	l := newSlotLayout()
	for _, f := range slotExprFields {
		l.add(f)
	}
	var compiled, decided, total int
	fixed := []string{
		"temperature > -50 && temperature < 150", "temperature * 1.8 + 32", "a / 0", "a % 0", "a / b",
		"s == t", "s < t", "a == nil", "nil == nil", "a != b", "a % b", "-a", "!f", "a > 1 || f",
		"1 + 2", "7 / 2", "a == 1", "s == 1", "(a > 0 ? s : t)", "a ** 2", "a + s", "1e300 * 1e300",
		// range tests (one closure for a float64 field, fieldConstCmp)
		"a >= 1 && a <= 2.5", "a < 0 && a > -3", "a <= -1 and a >= -1", "a > 1 && b < 2", "s > 1 && s < 3",
		// float arithmetic (one float64 closure, compileFloat)
		"32 - a * 1.8", "(a + b) * (c - 0.5) / 3", "-a * b", "1 - -a", "7 / a", "a * 1e300 * 1e300", "a * 3 + b / 2 - 1",
	}
	for _, f := range []string{"temperature"} {
		l.add(f)
	}
	exprs := fixed
	for range 3000 {
		exprs = append(exprs, randSlotExpr(rng, 1+rng.IntN(4)))
	}
	for ei, src := range exprs {
		for _, asBool := range []bool{false, true} {
			var prog *vm.Program
			var err error
			if asBool {
				prog, err = lang.CompileFilter(src)
			} else {
				prog, err = lang.CompileMap(src)
			}
			if err != nil {
				continue
			}
			if names, ok := exprFields(prog); !ok {
				t.Fatalf("%s: reads $env", src)
			} else {
				for _, n := range names {
					l.add(n)
				}
			}
			fn := compileSlotExpr(prog, l)
			if ei < 2 && fn == nil {
				t.Fatalf("%q: the demo's expression does not compile to a closure", src)
			}
			if fn == nil {
				continue
			}
			compiled++
			for range 40 {
				env := map[string]any{}
				vals := make([]slot, len(l.names))
				for i, name := range l.names {
					if name == "m" {
						continue
					}
					v, present := randSlotValue(rng)
					if present {
						env[name] = v
						vals[i] = slotOf(v)
					}
				}
				total++
				want, werr := vm.Run(prog, env)
				got, ok := fn(vals)
				if !ok || asBool && got.kind != slotBool { // the filter node then runs the VM
					continue
				}
				decided++
				if werr != nil {
					t.Fatalf("%q on %v: closure gave %v, VM failed: %v", src, env, got.value(), werr)
				}
				if !sameValue(got.value(), want) {
					t.Fatalf("%q (filter %v) on %v: closure %#v, VM %#v", src, asBool, env, got.value(), want)
				}
			}
		}
	}
	t.Logf("%d expressions compiled to closures; %d of %d evaluations decided by the closure", compiled, decided, total)
	if compiled < 1000 || decided < total/10 {
		t.Fatalf("too few closures exercised: %d compiled, %d decided", compiled, decided)
	}
}
