package pipeline

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/storage/keygroup"
	"github.com/eddy-stream/eddy/storage/state"
	"github.com/eddy-stream/eddy/storage/timers"
)

// preAggOut is everything a window operator emits, in order.
type preAggOut struct {
	lines []string
}

func (o *preAggOut) result(r *Result) {
	vals := make([]string, len(r.Values))
	for i, v := range r.Values {
		vals[i] = fmt.Sprintf("%x", math.Float64bits(v)) // bit for bit
	}
	o.lines = append(o.lines, fmt.Sprintf("result %q [%d,%d) #%d %v", r.rawKey, r.Start, r.End, r.Firing, vals))
}

func (o *preAggOut) late(e *event, reason string) {
	o.lines = append(o.lines, fmt.Sprintf("late %q %d %s", e.key, e.ts, reason))
}

func newPreAggOp(t testing.TB, dir string, w *WindowSpec, plan *aggPlan, heap bool, limit int, ref bool) (*windowOp, *preAggOut) {
	t.Helper()
	asg, err := newAssigner(w)
	if err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(state.Options{Dir: dir, ColumnFamilies: []string{cfWindows, cfTimers}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kgs := keygroup.Range{Start: 0, End: 128}
	var ts timers.Service
	if heap {
		ts = timers.NewHeap(kgs)
	} else if ts, err = timers.NewRocksDB(db, db.CF(cfTimers), kgs); err != nil {
		t.Fatal(err)
	}
	out := &preAggOut{}
	op := &windowOp{
		stage: "w", asg: asg, plan: plan, db: db, cfWin: db.CF(cfWindows), timers: ts,
		cache: map[string]*keyEntry{}, limit: limit, wm: minWatermark, batch: db.NewBatch(),
		out: out.result, late: out.late, noPreAgg: ref,
	}
	t.Cleanup(op.batch.Close)
	return op, out
}

// TestPreAggregationMatchesPerReading feeds random streams (disorder, late
// readings, ties of event time, allowed lateness, a small write-back cache
// that evicts) in random batches to a pre-aggregating window operator and to
// one that takes every reading on its own, and requires the same output, in
// the same order, bit for bit, for every window type and aggregate.
func TestPreAggregationMatchesPerReading(t *testing.T) {
	plan, err := compileAggregates(map[string]string{
		"n": "count()", "s": "sum(a)", "m": "avg(a)", "lo": "min(b)", "hi": "max(b)",
		"f": "first(a)", "fb": "first(b)", "l": "last(a)", "lb": "last(b)",
	})
	if err != nil {
		t.Fatal(err)
	}
	windows := []WindowSpec{
		{Type: "tumbling", Size: 100 * time.Millisecond},
		{Type: "tumbling", Size: 50 * time.Millisecond, AllowedLateness: 120 * time.Millisecond},
		{Type: "sliding", Size: 120 * time.Millisecond, Slide: 40 * time.Millisecond},
		{Type: "sliding", Size: 90 * time.Millisecond, Slide: 30 * time.Millisecond, AllowedLateness: 60 * time.Millisecond},
		{Type: "session", Gap: 40 * time.Millisecond, AllowedLateness: 50 * time.Millisecond},
	}
	for wi, w := range windows {
		for seed := uint64(1); seed <= 6; seed++ {
			t.Run(fmt.Sprintf("%s-%d/seed=%d", w.Type, wi, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, uint64(wi)))
				heap := seed%2 == 0
				limit := []int{1 << 20, 8, 3}[seed%3]
				dir := t.TempDir()
				got, gotOut := newPreAggOp(t, filepath.Join(dir, "pre"), &w, plan, heap, limit, false)
				want, wantOut := newPreAggOp(t, filepath.Join(dir, "ref"), &w, plan, heap, limit, true)
				nkeys := 1 + rng.IntN(12)
				maxTS := int64(1_000_000)
				bound := int64(rng.IntN(80))
				for range 60 {
					n := 1 + rng.IntN(200)
					evs := make([]event, n)
					vals := make([]float64, 0, 2*n)
					key, kg := "", uint16(0)
					for i := range evs {
						if i == 0 || rng.IntN(3) > 0 { // runs of one key, and interleaving
							k := rng.IntN(nkeys)
							key, kg = fmt.Sprintf("k%d", k), uint16(k*7%128)
						}
						maxTS += int64(rng.IntN(4))
						ts := maxTS - int64(rng.IntN(40))
						if rng.IntN(8) == 0 {
							ts -= int64(rng.IntN(400)) // late, some beyond allowed lateness
						}
						a := rng.NormFloat64() * 1e6 // sums depend on the order of additions
						b := float64(rng.IntN(5))    // ties for min/max/first/last
						vals = append(vals, a, b)
						evs[i] = event{kg: kg, key: key, ts: ts}
					}
					for i := range evs {
						evs[i].vals = vals[2*i : 2*i+2]
					}
					ref := slices.Clone(evs)
					if err := got.processBatch(evs, func() error { return nil }); err != nil {
						t.Fatal(err)
					}
					if err := want.processBatch(ref, func() error { return nil }); err != nil {
						t.Fatal(err)
					}
					if rng.IntN(3) > 0 {
						wm := maxTS - bound - 1
						if err := got.advance(wm); err != nil {
							t.Fatal(err)
						}
						if err := want.advance(wm); err != nil {
							t.Fatal(err)
						}
					}
				}
				for _, op := range []*windowOp{got, want} {
					if err := op.advance(math.MaxInt64 - 1); err != nil {
						t.Fatal(err)
					}
				}
				if len(wantOut.lines) == 0 {
					t.Fatal("no output: the stream exercises nothing")
				}
				lates := 0
				for _, l := range wantOut.lines {
					if l[:4] == "late" {
						lates++
					}
				}
				if lates == 0 && w.Type != "session" {
					t.Fatal("no late readings: the stream exercises no lateness")
				}
				if !slices.Equal(gotOut.lines, wantOut.lines) {
					for i := range min(len(gotOut.lines), len(wantOut.lines)) {
						if gotOut.lines[i] != wantOut.lines[i] {
							t.Fatalf("output %d of %d/%d differs:\npre-aggregated %s\nper reading    %s",
								i, len(gotOut.lines), len(wantOut.lines), gotOut.lines[i], wantOut.lines[i])
						}
					}
					t.Fatalf("pre-aggregated gave %d outputs, per reading %d", len(gotOut.lines), len(wantOut.lines))
				}
			})
		}
	}
}

func newPreAggOpB(b *testing.B, dir string, w *WindowSpec, plan *aggPlan, ref bool) (*windowOp, *preAggOut) {
	op, out := newPreAggOp(b, dir, w, plan, false, 1<<20, ref)
	op.out = func(*Result) {} // the benchmark keeps no output
	op.late = func(*event, string) {}
	return op, out
}
