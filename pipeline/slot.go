package pipeline

import (
	"math"
	"strconv"
	"unsafe"
)

// A slot is one field of a reading on the slot path (slotpath.go): its
// value unboxed, by kind. A missing field and a JSON null are both
// slotNil, as they are both nil in a reading's Fields.
//
// Three words, so that the compiler keeps slots in registers (it does for
// structs of at most four fields and 32 bytes): a larger slot is built in
// memory and copied at every assignment and return, and reading it back
// right after it was written field by field stalls the CPU.
type slot struct {
	kind slotKind
	n    uint64         // slotFloat: math.Float64bits; slotInt: int; slotBool: 0 or 1; slotString: the length
	p    unsafe.Pointer // slotString: the bytes; slotAny: an *any (a JSON object or array, or an unusual expression result)
}

type slotKind uint8

const (
	slotNil slotKind = iota
	slotFloat
	slotInt
	slotString
	slotBool
	slotAny
)

func floatSlot(x float64) slot { return slot{kind: slotFloat, n: math.Float64bits(x)} }
func intSlot(x int) slot       { return slot{kind: slotInt, n: uint64(x)} }

func stringSlot(s string) slot {
	return slot{kind: slotString, n: uint64(len(s)), p: unsafe.Pointer(unsafe.StringData(s))}
}

// anySlot boxes x (it allocates: for the rare values that are not a
// number, string, boolean or null).
func anySlot(x any) slot {
	b := new(any)
	*b = x
	return slot{kind: slotAny, p: unsafe.Pointer(b)}
}

func boolSlot(b bool) slot {
	if b {
		return slot{kind: slotBool, n: 1}
	}
	return slot{kind: slotBool}
}

func (v slot) float() float64 { return math.Float64frombits(v.n) }
func (v slot) int() int       { return int(v.n) }
func (v slot) bool() bool     { return v.n != 0 }
func (v slot) str() string    { return unsafe.String((*byte)(v.p), int(v.n)) } // slotString
func (v slot) any() any       { return *(*any)(v.p) }                          // slotAny

// slotOf is the slot of a value as a reading's Fields would hold it.
func slotOf(x any) slot {
	switch x := x.(type) {
	case nil:
		return slot{}
	case float64:
		return floatSlot(x)
	case int:
		return intSlot(x)
	case string:
		return stringSlot(x)
	case bool:
		return boolSlot(x)
	}
	return anySlot(x)
}

// value is the slot as a reading's Fields would hold it (boxed: it
// allocates for numbers and strings).
func (v slot) value() any {
	switch v.kind {
	case slotFloat:
		return v.float()
	case slotInt:
		return v.int()
	case slotString:
		return v.str()
	case slotBool:
		return v.bool()
	case slotAny:
		return v.any()
	}
	return nil
}

// typeName is typeName of the slot's value.
func (v slot) typeName() string {
	switch v.kind {
	case slotNil:
		return "null"
	case slotFloat, slotInt:
		return "number"
	case slotString:
		return "string"
	case slotBool:
		return "boolean"
	}
	return typeName(v.any())
}

// appendKeyPart is keyString of the slot's value appended to dst, without
// an allocation for numbers.
func (v slot) appendKeyPart(dst []byte) ([]byte, bool) {
	switch v.kind {
	case slotString:
		return append(dst, v.str()...), true
	case slotFloat:
		return strconv.AppendFloat(dst, v.float(), 'f', -1, 64), true
	case slotInt:
		return strconv.AppendInt(dst, int64(v.int()), 10), true
	case slotAny:
		s, ok := keyString(v.any())
		return append(dst, s...), ok
	}
	return dst, false
}

// slotLayout maps the field names a chain uses to slot indices; it is
// fixed when the job is built.
type slotLayout struct {
	names []string
	index map[string]int
}

func newSlotLayout() *slotLayout { return &slotLayout{index: map[string]int{}} }

// add returns the slot index of name, adding it if new.
func (l *slotLayout) add(name string) int {
	if i, ok := l.index[name]; ok {
		return i
	}
	l.index[name] = len(l.names)
	l.names = append(l.names, name)
	return len(l.names) - 1
}

// env fills m with the slots as a reading's Fields would hold them, for
// an expression the slot path runs on expr-lang's VM.
func (l *slotLayout) env(m map[string]any, vals []slot) map[string]any {
	clear(m)
	for i, v := range vals {
		if v.kind != slotNil {
			m[l.names[i]] = v.value()
		}
	}
	return m
}
