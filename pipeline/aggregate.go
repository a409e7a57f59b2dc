package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
)

// aggFn is one of the supported aggregate functions.
type aggFn uint8

const (
	aggCount aggFn = iota
	aggSum
	aggMin
	aggMax
	aggAvg
	aggFirst
	aggLast
)

var aggNames = map[string]aggFn{
	"count": aggCount, "sum": aggSum, "min": aggMin, "max": aggMax,
	"avg": aggAvg, "first": aggFirst, "last": aggLast,
}

var (
	aggRe   = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(\s*([^()\s]*)\s*\)\s*$`)
	fieldRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)
)

// ParseAggregate parses an aggregate: "count()" or fn(field) with fn one of
// sum, min, max, avg, first, last. It returns the function and the field
// ("" for count). The configuration validates aggregates with it.
func ParseAggregate(s string) (fn, field string, err error) {
	const fns = "sum, min, max, avg, first, last"
	m := aggRe.FindStringSubmatch(s)
	if m == nil {
		return "", "", fmt.Errorf("must be count() or fn(field) with fn one of %s (got %q)", fns, s)
	}
	fn, field = m[1], m[2]
	if _, ok := aggNames[fn]; !ok {
		return "", "", fmt.Errorf("unknown function %q: must be one of count, %s (got %q)", fn, fns, s)
	}
	if fn == "count" {
		if field != "" {
			return "", "", fmt.Errorf("count() takes no field (got %q)", s)
		}
		return fn, "", nil
	}
	if field == "" {
		return "", "", fmt.Errorf("%s() needs a field, e.g. %s(temperature) (got %q)", fn, fn, s)
	}
	if !fieldRe.MatchString(field) {
		return "", "", fmt.Errorf("field must match %s (got %q)", fieldRe, s)
	}
	return fn, field, nil
}

// aggregate is one output column of a window stage.
type aggregate struct {
	name  string
	fn    aggFn
	input int // index into the event's value vector; -1 for count()
}

// aggPlan is the compiled aggregate list of a window stage: output columns in
// name order and the distinct numeric input fields they read.
type aggPlan struct {
	aggs   []aggregate
	inputs []string
}

func compileAggregates(m map[string]string) (*aggPlan, error) {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	p := &aggPlan{}
	idx := map[string]int{}
	for _, n := range names {
		fnName, field, err := ParseAggregate(m[n])
		if err != nil {
			return nil, fmt.Errorf("aggregate %s: %w", n, err)
		}
		a := aggregate{name: n, fn: aggNames[fnName], input: -1}
		if field != "" {
			i, ok := idx[field]
			if !ok {
				i = len(p.inputs)
				idx[field] = i
				p.inputs = append(p.inputs, field)
			}
			a.input = i
		}
		p.aggs = append(p.aggs, a)
	}
	if len(p.aggs) == 0 {
		return nil, errors.New("no aggregates")
	}
	return p, nil
}

// acc is the accumulator of one aggregate in one window. first and last
// break ties of event time by value (the lower first, the higher last), so
// a result does not depend on the order readings arrived in. Which fields are
// meaningful depends on the function; the encoding writes only those.
type acc struct {
	n   uint64
	v   float64 // sum, min, max, first or last value
	ts  int64   // event time of first/last
	set bool
}

func (a *acc) add(fn aggFn, v float64, ts int64) {
	switch fn {
	case aggCount:
		a.n++
	case aggSum, aggAvg:
		a.n++
		a.v += v
	case aggMin:
		if !a.set || v < a.v {
			a.v = v
		}
	case aggMax:
		if !a.set || v > a.v {
			a.v = v
		}
	case aggFirst:
		if !a.set || ts < a.ts || (ts == a.ts && v < a.v) {
			a.v, a.ts = v, ts
		}
	case aggLast:
		if !a.set || ts > a.ts || (ts == a.ts && v > a.v) {
			a.v, a.ts = v, ts
		}
	}
	a.set = true
}

// merge folds b into a (session windows that grow together).
func (a *acc) merge(fn aggFn, b acc) {
	if !b.set {
		return
	}
	if !a.set {
		*a = b
		return
	}
	switch fn {
	case aggCount:
		a.n += b.n
	case aggSum, aggAvg:
		a.n += b.n
		a.v += b.v
	case aggMin:
		a.v = math.Min(a.v, b.v)
	case aggMax:
		a.v = math.Max(a.v, b.v)
	case aggFirst:
		if b.ts < a.ts || (b.ts == a.ts && b.v < a.v) {
			a.v, a.ts = b.v, b.ts
		}
	case aggLast:
		if b.ts > a.ts || (b.ts == a.ts && b.v > a.v) {
			a.v, a.ts = b.v, b.ts
		}
	}
}

func (a *acc) result(fn aggFn) float64 {
	switch fn {
	case aggCount:
		return float64(a.n)
	case aggAvg:
		if a.n == 0 {
			return math.NaN()
		}
		return a.v / float64(a.n)
	}
	return a.v
}

func appendAcc(dst []byte, fn aggFn, a *acc) []byte {
	if !a.set {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	switch fn {
	case aggCount:
		dst = binary.AppendUvarint(dst, a.n)
	case aggSum, aggAvg:
		dst = binary.AppendUvarint(dst, a.n)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(a.v))
	case aggMin, aggMax:
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(a.v))
	case aggFirst, aggLast:
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(a.v))
		dst = binary.AppendVarint(dst, a.ts)
	}
	return dst
}

var errShortValue = errors.New("pipeline: state value is truncated")

func readAcc(b []byte, fn aggFn, a *acc) ([]byte, error) {
	if len(b) < 1 {
		return nil, errShortValue
	}
	*a = acc{set: b[0] == 1}
	b = b[1:]
	if !a.set {
		return b, nil
	}
	var n int
	readF := func() error {
		if len(b) < 8 {
			return errShortValue
		}
		a.v = math.Float64frombits(binary.LittleEndian.Uint64(b))
		b = b[8:]
		return nil
	}
	switch fn {
	case aggCount:
		a.n, n = binary.Uvarint(b)
		if n <= 0 {
			return nil, errShortValue
		}
		b = b[n:]
	case aggSum, aggAvg:
		a.n, n = binary.Uvarint(b)
		if n <= 0 {
			return nil, errShortValue
		}
		b = b[n:]
		if err := readF(); err != nil {
			return nil, err
		}
	case aggMin, aggMax:
		if err := readF(); err != nil {
			return nil, err
		}
	case aggFirst, aggLast:
		if err := readF(); err != nil {
			return nil, err
		}
		a.ts, n = binary.Varint(b)
		if n <= 0 {
			return nil, errShortValue
		}
		b = b[n:]
	}
	return b, nil
}

// aggSummary formats a plan for error messages.
func (p *aggPlan) String() string {
	parts := make([]string, len(p.aggs))
	for i, a := range p.aggs {
		parts[i] = a.name
	}
	return strings.Join(parts, ",")
}
