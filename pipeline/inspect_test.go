package pipeline

import (
	"errors"
	"testing"
)

// TestDecodeWindowEntry encodes an entry as the window operator does and
// decodes it with the exported, read-only decoder.
func TestDecodeWindowEntry(t *testing.T) {
	s := &StageSpec{Name: "w", KeyBy: []string{"site", "device"}, Aggregates: map[string]string{
		"n": "count()", "s": "sum(x)", "lo": "min(x)", "hi": "max(x)", "a": "avg(x)", "f": "first(x)", "l": "last(x)", "e": "avg(y)",
	}}
	plan, err := compileAggregates(s.Aggregates)
	if err != nil {
		t.Fatal(err)
	}
	op := &windowOp{plan: plan}
	w := &win{start: 1000, end: 2000, firings: 1, accs: make([]acc, len(plan.aggs))}
	for _, r := range []struct {
		v  float64
		ts int64
	}{{3, 1500}, {1, 1100}, {5, 1900}} {
		for i, a := range plan.aggs {
			if a.name != "e" { // e stays empty: its identity
				w.accs[i].add(a.fn, r.v, r.ts)
			}
		}
	}
	key := string(encodeKey(nil, []string{"site-3", "dev-0003"}))
	e := &keyEntry{key: key, wins: []*win{w}, timers: []int64{1999}}
	ks, err := DecodeWindowEntry(s, key, op.encodeEntry(nil, e))
	if err != nil {
		t.Fatal(err)
	}
	if ks.Key != "site-3|dev-0003" || len(ks.Fields) != 2 || len(ks.Windows) != 1 || len(ks.EntryTimers) != 1 || ks.EntryTimers[0] != 1999 {
		t.Fatalf("decoded %+v", ks)
	}
	got := ks.Windows[0]
	if got.Start != 1000 || got.End != 2000 || got.Firings != 1 {
		t.Errorf("window %+v", got)
	}
	want := map[string]float64{"n": 3, "s": 9, "lo": 1, "hi": 5, "a": 3, "f": 1, "l": 5}
	for _, a := range got.Accs {
		if a.Name == "e" {
			if a.Set || a.Result != nil {
				t.Errorf("empty avg: %+v", a)
			}
			continue
		}
		if !a.Set || a.Result == nil || *a.Result != want[a.Name] {
			t.Errorf("%s (%s): %+v, want result %v", a.Name, a.Func, a, want[a.Name])
		}
		switch a.Name {
		case "n", "s", "a":
			if a.Count != 3 {
				t.Errorf("%s: count %d, want 3", a.Name, a.Count)
			}
		case "f":
			if a.Timestamp != 1100 {
				t.Errorf("first at %d, want 1100", a.Timestamp)
			}
		case "l":
			if a.Timestamp != 1900 {
				t.Errorf("last at %d, want 1900", a.Timestamp)
			}
		}
	}
	// A truncated value is an error, never a wrong number.
	b := op.encodeEntry(nil, e)
	for n := range len(b) {
		if _, err := DecodeWindowEntry(s, key, b[:n]); !errors.Is(err, errShortValue) {
			t.Fatalf("truncated to %d of %d bytes: %v", n, len(b), err)
		}
	}
	if _, err := DecodeWindowEntry(s, "\x05ab", b); err == nil {
		t.Error("malformed key decoded")
	}
}
