package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/eddy-stream/eddy/pipeline/lang"
)

// aggregate is one output column of a window stage.
type aggregate struct {
	name  string
	fn    lang.Func
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
		fn, field, err := lang.ParseAggregate(m[n])
		if err != nil {
			return nil, fmt.Errorf("aggregate %s: %w", n, err)
		}
		a := aggregate{name: n, fn: fn, input: -1}
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
	// partial: the aggregate did not see the whole window. It was added
	// by an aggregate migration (aggmigrate.go) while the window was open,
	// so readings before the restore are missing from it.
	partial bool
}

func (a *acc) add(fn lang.Func, v float64, ts int64) {
	switch fn {
	case lang.Count:
		a.n++
	case lang.Sum, lang.Avg:
		a.n++
		a.v += v
	case lang.Min:
		if !a.set || v < a.v {
			a.v = v
		}
	case lang.Max:
		if !a.set || v > a.v {
			a.v = v
		}
	case lang.First:
		if !a.set || ts < a.ts || (ts == a.ts && v < a.v) {
			a.v, a.ts = v, ts
		}
	case lang.Last:
		if !a.set || ts > a.ts || (ts == a.ts && v > a.v) {
			a.v, a.ts = v, ts
		}
	}
	a.set = true
}

// merge folds b into a (session windows that grow together).
func (a *acc) merge(fn lang.Func, b acc) {
	if b.partial {
		a.partial = true
	}
	if !b.set {
		return
	}
	if !a.set {
		p := a.partial
		*a = b
		a.partial = p
		return
	}
	switch fn {
	case lang.Count:
		a.n += b.n
	case lang.Sum, lang.Avg:
		a.n += b.n
		a.v += b.v
	case lang.Min:
		a.v = math.Min(a.v, b.v)
	case lang.Max:
		a.v = math.Max(a.v, b.v)
	case lang.First:
		if b.ts < a.ts || (b.ts == a.ts && b.v < a.v) {
			a.v, a.ts = b.v, b.ts
		}
	case lang.Last:
		if b.ts > a.ts || (b.ts == a.ts && b.v > a.v) {
			a.v, a.ts = b.v, b.ts
		}
	}
}

// result is the aggregate's value. Count and sum of nothing are 0; the
// others of nothing have no value (NaN, null in a result): only an
// aggregate added by a migration to a window that saw no reading since
// fires unset.
func (a *acc) result(fn lang.Func) float64 {
	switch fn {
	case lang.Count:
		return float64(a.n)
	case lang.Sum:
		return a.v
	case lang.Avg:
		if a.n == 0 {
			return math.NaN()
		}
		return a.v / float64(a.n)
	}
	if !a.set {
		return math.NaN()
	}
	return a.v
}

// Flags byte of an encoded accumulator.
const (
	accSet     = 1 // the fields follow
	accPartial = 2 // acc.partial (encoding 2)
)

func appendAcc(dst []byte, fn lang.Func, a *acc) []byte {
	var flags byte
	if a.partial {
		flags |= accPartial
	}
	if !a.set {
		return append(dst, flags)
	}
	dst = append(dst, flags|accSet)
	switch fn {
	case lang.Count:
		dst = binary.AppendUvarint(dst, a.n)
	case lang.Sum, lang.Avg:
		dst = binary.AppendUvarint(dst, a.n)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(a.v))
	case lang.Min, lang.Max:
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(a.v))
	case lang.First, lang.Last:
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(a.v))
		dst = binary.AppendVarint(dst, a.ts)
	}
	return dst
}

var errShortValue = errors.New("pipeline: state value is truncated")

func readAcc(b []byte, fn lang.Func, a *acc) ([]byte, error) {
	if len(b) < 1 {
		return nil, errShortValue
	}
	if b[0]&^(accSet|accPartial) != 0 {
		return nil, fmt.Errorf("pipeline: state value has accumulator flags %#x", b[0])
	}
	*a = acc{set: b[0]&accSet != 0, partial: b[0]&accPartial != 0}
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
	case lang.Count:
		a.n, n = binary.Uvarint(b)
		if n <= 0 {
			return nil, errShortValue
		}
		b = b[n:]
	case lang.Sum, lang.Avg:
		a.n, n = binary.Uvarint(b)
		if n <= 0 {
			return nil, errShortValue
		}
		b = b[n:]
		if err := readF(); err != nil {
			return nil, err
		}
	case lang.Min, lang.Max:
		if err := readF(); err != nil {
			return nil, err
		}
	case lang.First, lang.Last:
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
