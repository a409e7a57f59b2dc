package pipeline

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestWriteCacheBoundsKeepResults: a window operator whose write-back
// cache is bounded to a few entries or bytes (so that nearly every batch
// prefetches, evicts and writes back) gives exactly the output of one whose
// cache holds everything and that reads every key on its own (no
// prefetch), over random streams with late readings and watermarks; and
// the bounded cache stays within its bounds between batches.
func TestWriteCacheBoundsKeepResults(t *testing.T) {
	plan, err := compileAggregates(map[string]string{"n": "count()", "s": "sum(a)", "lo": "min(a)", "l": "last(a)"})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []WindowSpec{
		{Type: "tumbling", Size: 50 * time.Millisecond, AllowedLateness: 60 * time.Millisecond},
		{Type: "sliding", Size: 90 * time.Millisecond, Slide: 30 * time.Millisecond},
		{Type: "session", Gap: 40 * time.Millisecond},
	} {
		for seed := uint64(1); seed <= 4; seed++ {
			t.Run(fmt.Sprintf("%s/seed=%d", w.Type, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 3))
				dir := t.TempDir()
				got, gotOut := newPreAggOp(t, filepath.Join(dir, "bounded"), &w, plan, seed%2 == 0, 1<<20, true)
				if seed%2 == 0 {
					got.limit = 4
				} else {
					got.maxBytes = 3 * (entryBytes + 4 + 3*(winBytes+4*accBytes) + 8*8)
				}
				want, wantOut := newPreAggOp(t, filepath.Join(dir, "ref"), &w, plan, seed%2 == 0, 1<<20, true)
				maxTS := int64(1_000_000)
				for range 50 {
					n := 1 + rng.IntN(100)
					evs := make([]event, n)
					for i := range evs {
						k := rng.IntN(30)
						maxTS += int64(rng.IntN(3))
						ts := maxTS - int64(rng.IntN(30))
						if rng.IntN(10) == 0 {
							ts -= int64(rng.IntN(300))
						}
						evs[i] = event{kg: uint16(k * 5 % 128), key: fmt.Sprintf("k%d", k), ts: ts, vals: []float64{rng.NormFloat64()}}
					}
					ref := slices.Clone(evs)
					if err := got.processBatch(evs, func() error { return nil }); err != nil {
						t.Fatal(err)
					}
					for i := range ref {
						if err := want.process(&ref[i]); err != nil {
							t.Fatal(err)
						}
					}
					if rng.IntN(2) == 0 {
						wm := maxTS - int64(rng.IntN(50)) - 1
						if err := got.advance(wm); err != nil {
							t.Fatal(err)
						}
						if err := want.advance(wm); err != nil {
							t.Fatal(err)
						}
					}
					if got.overflows(got.limit, got.maxBytes) {
						t.Fatalf("cache over its bounds: %d entries (limit %d), %d bytes (limit %d)",
							len(got.cache), got.limit, got.bytes, got.maxBytes)
					}
					checkLRU(t, got)
				}
				for _, op := range []*windowOp{got, want} {
					if err := op.advance(math.MaxInt64 - 1); err != nil {
						t.Fatal(err)
					}
				}
				if len(wantOut.lines) == 0 {
					t.Fatal("no output")
				}
				if !slices.Equal(gotOut.lines, wantOut.lines) {
					for i := range min(len(gotOut.lines), len(wantOut.lines)) {
						if gotOut.lines[i] != wantOut.lines[i] {
							t.Fatalf("output %d differs:\nbounded %s\nref     %s", i, gotOut.lines[i], wantOut.lines[i])
						}
					}
					t.Fatalf("bounded cache gave %d outputs, reference %d", len(gotOut.lines), len(wantOut.lines))
				}
			})
		}
	}
}

// checkLRU: the list holds exactly the cached entries, and bytes is the sum
// of their sizes.
func checkLRU(t *testing.T, op *windowOp) {
	t.Helper()
	if op.lru.next == nil {
		return
	}
	n, bytes := 0, int64(0)
	for e := op.lru.next; e != &op.lru; e = e.next {
		if op.cache[e.key] != e {
			t.Fatalf("entry %q on the LRU list is not the cached one", e.key)
		}
		n++
		bytes += e.size
	}
	if n != len(op.cache) || bytes != op.bytes {
		t.Fatalf("LRU list: %d entries, %d bytes; cache: %d entries, %d bytes", n, bytes, len(op.cache), op.bytes)
	}
}

// TestWriteCacheEvictsLeastRecentlyUsed: past its bound the cache drops the
// entries used longest ago, not a random half.
func TestWriteCacheEvictsLeastRecentlyUsed(t *testing.T) {
	plan, err := compileAggregates(map[string]string{"n": "count()"})
	if err != nil {
		t.Fatal(err)
	}
	op, _ := newPreAggOp(t, t.TempDir(), &WindowSpec{Type: "tumbling", Size: time.Hour}, plan, true, 16, true)
	add := func(k int) {
		t.Helper()
		ev := event{kg: uint16(k % 128), key: fmt.Sprintf("k%02d", k), ts: 1000}
		if err := op.processBatch([]event{ev}, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for k := range 16 {
		add(k)
	}
	add(0) // k00 is now the most recently used
	add(1)
	add(16) // over the bound: evicts down to 14, the least recently used
	var cached []string
	for e := op.lru.next; e != &op.lru; e = e.next {
		cached = append(cached, e.key)
	}
	want := []string{"k16", "k01", "k00", "k15", "k14", "k13", "k12", "k11", "k10", "k09", "k08", "k07", "k06", "k05"}
	if !slices.Equal(cached, want) {
		t.Fatalf("cached, most recent first: %v; want %v", cached, want)
	}
	checkLRU(t, op)
	// An evicted key comes back from RocksDB with its count.
	add(2)
	if e := op.cache["k02"]; e == nil || !e.inDB || e.wins[0].accs[0].n != 2 {
		t.Fatalf("k02 after eviction: %+v", e)
	}
}
