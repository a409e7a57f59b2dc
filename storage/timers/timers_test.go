package timers

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/eddy-stream/eddy/storage/keygroup"
	"github.com/eddy-stream/eddy/storage/state"
)

// rocksEnv is a RocksDB timer service that can be flushed and reopened.
type rocksEnv struct {
	t    testing.TB
	r    keygroup.Range
	root string
	n    int
	db   *state.DB
	svc  Service
}

func newRocksEnv(t testing.TB, r keygroup.Range) *rocksEnv {
	e := &rocksEnv{t: t, r: r, root: t.TempDir()}
	db, err := state.Open(state.Options{Dir: filepath.Join(e.root, "db0"), ColumnFamilies: []string{"timers"}})
	if err != nil {
		t.Fatal(err)
	}
	e.attach(db)
	t.Cleanup(func() { e.db.Close() })
	return e
}

func (e *rocksEnv) attach(db *state.DB) {
	e.db = db
	svc, err := NewRocksDB(db, db.CF("timers"), e.r)
	if err != nil {
		e.t.Fatal(err)
	}
	e.svc = svc
}

func (e *rocksEnv) flush() {
	b := e.db.NewBatch()
	defer b.Close()
	if err := e.svc.Flush(b); err != nil {
		e.t.Fatal(err)
	}
	if err := e.db.Write(b); err != nil {
		e.t.Fatal(err)
	}
}

// reopen flushes, then reopens the DB in place or restores it from a
// checkpoint, and builds a new service over it.
func (e *rocksEnv) reopen(fromCheckpoint bool) {
	e.flush()
	if err := e.svc.Snapshot(nil); err != nil {
		e.t.Fatal(err)
	}
	var db *state.DB
	var err error
	if fromCheckpoint {
		e.n++
		cp := filepath.Join(e.root, "chk-"+strconv.Itoa(e.n))
		if err := e.db.CreateCheckpoint(cp); err != nil {
			e.t.Fatal(err)
		}
		e.db.Close()
		db, err = state.OpenFromCheckpoint(cp, filepath.Join(e.root, "db"+strconv.Itoa(e.n)), state.Options{})
	} else {
		e.db.Close()
		db, err = state.Open(state.Options{Dir: e.db.Dir()})
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.attach(db)
}

// both returns a heap and a RocksDB service over r.
func both(t *testing.T, r keygroup.Range) map[string]Service {
	return map[string]Service{"heap": NewHeap(r), "rocksdb": newRocksEnv(t, r).svc}
}

func tm(kg uint16, key, ns string, ts int64) Timer {
	return Timer{KeyGroup: kg, Key: []byte(key), Namespace: []byte(ns), Timestamp: ts}
}

func fire(t testing.TB, s Service, wm int64) []string {
	t.Helper()
	var got []string
	if err := s.Advance(wm, func(x Timer) error { got = append(got, x.String()); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestOrder(t *testing.T) {
	for name, s := range both(t, keygroup.Range{Start: 10, End: 20}) {
		t.Run(name, func(t *testing.T) {
			for _, x := range []Timer{
				tm(12, "b", "", 5), tm(11, "b", "", 5), tm(11, "a", "", 5), tm(11, "a", "x", 5),
				tm(11, "aa", "", 5), tm(20, "z", "", -3), tm(10, "k", "", math.MinInt64),
				tm(10, "k", "", math.MaxInt64), tm(15, "k", "", 0), tm(15, "k", "", 1<<40),
			} {
				s.Register(x)
				s.Register(x) // idempotent
			}
			if s.Len() != 10 {
				t.Errorf("Len = %d", s.Len())
			}
			want := []string{
				"10/k/@-9223372036854775808", "20/z/@-3", "15/k/@0",
				"11/a/@5", "11/a/x@5", "11/b/@5", "11/aa/@5", "12/b/@5", // length sorts first
			}
			if got := fire(t, s, 5); !slices.Equal(got, want) {
				t.Errorf("fired\n%v\nwant\n%v", got, want)
			}
			if got := fire(t, s, 5); len(got) != 0 {
				t.Errorf("fired again: %v", got)
			}
			s.Delete(tm(15, "k", "", 1<<40))
			s.Delete(tm(15, "nope", "", 1))
			if got := fire(t, s, math.MaxInt64); !slices.Equal(got, []string{"10/k/@9223372036854775807"}) {
				t.Errorf("fired %v", got)
			}
		})
	}
}

func TestAdvanceCallback(t *testing.T) {
	for name, s := range both(t, keygroup.Range{Start: 0, End: 3}) {
		t.Run(name, func(t *testing.T) {
			for i := range 4 {
				s.Register(tm(uint16(i), "k", "", int64(10+i)))
			}
			var got []string
			boom := errors.New("boom")
			err := s.Advance(20, func(x Timer) error {
				got = append(got, x.String())
				switch x.Timestamp {
				case 10:
					s.Register(tm(3, "new", "", 11)) // due: fires in this Advance
					s.Register(tm(2, "late", "", 30))
					s.Delete(tm(1, "k", "", 11))
				case 11:
					return boom
				}
				return nil
			})
			if !errors.Is(err, boom) || !slices.Equal(got, []string{"0/k/@10", "3/new/@11"}) {
				t.Fatalf("Advance = %v, fired %v", err, got)
			}
			if got := fire(t, s, 20); !slices.Equal(got, []string{"2/k/@12", "3/k/@13"}) {
				t.Errorf("after error, fired %v", got)
			}
			if got := fire(t, s, 30); !slices.Equal(got, []string{"2/late/@30"}) {
				t.Errorf("fired %v", got)
			}
		})
	}
}

func TestHeapSnapshot(t *testing.T) {
	h := NewHeap(keygroup.Range{Start: 0, End: 9})
	for i := range 200 {
		h.Register(tm(uint16(i%10), "key"+strconv.Itoa(i%7), strconv.Itoa(i%3), int64(i*i%97-40)))
	}
	var buf bytes.Buffer
	if err := h.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	snap := buf.Bytes()

	// Rescale: two halves restore the same timers between them.
	lo, hi := NewHeap(keygroup.Range{Start: 0, End: 4}), NewHeap(keygroup.Range{Start: 5, End: 9})
	for _, s := range []Service{lo, hi} {
		if err := s.Restore(bytes.NewReader(snap)); err != nil {
			t.Fatal(err)
		}
	}
	if lo.Len()+hi.Len() != h.Len() || lo.Len() == 0 || hi.Len() == 0 {
		t.Fatalf("restored %d + %d of %d", lo.Len(), hi.Len(), h.Len())
	}
	got := append(fire(t, lo, math.MaxInt64), fire(t, hi, math.MaxInt64)...)
	want := fire(t, h, math.MaxInt64)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Error("restored timers differ")
	}

	// Every flipped byte and every truncation is caught.
	for i := range snap {
		bad := bytes.Clone(snap)
		bad[i] ^= 0x10
		if err := NewHeap(keygroup.Range{Start: 0, End: 9}).Restore(bytes.NewReader(bad)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flipped byte %d: %v", i, err)
		}
	}
	for n := range len(snap) {
		if err := NewHeap(keygroup.Range{Start: 0, End: 9}).Restore(bytes.NewReader(snap[:n])); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	// An empty heap round-trips.
	buf.Reset()
	if err := NewHeap(keygroup.Range{Start: 0, End: 0}).Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	if err := NewHeap(keygroup.Range{Start: 0, End: 0}).Restore(&buf); err != nil {
		t.Fatal(err)
	}
}

func TestRegisterOutsideRangePanics(t *testing.T) {
	for name, s := range both(t, keygroup.Range{Start: 5, End: 6}) {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			s.Register(tm(7, "k", "", 1))
		}()
	}
}

// TestHeapVsRocksDB runs random register/delete/advance sequences, with
// callbacks that register and delete, on both services, flushing and
// reopening the RocksDB one (in place or from a checkpoint) and
// snapshotting the heap one, and requires identical firings.
func TestHeapVsRocksDB(t *testing.T) {
	seeds := 12
	if testing.Short() {
		seeds = 4
	}
	for seed := range uint64(seeds) {
		t.Run(strconv.Itoa(int(seed)), func(t *testing.T) {
			t.Parallel()
			compareRun(t, seed)
		})
	}
}

var errBoom = errors.New("boom")

func compareRun(t *testing.T, seed uint64) {
	r := keygroup.Range{Start: 3, End: 9}
	rnd := rand.New(rand.NewPCG(seed, 1))
	heap := NewHeap(r)
	env := newRocksEnv(t, r)
	randTimer := func(rnd *rand.Rand, lo, hi int64) Timer {
		keys := []string{"a", "b", "cc", "", "\xff"}
		return tm(r.Start+uint16(rnd.IntN(r.Len())), keys[rnd.IntN(len(keys))],
			[]string{"", "w1", "w2"}[rnd.IntN(3)], lo+rnd.Int64N(hi-lo+1))
	}
	var wm int64 = -10
	for step := range 600 {
		switch p := rnd.IntN(100); {
		case p < 45:
			x := randTimer(rnd, wm-5, wm+30)
			heap.Register(x)
			env.svc.Register(x)
		case p < 60:
			x := randTimer(rnd, wm-5, wm+30)
			heap.Delete(x)
			env.svc.Delete(x)
		case p < 85:
			wm += rnd.Int64N(8) - 1 // may go back
			cbSeed := rnd.Uint64()
			fired := make([][]string, 2)
			for i, s := range []Service{heap, env.svc} {
				cb := rand.New(rand.NewPCG(cbSeed, 2))
				budget := 10
				err := s.Advance(wm, func(x Timer) error {
					fired[i] = append(fired[i], x.String())
					if budget > 0 && cb.IntN(4) == 0 {
						budget--
						s.Register(randTimer(cb, wm-3, wm+5))
					}
					if cb.IntN(6) == 0 {
						s.Delete(randTimer(cb, wm-3, wm+10))
					}
					if cb.IntN(25) == 0 {
						return errBoom // the rest stays registered
					}
					return nil
				})
				if err != nil && !errors.Is(err, errBoom) {
					t.Fatal(err)
				}
			}
			if !slices.Equal(fired[0], fired[1]) {
				t.Fatalf("step %d, Advance(%d):\nheap    %v\nrocksdb %v", step, wm, fired[0], fired[1])
			}
		case p < 93:
			env.flush()
		case p < 97:
			var buf bytes.Buffer
			if err := heap.Snapshot(&buf); err != nil {
				t.Fatal(err)
			}
			heap = NewHeap(r)
			if err := heap.Restore(&buf); err != nil {
				t.Fatal(err)
			}
			env.reopen(rnd.IntN(2) == 0)
		default: // rebuild the in-memory state in place
			env.flush()
			if err := env.svc.Restore(nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	h, rk := fire(t, heap, math.MaxInt64), fire(t, env.svc, math.MaxInt64)
	if !slices.Equal(h, rk) {
		t.Fatalf("final drain differs:\nheap    %v\nrocksdb %v", h, rk)
	}
	env.flush()
	it := env.db.NewIterator(env.db.CF("timers"), nil, nil)
	defer it.Close()
	if heap.Len() != 0 || it.Valid() {
		t.Errorf("timers left: heap %d, rocksdb has keys %v", heap.Len(), it.Valid())
	}
}

func BenchmarkRegisterAdvance(b *testing.B) {
	r := keygroup.Range{Start: 0, End: 127}
	for _, impl := range []string{"heap", "rocksdb"} {
		b.Run(impl, func(b *testing.B) {
			var s Service
			var env *rocksEnv
			if impl == "heap" {
				s = NewHeap(r)
			} else {
				env = newRocksEnv(b, r)
				s = env.svc
			}
			keys := make([][]byte, 10000)
			for i := range keys {
				keys[i] = []byte("sensor-" + strconv.Itoa(i))
			}
			fired := 0
			count := func(Timer) error { fired++; return nil }
			i := 0
			for b.Loop() {
				// Each key registers a timer 1000 ticks ahead; the watermark
				// trails by 1000, so timers fire at the rate they arrive.
				s.Register(Timer{KeyGroup: uint16(i % 128), Key: keys[i%len(keys)], Timestamp: int64(i + 1000)})
				if i%100 == 0 {
					if err := s.Advance(int64(i), count); err != nil {
						b.Fatal(err)
					}
				}
				if env != nil && i%50000 == 0 {
					env.flush() // a checkpoint
				}
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "timers/s")
			if fired < b.N-2000 {
				b.Fatalf("fired %d of %d", fired, b.N)
			}
		})
	}
}
