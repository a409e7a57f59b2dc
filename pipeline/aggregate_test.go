package pipeline

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline/lang"
)

func TestAccumulatorsAndEncoding(t *testing.T) {
	plan, err := compileAggregates(map[string]string{
		"n": "count()", "s": "sum(x)", "lo": "min(x)", "hi": "max(x)", "mean": "avg(x)", "f": "first(x)", "l": "last(x)",
	})
	if err != nil {
		t.Fatal(err)
	}
	vals := []struct {
		v  float64
		ts int64
	}{{3, 20}, {-1, 10}, {7.5, 30}, {2, 30}}
	accs := make([]acc, len(plan.aggs))
	for _, in := range vals {
		for i, a := range plan.aggs {
			accs[i].add(a.fn, in.v, in.ts)
		}
	}
	want := map[string]float64{"n": 4, "s": 11.5, "lo": -1, "hi": 7.5, "mean": 11.5 / 4, "f": -1, "l": 7.5} // l: tie at ts 30, higher wins
	var buf []byte
	for i, a := range plan.aggs {
		if got := accs[i].result(a.fn); got != want[a.name] {
			t.Errorf("%s = %v, want %v", a.name, got, want[a.name])
		}
		buf = appendAcc(buf, a.fn, &accs[i])
	}
	rest := buf
	for i, a := range plan.aggs {
		var got acc
		if rest, err = readAcc(rest, a.fn, &got); err != nil {
			t.Fatalf("%s: %v", a.name, err)
		}
		if got.result(a.fn) != accs[i].result(a.fn) {
			t.Errorf("%s: round trip %v != %v", a.name, got.result(a.fn), accs[i].result(a.fn))
		}
	}
	if len(rest) != 0 {
		t.Errorf("%d bytes left over", len(rest))
	}
	for cut := range len(buf) {
		r := buf[:cut]
		var err error
		for _, a := range plan.aggs {
			var x acc
			if r, err = readAcc(r, a.fn, &x); err != nil {
				break
			}
		}
		if err == nil {
			t.Fatalf("truncated at %d decoded without error", cut)
		}
	}
	var empty acc
	if !math.IsNaN(empty.result(lang.Avg)) {
		t.Error("avg of nothing should be NaN")
	}
}

func TestMergeMatchesAdd(t *testing.T) {
	for fn := lang.Count; fn <= lang.Last; fn++ {
		var all, a, b acc
		for i, v := range []float64{5, 1, 9, 3} {
			all.add(fn, v, int64(i))
			if i%2 == 0 {
				a.add(fn, v, int64(i))
			} else {
				b.add(fn, v, int64(i))
			}
		}
		a.merge(fn, b)
		if a.result(fn) != all.result(fn) {
			t.Errorf("fn %d: merge %v, add %v", fn, a.result(fn), all.result(fn))
		}
	}
}

func TestAssigner(t *testing.T) {
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	tum, _ := newAssigner(&WindowSpec{Type: "tumbling", Size: time.Minute})
	if got := tum.assign(ms(90*time.Second), nil); len(got) != 1 || got[0] != (span{60000, 120000}) {
		t.Errorf("tumbling: %v", got)
	}
	if got := tum.assign(-1, nil); got[0] != (span{-60000, 0}) {
		t.Errorf("tumbling negative: %v", got)
	}
	// The memo of the last tumbling window: event times in and out of it,
	// backwards, at its edges, negative.
	rng := rand.New(rand.NewPCG(9, 10))
	for _, ts := range append([]int64{59999, 60000, 119999, 120000, 60000, 59999, -1, 0, -60000, -60001, 1 << 40, -(1 << 40)}, func() (r []int64) {
		for range 1000 {
			r = append(r, rng.Int64N(600_000)-300_000)
		}
		return r
	}()...) {
		s := ts - floorMod(ts, 60000)
		if got := tum.assign(ts, nil); len(got) != 1 || got[0] != (span{s, s + 60000}) {
			t.Fatalf("tumbling %d: %v, want [%d %d]", ts, got, s, s+60000)
		}
	}
	sl, _ := newAssigner(&WindowSpec{Type: "sliding", Size: time.Minute, Slide: 20 * time.Second})
	got := sl.assign(ms(65*time.Second), nil)
	want := []span{{60000, 120000}, {40000, 100000}, {20000, 80000}}
	if len(got) != len(want) {
		t.Fatalf("sliding: %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("sliding[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []WindowSpec{
		{Type: "tumbling"}, {Type: "sliding", Size: time.Minute, Slide: 7 * time.Second},
		{Type: "sliding", Size: time.Minute}, {Type: "session"}, {Type: "hopping", Size: time.Second},
	} {
		if _, err := newAssigner(&bad); err == nil {
			t.Errorf("%+v: want error", bad)
		}
	}
}

func TestKeyEncoding(t *testing.T) {
	parts := []string{"site|1", "", "dév"}
	k := string(encodeKey(nil, parts))
	back, err := decodeKey(k, 3)
	if err != nil || len(back) != 3 || back[0] != parts[0] || back[1] != "" || back[2] != parts[2] {
		t.Errorf("decodeKey = %q, %v", back, err)
	}
	if _, err := decodeKey(k, 2); err == nil {
		t.Error("wrong arity: want error")
	}
}
