package pipeline

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
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

// TestWriteCacheSizeMatchesHeap: the cache's byte estimate of its entries
// is what they hold on the Go heap (structs, keys, accumulators, timers,
// map slots), within 10 %, for entries made by new keys and for entries
// read back from RocksDB, with the benchmarks' 16 aggregates. The byte
// bound of the cache is only as good as this estimate, and the Go memory
// limit (state.GoMemoryLimit) counts on it.
func TestWriteCacheSizeMatchesHeap(t *testing.T) {
	aggs := map[string]string{"count": "count()"}
	for _, f := range []string{"a", "b", "c"} {
		for _, fn := range []string{"avg", "min", "max", "first", "last"} {
			aggs[fn+"_"+f] = fn + "(" + f + ")"
		}
	}
	plan, err := compileAggregates(aggs)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40_000
	op, _ := newPreAggOp(t, t.TempDir(), &WindowSpec{Type: "tumbling", Size: time.Hour}, plan, false, 2*n, false)
	vals := make([]float64, 3*512)
	batches := func(from int) {
		t.Helper()
		for lo := from; lo < from+n; lo += 512 {
			evs := make([]event, 512)
			for i := range evs {
				k := lo + i
				// A key as long as the benchmarks': site and device id.
				key := string(encodeKey(nil, []string{"bulk", fmt.Sprintf("dev-%08x-4b1e-9c3a-%012d", k*2654435761%(1<<32), k)}))
				evs[i] = event{kg: uint16(k % 128), key: key, ts: 1000, vals: vals[3*i : 3*i+3]}
			}
			if err := op.processBatch(evs, func() error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	live := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	check := func(what string, before int64) {
		t.Helper()
		got := live() - before
		ratio := float64(op.bytes) / float64(got)
		t.Logf("%s: %d entries, estimate %d B, heap %d B (%.0f / %.0f B per entry, ratio %.3f)",
			what, len(op.cache), op.bytes, got, float64(op.bytes)/float64(len(op.cache)), float64(got)/float64(len(op.cache)), ratio)
		if ratio < 0.9 || ratio > 1.1 {
			t.Errorf("%s: the estimate is %.3f of the heap the entries hold", what, ratio)
		}
	}
	before := live()
	batches(0)
	check("new keys", before)
	if err := op.flush(); err != nil {
		t.Fatal(err)
	}
	// Evict everything, then read the same keys back through prefetch.
	for op.lru.prev != &op.lru {
		op.remove(op.lru.prev)
	}
	clear(op.cache)
	op.cache = map[string]*keyEntry{} // a map does not shrink
	before = live()
	batches(0)
	check("read back", before)
}
