package lang

import (
	"fmt"
	"regexp"
)

// Func is an aggregate function.
type Func uint8

// The aggregate functions.
const (
	Count Func = iota
	Sum
	Min
	Max
	Avg
	First
	Last
)

var funcNames = [...]string{Count: "count", Sum: "sum", Min: "min", Max: "max", Avg: "avg", First: "first", Last: "last"}

// String returns the function's name as written in a configuration.
func (f Func) String() string {
	if int(f) < len(funcNames) {
		return funcNames[f]
	}
	return fmt.Sprintf("Func(%d)", f)
}

var (
	aggRe   = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(\s*([^()\s]*)\s*\)\s*$`)
	fieldRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)
)

// ParseAggregate parses an aggregate: "count()" or fn(field) with fn one of
// sum, min, max, avg, first, last. It returns the function and the field
// ("" for count).
func ParseAggregate(s string) (fn Func, field string, err error) {
	const fns = "sum, min, max, avg, first, last"
	m := aggRe.FindStringSubmatch(s)
	if m == nil {
		return 0, "", fmt.Errorf("must be count() or fn(field) with fn one of %s (got %q)", fns, s)
	}
	name, field := m[1], m[2]
	fn = Func(len(funcNames))
	for i, n := range funcNames {
		if n == name {
			fn = Func(i)
		}
	}
	switch {
	case int(fn) == len(funcNames):
		return 0, "", fmt.Errorf("unknown function %q: must be one of count, %s (got %q)", name, fns, s)
	case fn == Count && field != "":
		return 0, "", fmt.Errorf("count() takes no field (got %q)", s)
	case fn == Count:
		return fn, "", nil
	case field == "":
		return 0, "", fmt.Errorf("%s() needs a field, e.g. %s(temperature) (got %q)", name, name, s)
	case !fieldRe.MatchString(field):
		return 0, "", fmt.Errorf("field must match %s (got %q)", fieldRe, s)
	}
	return fn, field, nil
}
