package timers

import (
	"errors"
	"fmt"
	"io"

	"github.com/eddy-stream/eddy/storage/keygroup"
	"github.com/eddy-stream/eddy/storage/state"
)

// rocksService keeps timers in a column family (Flink's ROCKSDB timer
// service). Register and Delete only touch memory: pending puts and
// deletes per key group, written by Flush. Each key group's minimum
// timestamp, over all its timers and over those in RocksDB, is tracked as a
// lower bound, so Advance skips key groups with nothing due and touches
// RocksDB, with one seek to that minimum (past the tombstones of fired
// timers) and a short scan, only where RocksDB may hold a timer due. A
// timer registered and fired between two flushes never reaches RocksDB.
type rocksService struct {
	db  *state.DB
	cf  *state.CF
	r   keygroup.Range
	kgs []kgState // by key group − r.Start
	// minAll ≤ every kgs[i].min: Advance below it returns at once.
	minAll     int64
	puts, dels int // pending changes, for Len
	buf        []byte

	// During Advance: the timers due at wm, and those of them known to be
	// pending puts absent from RocksDB, which need no tombstone.
	due     *queue
	wm      int64
	memOnly map[string]struct{}
}

type kgState struct {
	// min ≤ the least timestamp of the key group's timers, in RocksDB or
	// pending; noTimer when it may have none. Deletes leave it low; the next
	// scan makes it exact.
	min int64
	// dbMin ≤ the timestamp of every timer in RocksDB not in dels: timers
	// below it are all pending.
	dbMin int64
	// Encoded timers to put and to delete at the next Flush; a timer is in
	// at most one of them.
	puts, dels map[string]struct{}
}

// NewRocksDB returns a timer service over cf of db for the key groups r,
// loading the state of any timers already in cf.
func NewRocksDB(db *state.DB, cf *state.CF, r keygroup.Range) (Service, error) {
	if cf == nil {
		return nil, errors.New("timers: create service: column family is nil")
	}
	s := &rocksService{db: db, cf: cf, r: r, kgs: make([]kgState, r.Len()), memOnly: map[string]struct{}{}}
	if err := s.Restore(nil); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *rocksService) state(kg uint16) *kgState { return &s.kgs[kg-s.r.Start] }

func (s *rocksService) setPut(g *kgState, k string) {
	if _, ok := g.dels[k]; ok {
		delete(g.dels, k)
		s.dels--
		g.dbMin = min(g.dbMin, timestampOf(k)) // it may be in RocksDB again
	}
	if g.puts == nil {
		g.puts = map[string]struct{}{}
	}
	g.puts[k] = struct{}{}
	s.puts++
}

// setDel records a delete of k, or forgets k if it is known not to be in
// RocksDB.
func (s *rocksService) setDel(g *kgState, k string) {
	if _, ok := g.puts[k]; ok {
		delete(g.puts, k)
		s.puts--
	}
	if _, ok := s.memOnly[k]; ok {
		delete(s.memOnly, k)
		return
	}
	if _, ok := g.dels[k]; ok {
		return
	}
	if g.dels == nil {
		g.dels = map[string]struct{}{}
	}
	g.dels[k] = struct{}{}
	s.dels++
}

func (s *rocksService) Register(t Timer) {
	checkRange(s.r, t.KeyGroup)
	s.buf = appendKey(s.buf[:0], t)
	g := s.state(t.KeyGroup)
	if _, ok := g.puts[string(s.buf)]; ok {
		return // registered; if due now, it is in s.due already
	}
	k := string(s.buf)
	s.setPut(g, k)
	if s.due != nil && t.Timestamp <= s.wm {
		s.due.add(k) // fires in this Advance
		return
	}
	g.min = min(g.min, t.Timestamp)
	s.minAll = min(s.minAll, t.Timestamp)
}

func (s *rocksService) Delete(t Timer) {
	checkRange(s.r, t.KeyGroup)
	s.buf = appendKey(s.buf[:0], t)
	k := string(s.buf)
	if s.due != nil {
		s.due.remove(k)
	}
	s.setDel(s.state(t.KeyGroup), k)
}

func (s *rocksService) Advance(wm int64, fn func(Timer) error) error {
	if s.due != nil {
		return errors.New("timers: advance: called from within Advance")
	}
	if wm < s.minAll {
		return nil
	}
	due, err := s.collect(wm)
	if err != nil {
		return err
	}
	s.due, s.wm = due, wm
	defer func() {
		s.due = nil
		clear(s.memOnly)
		for k := range due.set { // left by a failed fn: still registered
			g, ts := s.state(keyGroupOf(k)), timestampOf(k)
			g.min, g.dbMin = min(g.min, ts), min(g.dbMin, ts)
			s.minAll = min(s.minAll, ts)
		}
	}()
	for {
		k, ok := due.peek()
		if !ok {
			return nil
		}
		due.remove(k)
		s.setDel(s.state(keyGroupOf(k)), k)
		t, err := parseKey(k)
		if err != nil {
			return err
		}
		if err := fn(t); err != nil {
			return err
		}
	}
}

// collect returns the timers due at wm, scanning the key groups whose
// minimum is ≤ wm, and moves their minimums past wm.
func (s *rocksService) collect(wm int64) (*queue, error) {
	due := newQueue(s.r)
	s.minAll = noTimer
	for i := range s.kgs {
		g := &s.kgs[i]
		if g.min > wm {
			s.minAll = min(s.minAll, g.min)
			continue
		}
		if g.dbMin <= wm {
			var err error
			if g.dbMin, err = s.scan(due, g, s.r.Start+uint16(i), wm); err != nil {
				return nil, err
			}
		}
		next := g.dbMin
		for k := range g.puts {
			if ts := timestampOf(k); ts > wm {
				next = min(next, ts)
			} else if due.add(k) { // not found by the scan: not in RocksDB
				s.memOnly[k] = struct{}{}
			}
		}
		g.min = next
		s.minAll = min(s.minAll, next)
	}
	return due, nil
}

// scan adds the timers of key group kg in RocksDB due at wm, and returns
// the timestamp of the next one. It reads from [kg][g.dbMin] to the end of
// the key group: bounding the iterator keeps it from stepping over the
// tombstones at the start of the next key group.
func (s *rocksService) scan(due *queue, g *kgState, kg uint16, wm int64) (next int64, _ error) {
	lower := appendKey(nil, Timer{KeyGroup: kg, Timestamp: g.dbMin})[:headLen]
	it := s.db.NewIterator(s.cf, lower, state.KeyGroupPrefix(kg+1))
	defer it.Close()
	for ; it.Valid(); it.Next() {
		k := it.Key()
		if len(k) <= headLen {
			return 0, fmt.Errorf("timers: scan key group %d: malformed key %x", kg, k)
		}
		if _, del := g.dels[string(k)]; del {
			continue
		}
		if ts := timestampOf(k); ts > wm {
			return ts, nil
		}
		due.add(string(k))
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("timers: scan key group %d: %w", kg, err)
	}
	return noTimer, nil
}

// Len is RocksDB's estimate of the keys in the column family plus pending
// registrations minus pending deletions.
func (s *rocksService) Len() int {
	n, _ := s.db.Property(s.cf, "rocksdb.estimate-num-keys")
	return max(int(n)+s.puts-s.dels, 0)
}

func (s *rocksService) Flush(b *state.Batch) error {
	if s.due != nil {
		return errors.New("timers: flush: called from within Advance")
	}
	for i := range s.kgs {
		g := &s.kgs[i]
		for k := range g.puts {
			s.buf = append(s.buf[:0], k...)
			b.Put(s.cf, s.buf, nil)
			g.dbMin = min(g.dbMin, timestampOf(k))
		}
		for k := range g.dels {
			s.buf = append(s.buf[:0], k...)
			b.Delete(s.cf, s.buf)
		}
		g.puts, g.dels = nil, nil
	}
	s.puts, s.dels = 0, 0
	return nil
}

// Snapshot writes nothing: after Flush the timers are in the column
// family, and so in the checkpoint. It fails if changes are unflushed.
func (s *rocksService) Snapshot(io.Writer) error {
	if s.puts+s.dels > 0 {
		return errors.New("timers: snapshot: changes not flushed")
	}
	return nil
}

// Restore drops pending changes and rebuilds each key group's minimum from
// the column family, one seek per non-empty key group.
func (s *rocksService) Restore(io.Reader) error {
	if s.due != nil {
		return errors.New("timers: restore: called from within Advance")
	}
	clear(s.kgs)
	for i := range s.kgs {
		s.kgs[i].min, s.kgs[i].dbMin = noTimer, noTimer
	}
	s.puts, s.dels, s.minAll = 0, 0, noTimer
	lower, upper := state.KeyGroupRangeBounds(s.r)
	it := s.db.NewIterator(s.cf, lower, upper)
	defer it.Close()
	for kg := int(s.r.Start); kg <= int(s.r.End); kg++ {
		it.Seek(state.KeyGroupPrefix(uint16(kg)))
		if !it.Valid() {
			break
		}
		k := it.Key()
		if len(k) <= headLen {
			return fmt.Errorf("timers: restore: malformed key %x", k)
		}
		kg = int(k[0])<<8 | int(k[1]) // key groups skipped have no timers
		g := s.state(uint16(kg))
		g.min = timestampOf(k)
		g.dbMin = g.min
		s.minAll = min(s.minAll, g.min)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("timers: restore: %w", err)
	}
	return nil
}
