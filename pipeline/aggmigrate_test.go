package pipeline

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline/lang"
	"github.com/eddy-stream/eddy/pipeline/sink"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/test/oracle"
)

// TestRestoreAggregateMigration checkpoints a job with the aggregates n,
// avg, hi, lo, first and restores it into one where hi is removed and last
// added, with windows open at the restore: the restore migrates. Every
// window's final result is checked against the oracle: computed before the
// restore (old aggregates, complete), or after it: n, avg, lo, first exact
// over all the window's readings, hi absent, last exact over the readings
// after the restore and listed in "partial" when the window has readings
// from before the restore (it was open then), exact and not partial for a
// window opened after it. Both timer modes, incremental and full
// snapshots, same and changed parallelism.
func TestRestoreAggregateMigration(t *testing.T) {
	for _, tc := range []struct {
		name        string
		p           int // parallelism of the restore (the checkpoint's is 3)
		timers      string
		incremental bool
	}{
		{"rocksdb timers, incremental", 3, "rocksdb", true},
		{"heap timers, full snapshots", 3, "heap", false},
		{"rocksdb timers, full snapshots, parallelism 3 to 2", 2, "rocksdb", false},
		{"heap timers, incremental, parallelism 3 to 4", 4, "heap", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, true)
			base := h.log.NextOffset()
			rs := genReadings(4000, 9, 11)
			h.appendReadings(rs[:2000])
			w := WindowSpec{Type: "tumbling", Size: 5 * time.Second, AllowedLateness: time.Second}
			spec := func(p int, aggs map[string]string) JobSpec {
				s := h.spec(p, w)
				s.Stages[1].Aggregates = aggs
				s.State.Timers = tc.timers
				s.Checkpointing.Incremental = tc.incremental
				return s
			}
			oldAggs := map[string]string{"n": "count()", "avg": "avg(temperature)", "hi": "max(temperature)", "lo": "min(temperature)", "first": "first(temperature)"}
			newAggs := map[string]string{"n": "count()", "avg": "avg(temperature)", "lo": "min(temperature)", "first": "first(temperature)", "last": "last(temperature)"}
			md, end := h.checkpointThenAppend(spec(3, oldAggs), rs[2000:])
			pos := oldSourcePositions(md, "readings")
			if len(pos) != 1 {
				t.Fatalf("source positions %+v", pos)
			}
			cut := int(pos[0].Offset - base) // readings [cut:] are read after the restore
			if cut <= 0 || cut > 2000 {
				t.Fatalf("restore offset %d (base %d)", pos[0].Offset, base)
			}
			open := openWindows(t, h.store.CheckpointDir(md.ID), md)
			if open == 0 {
				t.Fatal("no window is open at the restore: the test tests nothing")
			}
			rspec := spec(tc.p, newAggs)
			rspec.Restore = md
			closeAt := end.ts - 2000
			ow := oracle.Window{Type: "tumbling", Size: 5000}
			want := oracle.Compute(toOracle(rs), ow, testAggs, closeAt)
			before := oracle.Compute(toOracle(rs[:cut]), ow, testAggs[:1], closeAt)
			after := oracle.Compute(toOracle(rs[cut:]), ow, testAggs, closeAt)
			job := h.run(rspec, func() bool { return len(migratedFinals(t, h.out.snapshot())) >= len(want) })
			if o := job.outcomes["win"]; o.Outcome != OutcomeMigrate {
				t.Errorf("outcome %+v, want migrate", o)
			}
			got := migratedFinals(t, h.out.snapshot())
			var partial, whole, old int
			for id, wr := range want {
				g, ok := got[id]
				if !ok {
					t.Errorf("missing window %s", id)
					continue
				}
				num := func(name string) (float64, bool) {
					v, ok := g[name].(float64)
					return v, ok
				}
				check := func(name string, want float64) {
					gv, ok := num(name)
					if !ok || !oracle.Close(gv, want) {
						t.Errorf("%s: %s = %v, want %v (%v)", id, name, g[name], want, g)
					}
				}
				for _, n := range []string{"n", "avg", "lo", "first"} {
					check(n, wr.Values[n])
				}
				if _, isOld := g["hi"]; isOld { // fired before the restore, old aggregates
					old++
					check("hi", wr.Values["hi"])
					if _, ok := g["last"]; ok || g["partial"] != nil {
						t.Errorf("%s: old result with last or partial: %v", id, g)
					}
					continue
				}
				if _, wasOpen := before[id]; wasOpen {
					partial++
					if p := fmt.Sprint(g["partial"]); p != "[last]" {
						t.Errorf("%s: partial %s, want [last] (%v)", id, p, g)
					}
					if a, ok := after[id]; ok {
						check("last", a.Values["last"])
					} else if g["last"] != nil {
						t.Errorf("%s: no reading after the restore, last = %v, want null", id, g["last"])
					}
					continue
				}
				whole++
				if _, ok := g["partial"]; ok {
					t.Errorf("%s: opened after the restore but partial: %v", id, g)
				}
				check("last", wr.Values["last"])
			}
			if len(got) != len(want) {
				t.Errorf("got %d windows, want %d", len(got), len(want))
			}
			if partial == 0 || whole == 0 || old == 0 {
				t.Errorf("windows: %d fired before the restore, %d partial, %d whole after it: want some of each", old, partial, whole)
			}
			t.Logf("%d windows open at the restore; results: %d before it, %d partial, %d whole", open, old, partial, whole)
			// The checkpoints after the migration record the new layout
			// and the old one, and inspect decodes them.
			md2, _, err := h.store.Latest(true)
			if err != nil || md2 == nil || md2.ID <= md.ID {
				t.Fatalf("latest after the restore: %v %v", md2, err)
			}
			sc := md2.Schema("win")
			if sc == nil || sc.Layout != 1 || len(sc.OldLayouts) != 1 || sc.OldLayouts[0].Layout != 0 ||
				!slices.Equal(sc.OldLayouts[0].Aggregates, md.Schema("win").Aggregates) || sc.Encoding != StateEncoding {
				t.Fatalf("schema after the migration: %+v", sc)
			}
			openWindows(t, h.store.CheckpointDir(md2.ID), md2)
		})
	}
}

// migratedFinals decodes outputs into their fields and keeps the last
// firing of every window, checking that outputs with the same id are
// identical.
func migratedFinals(t *testing.T, outs []sink.Output) map[string]map[string]any {
	t.Helper()
	byID := map[string]string{}
	last := map[string]map[string]any{}
	for _, o := range outs {
		if prev, ok := byID[o.ID]; ok && prev != string(o.Payload) {
			t.Errorf("id %s published with different content:\n%s\n%s", o.ID, prev, o.Payload)
		}
		byID[o.ID] = string(o.Payload)
		var r map[string]any
		if err := json.Unmarshal(o.Payload, &r); err != nil {
			t.Fatalf("bad result %s: %v", o.Payload, err)
		}
		k := oracle.ID(fmt.Sprint(r["site"])+"|"+fmt.Sprint(r["device"]), int64(r["window_start"].(float64)), int64(r["window_end"].(float64)))
		if cur, ok := last[k]; !ok || r["firing"].(float64) > cur["firing"].(float64) {
			last[k] = r
		}
	}
	return last
}

// openWindows inspects checkpoint dir by its recorded schemas and returns
// how many windows its state holds.
func openWindows(t *testing.T, dir string, md *checkpoint.Metadata) int {
	t.Helper()
	in, err := InspectCheckpointDir(dir, InspectOptions{Scratch: t.TempDir(), Logger: testLogger()})
	if err != nil {
		t.Fatalf("inspect %s: %v", dir, err)
	}
	n := 0
	for _, k := range in.Keys {
		n += len(k.Windows)
		names := make([]string, 0, len(k.Windows))
		for _, w := range k.Windows {
			names = names[:0]
			for _, a := range w.Accs {
				names = append(names, a.Name)
			}
			want := make([]string, 0)
			for _, a := range md.Schema("win").Aggregates {
				want = append(want, a.Name)
			}
			if !slices.Equal(names, want) {
				t.Fatalf("inspect of checkpoint %d: key %s has aggregates %v, the schema %v", md.ID, k.Key, names, want)
			}
		}
	}
	return n
}

// TestDecodeOldLayout encodes a value under one aggregate list and decodes
// it under another that removed, kept, moved and added aggregates: kept
// accumulators keep their values, added ones are their identity and
// partial, removed ones are gone. Without the old layout recorded the value
// is refused, never decoded under the new list.
func TestDecodeOldLayout(t *testing.T) {
	oldPlan, err := compileAggregates(map[string]string{"b": "max(t)", "c": "count()", "d": "sum(t)"})
	if err != nil {
		t.Fatal(err)
	}
	old := &windowOp{plan: oldPlan}
	e := &keyEntry{timers: []int64{9999}}
	for i := range 2 {
		w := &win{start: int64(i) * 1000, end: int64(i+1) * 1000, firings: uint32(i), accs: make([]acc, 3)}
		for range 3 {
			old.addTo(w, &event{ts: int64(i)*1000 + 1, vals: []float64{float64(10 + i)}})
		}
		e.wins = append(e.wins, w)
	}
	v := old.encodeEntry(nil, e)
	if v[0] != 0 || v[1] != StateEncoding || v[2] != 0 {
		t.Fatalf("header % x, want 00 %02x 00 (layout 0)", v[:3], StateEncoding)
	}
	oldSc := Schemas(&JobSpec{Stages: []StageSpec{{Name: "w", KeyBy: []string{"k"}, Window: &WindowSpec{Type: "tumbling", Size: time.Second},
		Aggregates: map[string]string{"b": "max(t)", "c": "count()", "d": "sum(t)"}}}})[0]
	curSc := Schemas(&JobSpec{Stages: []StageSpec{{Name: "w", KeyBy: []string{"k"}, Window: &WindowSpec{Type: "tumbling", Size: time.Second},
		Aggregates: map[string]string{"a": "min(t)", "c": "count()", "d": "avg(t)", "e": "sum(t)"}}}})[0]
	migrateSchema(&oldSc, &curSc)
	if curSc.Layout != 1 || len(curSc.OldLayouts) != 1 || curSc.OldLayouts[0].Layout != 0 {
		t.Fatalf("migrated schema %+v", curSc)
	}
	curPlan, err := planOfSchema(curSc.Aggregates)
	if err != nil {
		t.Fatal(err)
	}
	cur := &windowOp{plan: curPlan}
	if err := cur.setLayouts(&curSc); err != nil {
		t.Fatal(err)
	}
	var got keyEntry
	if err := cur.decodeEntry(&got, v); err != nil {
		t.Fatal(err)
	}
	if len(got.wins) != 2 || !slices.Equal(got.timers, e.timers) {
		t.Fatalf("decoded %+v", got)
	}
	for i, w := range got.wins {
		// a: min(t) added; c: count() kept (index 1 → 1); d: sum → avg, changed; e: sum(t) added.
		if w.start != int64(i)*1000 || w.firings != uint32(i) {
			t.Errorf("window %d: %+v", i, w)
		}
		if a := w.accs[1]; !a.set || a.partial || a.n != 3 {
			t.Errorf("window %d: kept count %+v, want 3", i, a)
		}
		for _, j := range []int{0, 2, 3} {
			if a := w.accs[j]; a.set || !a.partial {
				t.Errorf("window %d: added aggregate %s: %+v, want its identity, partial", i, curPlan.aggs[j].name, a)
			}
		}
		if r := w.accs[0].result(lang.Min); !math.IsNaN(r) {
			t.Errorf("min of nothing = %v, want NaN (null)", r)
		}
	}
	// Written again, the value carries layout 1 and the partial flags.
	v2 := cur.encodeEntry(nil, &got)
	if v2[2] != 1 {
		t.Fatalf("rewritten header % x, want layout 1", v2[:3])
	}
	var again keyEntry
	if err := cur.decodeEntry(&again, v2); err != nil {
		t.Fatal(err)
	}
	if !again.wins[0].accs[0].partial || again.wins[0].accs[1].partial || again.wins[0].accs[1].n != 3 {
		t.Fatalf("re-decoded %+v", again.wins[0].accs)
	}
	// The old layout unknown: refused, not decoded under the new list.
	bare := &windowOp{plan: curPlan, layout: 1}
	if err := bare.decodeEntry(&keyEntry{}, v); err == nil || !strings.Contains(err.Error(), "aggregate layout 0") {
		t.Fatalf("decode of an unrecorded layout: %v", err)
	}
	// A session window merging a partial window stays partial.
	m := acc{}
	m.merge(lang.Min, acc{partial: true})
	if !m.partial {
		t.Fatal("merge lost partial")
	}
	m = acc{partial: true}
	m.merge(lang.Min, acc{set: true, v: 2})
	if !m.partial || !m.set || m.v != 2 {
		t.Fatalf("merge into a partial accumulator: %+v", m)
	}
}

// TestMigrateSchemaLayouts: the layout number moves on with every change
// of the aggregate list and every old list stays recorded; an unchanged
// list keeps the layout.
func TestMigrateSchemaLayouts(t *testing.T) {
	sc := func(aggs map[string]string) StageSchema {
		return Schemas(&JobSpec{Stages: []StageSpec{{Name: "w", KeyBy: []string{"k"}, Window: &WindowSpec{Type: "tumbling", Size: time.Second}, Aggregates: aggs}}})[0]
	}
	a := sc(map[string]string{"n": "count()"})
	b := sc(map[string]string{"n": "count()", "hi": "max(t)"})
	migrateSchema(&a, &b)
	c := sc(map[string]string{"n": "count()", "hi": "max(t)"})
	migrateSchema(&b, &c)
	if c.Layout != 1 || len(c.OldLayouts) != 1 {
		t.Fatalf("unchanged list: %+v", c)
	}
	d := sc(map[string]string{"hi": "max(t)"})
	migrateSchema(&c, &d)
	if d.Layout != 2 || len(d.OldLayouts) != 2 || d.OldLayouts[0].Layout != 0 || d.OldLayouts[1].Layout != 1 {
		t.Fatalf("second change: %+v", d)
	}
	rs, err := stageLayouts(&d, mustPlan(t, map[string]string{"hi": "max(t)"}))
	if err != nil {
		t.Fatal(err)
	}
	if r := rs[0]; !slices.Equal(r.to, []int{-1}) || !slices.Equal(r.added, []int{0}) {
		t.Errorf("layout 0 → 2: %+v", r)
	}
	if r := rs[1]; !slices.Equal(r.to, []int{0, -1}) || len(r.added) != 0 {
		t.Errorf("layout 1 → 2: %+v", r)
	}
}

func mustPlan(t testing.TB, m map[string]string) *aggPlan {
	t.Helper()
	p, err := compileAggregates(m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkpointThenAppend runs spec on what the log holds until two
// checkpoints are complete and some result is out, then appends rest and
// an end marker an hour later; it returns the newest checkpoint and the
// marker.
func (h *harness) checkpointThenAppend(spec JobSpec, rest []reading) (*checkpoint.Metadata, reading) {
	h.t.Helper()
	h.run(spec, func() bool {
		ids, _ := h.store.Completed()
		return len(ids) >= 2 && len(h.out.snapshot()) > 0
	})
	h.appendReadings(rest)
	end := endMarker(rest[len(rest)-1].ts + 3_600_000)
	h.appendReadings([]reading{end})
	md, _, err := h.store.Latest(true)
	if err != nil || md == nil {
		h.t.Fatalf("latest: %v %v", md, err)
	}
	return md, end
}

// BenchmarkDecodeLayout decodes a key's value (4 windows, 6 aggregates) in
// the current layout and in an old one (one aggregate removed, one added):
// the price a lazy migration adds to the first read of each old value.
func BenchmarkDecodeLayout(b *testing.B) {
	aggs := map[string]string{"n": "count()", "avg": "avg(t)", "hi": "max(t)", "lo": "min(t)", "first": "first(t)", "last": "last(t)"}
	sc := func(m map[string]string) StageSchema {
		return Schemas(&JobSpec{Stages: []StageSpec{{Name: "w", KeyBy: []string{"k"}, Window: &WindowSpec{Type: "tumbling", Size: time.Second}, Aggregates: m}}})[0]
	}
	old := &windowOp{plan: mustPlan(b, aggs)}
	e := &keyEntry{timers: []int64{1, 2, 3, 4}}
	for i := range 4 {
		w := &win{start: int64(i) * 1000, end: int64(i+1) * 1000, accs: make([]acc, len(old.plan.aggs))}
		old.addTo(w, &event{ts: int64(i) * 1000, vals: []float64{1.5}})
		e.wins = append(e.wins, w)
	}
	v := old.encodeEntry(nil, e)
	newAggs := map[string]string{"n": "count()", "avg": "avg(t)", "lo": "min(t)", "first": "first(t)", "last": "last(t)", "s": "sum(t)"}
	oldSc, curSc := sc(aggs), sc(newAggs)
	migrateSchema(&oldSc, &curSc)
	cur := &windowOp{plan: mustPlan(b, newAggs)}
	if err := cur.setLayouts(&curSc); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		op   *windowOp
	}{{"current", old}, {"old", cur}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var got keyEntry
				if err := bc.op.decodeEntry(&got, v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
