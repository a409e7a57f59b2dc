// Package oracle computes the window results a correct run must produce,
// independently of the pipeline's code: tests feed it the same readings they
// publish and compare what eddy emits with what it returns.
package oracle

import (
	"fmt"
	"math"
	"sort"
)

// Reading is one reading as the oracle sees it.
type Reading struct {
	Key  string // composite key, e.g. "site-1|dev-0003"
	TS   int64  // event time, unix ms
	Vals map[string]float64
}

// Window is tumbling (Size), sliding (Size, Slide) or session (Gap), in ms.
type Window struct {
	Type             string
	Size, Slide, Gap int64
}

// Agg is one output column: Fn is count, sum, min, max, avg, first or last.
// first and last break ties of event time by value, lower first, higher last.
type Agg struct{ Name, Fn, Field string }

// Result is the final value of one window of one key.
type Result struct {
	Key        string
	Start, End int64
	Values     map[string]float64
}

// ID is the map key of a result: key, start and end.
func ID(key string, start, end int64) string { return fmt.Sprintf("%s|%d|%d", key, start, end) }

type span struct {
	start, end int64
	rs         []Reading
}

// Compute returns every window's result for readings, keyed by ID. Only
// windows whose end is at or before closeAt (the final watermark + 1) are
// included: those are the windows a run must have fired.
func Compute(readings []Reading, w Window, aggs []Agg, closeAt int64) map[string]Result {
	byKey := map[string][]Reading{}
	for _, r := range readings {
		byKey[r.Key] = append(byKey[r.Key], r)
	}
	out := map[string]Result{}
	for key, rs := range byKey {
		var spans []span
		switch w.Type {
		case "tumbling", "sliding":
			slide := w.Slide
			if w.Type == "tumbling" {
				slide = w.Size
			}
			m := map[int64]*span{}
			for _, r := range rs {
				last := r.TS - floorMod(r.TS, slide)
				for s := last; s > r.TS-w.Size; s -= slide {
					sp := m[s]
					if sp == nil {
						sp = &span{start: s, end: s + w.Size}
						m[s] = sp
					}
					sp.rs = append(sp.rs, r)
				}
			}
			for _, sp := range m {
				spans = append(spans, *sp)
			}
		case "session":
			sorted := append([]Reading(nil), rs...)
			sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].TS < sorted[j].TS })
			for _, r := range sorted {
				if n := len(spans); n > 0 && r.TS <= spans[n-1].end {
					spans[n-1].end = max(spans[n-1].end, r.TS+w.Gap)
					spans[n-1].rs = append(spans[n-1].rs, r)
					continue
				}
				spans = append(spans, span{start: r.TS, end: r.TS + w.Gap, rs: []Reading{r}})
			}
		default:
			panic("oracle: unknown window type " + w.Type)
		}
		for _, sp := range spans {
			if sp.end > closeAt {
				continue
			}
			res := Result{Key: key, Start: sp.start, End: sp.end, Values: map[string]float64{}}
			for _, a := range aggs {
				res.Values[a.Name] = aggregate(a, sp.rs)
			}
			out[ID(key, sp.start, sp.end)] = res
		}
	}
	return out
}

func aggregate(a Agg, rs []Reading) float64 {
	switch a.Fn {
	case "count":
		return float64(len(rs))
	case "sum", "avg":
		s := 0.0
		for _, r := range rs {
			s += r.Vals[a.Field]
		}
		if a.Fn == "avg" {
			return s / float64(len(rs))
		}
		return s
	case "min":
		v := math.Inf(1)
		for _, r := range rs {
			v = math.Min(v, r.Vals[a.Field])
		}
		return v
	case "max":
		v := math.Inf(-1)
		for _, r := range rs {
			v = math.Max(v, r.Vals[a.Field])
		}
		return v
	case "first", "last":
		best := rs[0]
		for _, r := range rs[1:] {
			v, bv := r.Vals[a.Field], best.Vals[a.Field]
			if (a.Fn == "first" && (r.TS < best.TS || (r.TS == best.TS && v < bv))) ||
				(a.Fn == "last" && (r.TS > best.TS || (r.TS == best.TS && v > bv))) {
				best = r
			}
		}
		return best.Vals[a.Field]
	}
	panic("oracle: unknown aggregate " + a.Fn)
}

func floorMod(a, b int64) int64 { return ((a % b) + b) % b }

// Close reports whether a and b agree to within floating-point summation
// error (sums in a different order differ in the last bits).
func Close(a, b float64) bool {
	if a == b {
		return true
	}
	d := math.Abs(a - b)
	return d <= 1e-9*math.Max(math.Abs(a), math.Abs(b)) || d < 1e-9
}
