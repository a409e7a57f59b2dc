package pipeline

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"
	"unsafe"

	"github.com/eddy-stream/eddy/storage/state"
	"github.com/eddy-stream/eddy/storage/timers"
)

// Column families of a window stage's RocksDB instance.
const (
	cfWindows = "windows" // [kg][key] → every open window of the key with its accumulators and timers
	cfTimers  = "timers"  // timer service (state.timers: rocksdb)
)

type windowKind uint8

const (
	tumbling windowKind = iota
	sliding
	session
)

// assigner places an event time into windows, Flink's WindowAssigner.
// Times are unix milliseconds; a window is [start, end).
type assigner struct {
	kind                  windowKind
	size, slide, gap, lag int64 // lag is the allowed lateness
	// The tumbling window assign found last, if memo: the next event
	// time is most likely in it too (no division).
	memo      bool
	memoStart int64
}

func newAssigner(w *WindowSpec) (assigner, error) {
	a := assigner{
		size: w.Size.Milliseconds(), slide: w.Slide.Milliseconds(),
		gap: w.Gap.Milliseconds(), lag: w.AllowedLateness.Milliseconds(),
	}
	switch w.Type {
	case "tumbling":
		a.kind = tumbling
		if a.size <= 0 {
			return a, fmt.Errorf("tumbling window needs size > 0")
		}
	case "sliding":
		a.kind = sliding
		if a.size <= 0 || a.slide <= 0 || a.slide > a.size || a.size%a.slide != 0 {
			return a, fmt.Errorf("sliding window needs 0 < slide <= size and size a multiple of slide")
		}
	case "session":
		a.kind = session
		if a.gap <= 0 {
			return a, fmt.Errorf("session window needs gap > 0")
		}
	default:
		return a, fmt.Errorf("unknown window type %q (allowed: tumbling, sliding, session)", w.Type)
	}
	return a, nil
}

func floorMod(a, b int64) int64 { return ((a % b) + b) % b }

// assign appends the windows ts belongs to (tumbling and sliding).
func (a *assigner) assign(ts int64, dst []span) []span {
	switch a.kind {
	case tumbling:
		if !a.memo || ts < a.memoStart || ts >= a.memoStart+a.size {
			a.memoStart, a.memo = ts-floorMod(ts, a.size), true
		}
		return append(dst, span{a.memoStart, a.memoStart + a.size})
	case sliding:
		last := ts - floorMod(ts, a.slide)
		for s := last; s > ts-a.size; s -= a.slide {
			dst = append(dst, span{s, s + a.size})
		}
		return dst
	}
	return append(dst, span{ts, ts + a.gap})
}

// span is one window [start, end) the assigner places an event time in.
// (A struct of two fields lives in registers; a [2]int64 is built and
// read back through memory, which stalls right after it is written.)
type span struct{ start, end int64 }

// win is one open window of a key.
type win struct {
	start, end int64
	firings    uint32
	accs       []acc
}

func (w *win) maxTS() int64 { return w.end - 1 }

// keyEntry is the cached state of one key: its open windows (sorted by
// start) and the timer timestamps registered for it.
type keyEntry struct {
	kg     uint16
	key    string
	wins   []*win
	timers []int64
	dirty  bool
	inDB   bool
	// The cache's LRU list (writecache.go) and the estimated bytes.
	prev, next *keyEntry
	size       int64
}

// Result is one firing of a window for a key.
type Result struct {
	Stage  string
	Key    []string // key field values, in key_by order
	Start  int64
	End    int64
	Values []float64 // in aggPlan order
	Firing uint32    // 1 for the on-time firing, 2.. for late updates
	// Partial names the aggregates that did not see the whole window
	// (added by a migration while it was open, aggmigrate.go); nil when
	// every aggregate did.
	Partial []string
	rawKey  string
	stageIx int
}

// windowOp is a keyed window operator with a write-back cache in front of
// RocksDB: a reading costs a Go map lookup, not a cgo call. Dirty entries
// are written in one WriteBatch when dirtyLimit of them are pending, when
// the cache overflows (least recently used entries are then evicted, see
// writecache.go) and before every snapshot. A batch's cache misses are read
// with one MultiGet.
type windowOp struct {
	stage    string
	keyNames []string
	asg      assigner
	plan     *aggPlan
	db       *state.DB
	cfWin    *state.CF
	timers   timers.Service
	cache    map[string]*keyEntry
	lru      keyEntry    // sentinel of the LRU list: next is the most recently used
	bytes    int64       // estimated bytes of the cached entries
	dirty    []*keyEntry // entries changed since the last write to RocksDB
	limit    int
	maxBytes int64 // 0: no byte bound
	// prefetch's scratch
	miss       []*keyEntry
	missKeys   []byte
	missEnds   []int
	missSlices [][]byte
	wm         int64
	out        func(*Result)
	late       func(e *event, reason string)
	keyBuf     []byte
	asgBuf     []span
	batch      *state.Batch
	valBuf     []byte
	resVals    []float64
	resPart    []string
	layout     int                   // aggregate layout of the values it writes (aggmigrate.go)
	layouts    map[int]*layoutReader // old layouts the state may hold
	lateSeen   uint64
	pre        preAgg
	noPreAgg   bool      // every reading on its own: the pre-aggregation test's reference (keyed tasks pre-aggregate)
	pending    *nativeCP // a native checkpoint in progress: no writes (nativecp.go)
}

func (op *windowOp) entry(kg uint16, key string) (*keyEntry, error) {
	if e, ok := op.lookup(key); ok {
		return e, nil
	}
	e := &keyEntry{kg: kg, key: key}
	op.keyBuf = state.AppendKey(op.keyBuf[:0], kg, []byte(key), nil)
	v, ok, err := op.db.Get(op.cfWin, op.keyBuf)
	if err != nil {
		return nil, err
	}
	if ok {
		if err := op.decodeEntry(e, v); err != nil {
			return nil, fmt.Errorf("pipeline: stage %s: decode state of key group %d: %w", op.stage, kg, err)
		}
		e.inDB = true
	}
	op.add(e)
	return e, nil
}

func (op *windowOp) markDirty(e *keyEntry) {
	op.resize(e)
	if !e.dirty {
		e.dirty = true
		op.dirty = append(op.dirty, e)
	}
}

// dirtyLimit bounds the entries written to RocksDB in one go: beyond it the
// dirty entries are written between readings, so the synchronous phase of a
// checkpoint has no more than this many to write. (While a native
// checkpoint is pending they are held, up to the bound in nativecp.go, and
// written at the first reading after it.)
const dirtyLimit = 4096

func (op *windowOp) isLate(w *win) bool { return w.maxTS()+op.asg.lag <= op.wm }

// process adds one event to its windows.
func (op *windowOp) process(ev *event) error {
	e, err := op.entry(ev.kg, ev.key)
	if err != nil {
		return err
	}
	if op.asg.kind == session {
		return op.processSession(e, ev)
	}
	op.asgBuf = op.asg.assign(ev.ts, op.asgBuf[:0])
	added := false
	for _, se := range op.asgBuf {
		if se.end-1+op.asg.lag <= op.wm {
			continue // this window is past its allowed lateness
		}
		w := op.window(e, se)
		op.addTo(w, ev)
		added = true
		if w.firings > 0 { // late but within allowed lateness: fire again
			op.fire(e, w)
		}
	}
	if !added {
		op.lateSeen++
		op.late(ev, lateReason(ev.ts, op.wm))
		if len(e.wins) == 0 && !e.inDB && op.cache[e.key] == e {
			op.remove(e)
		}
		return nil
	}
	op.markDirty(e)
	return op.maybeEvict()
}

func lateReason(ts, wm int64) string {
	return fmt.Sprintf("late event: event time %s is behind the watermark %s by more than allowed lateness",
		fmtMS(ts), fmtMS(wm))
}

func (op *windowOp) processSession(e *keyEntry, ev *event) error {
	nw := &win{start: ev.ts, end: ev.ts + op.asg.gap, accs: make([]acc, len(op.plan.aggs))}
	// Merge every window that intersects (Flink's MergingWindowSet: windows
	// that touch merge too).
	kept := e.wins[:0]
	var merged []*win
	for _, w := range e.wins {
		if w.start <= nw.end && nw.start <= w.end {
			merged = append(merged, w)
			continue
		}
		kept = append(kept, w)
	}
	for _, w := range merged {
		nw.start = min(nw.start, w.start)
		nw.end = max(nw.end, w.end)
		nw.firings = max(nw.firings, w.firings)
		for i := range nw.accs {
			nw.accs[i].merge(op.plan.aggs[i].fn, w.accs[i])
		}
	}
	if op.isLate(nw) {
		e.wins = append(kept, merged...)
		slices.SortFunc(e.wins, func(a, b *win) int { return int(a.start - b.start) })
		op.lateSeen++
		op.late(ev, fmt.Sprintf("late event: session of event time %s closed before the watermark %s",
			fmtMS(ev.ts), fmtMS(op.wm)))
		if len(e.wins) == 0 && !e.inDB && op.cache[e.key] == e {
			op.remove(e)
		}
		return nil
	}
	e.wins = kept
	e.insert(nw)
	op.addTo(nw, ev)
	op.ensureTimer(e, nw.maxTS())
	if nw.firings > 0 && nw.maxTS() <= op.wm {
		op.fire(e, nw)
	}
	op.markDirty(e)
	return op.maybeEvict()
}

func (op *windowOp) addTo(w *win, ev *event) {
	for i, a := range op.plan.aggs {
		v := 0.0
		if a.input >= 0 {
			v = ev.vals[a.input]
		}
		w.accs[i].add(a.fn, v, ev.ts)
	}
}

// window is e's window se, opened (with its timer) if e has none.
func (op *windowOp) window(e *keyEntry, se span) *win {
	w := e.find(se.start, se.end)
	if w == nil {
		w = &win{start: se.start, end: se.end, accs: make([]acc, len(op.plan.aggs))}
		e.insert(w)
		op.ensureTimer(e, w.maxTS())
	}
	return w
}

func (op *windowOp) ensureTimer(e *keyEntry, ts int64) {
	if slices.Contains(e.timers, ts) {
		return
	}
	e.timers = append(e.timers, ts)
	// The key's bytes without a copy (48 B of garbage per new key):
	// Register copies them and keeps nothing of t.
	op.timers.Register(timers.Timer{KeyGroup: e.kg, Key: unsafe.Slice(unsafe.StringData(e.key), len(e.key)), Timestamp: ts})
}

func (op *windowOp) fire(e *keyEntry, w *win) {
	w.firings++
	op.resVals, op.resPart = op.resVals[:0], op.resPart[:0]
	for i, a := range op.plan.aggs {
		op.resVals = append(op.resVals, w.accs[i].result(a.fn))
		if w.accs[i].partial {
			op.resPart = append(op.resPart, a.name)
		}
	}
	r := &Result{Stage: op.stage, Start: w.start, End: w.end, Values: op.resVals, Firing: w.firings, rawKey: e.key}
	if len(op.resPart) > 0 {
		r.Partial = op.resPart
	}
	op.out(r)
}

// advance moves the watermark and fires every window whose time has come.
func (op *windowOp) advance(wm int64) error {
	if wm <= op.wm {
		return nil
	}
	op.wm = wm
	err := op.timers.Advance(wm, func(t timers.Timer) error {
		e, err := op.entry(t.KeyGroup, string(t.Key))
		if err != nil {
			return err
		}
		e.timers = slices.DeleteFunc(e.timers, func(ts int64) bool { return ts == t.Timestamp })
		op.onTimer(e)
		return nil
	})
	if err != nil {
		return err
	}
	return op.maybeEvict()
}

func (op *windowOp) onTimer(e *keyEntry) {
	for _, w := range e.wins {
		if w.firings == 0 && w.maxTS() <= op.wm {
			op.fire(e, w)
		}
	}
	e.wins = slices.DeleteFunc(e.wins, op.isLate)
	next := int64(0)
	for i, w := range e.wins {
		t := w.maxTS()
		if w.firings > 0 {
			t += op.asg.lag
		}
		if i == 0 || t < next {
			next = t
		}
	}
	if len(e.wins) > 0 {
		op.ensureTimer(e, next)
	}
	op.markDirty(e)
}

func (e *keyEntry) find(start, end int64) *win {
	for _, w := range e.wins {
		if w.start == start && w.end == end {
			return w
		}
	}
	return nil
}

func (e *keyEntry) insert(w *win) {
	i, _ := slices.BinarySearchFunc(e.wins, w.start, func(a *win, s int64) int {
		switch {
		case a.start < s:
			return -1
		case a.start > s:
			return 1
		}
		return 0
	})
	e.wins = slices.Insert(e.wins, i, w)
}

// flush writes every dirty entry and pending timer into RocksDB in one
// WriteBatch. It runs before each snapshot and when the cache overflows;
// it first waits for a pending native checkpoint.
func (op *windowOp) flush() error {
	if err := op.waitPending(); err != nil {
		return err
	}
	b := op.batch
	b.Clear()
	for _, e := range op.dirty {
		if !e.dirty {
			continue
		}
		e.dirty = false
		op.keyBuf = state.AppendKey(op.keyBuf[:0], e.kg, []byte(e.key), nil)
		if len(e.wins) == 0 {
			if e.inDB {
				b.Delete(op.cfWin, op.keyBuf)
				e.inDB = false
			}
			if op.cache[e.key] == e {
				op.remove(e)
			}
			continue
		}
		op.valBuf = op.encodeEntry(op.valBuf[:0], e)
		b.Put(op.cfWin, op.keyBuf, op.valBuf)
		e.inDB = true
	}
	clear(op.dirty)
	op.dirty = op.dirty[:0]
	if err := op.timers.Flush(b); err != nil {
		return err
	}
	if b.Len() == 0 {
		return nil
	}
	if err := op.db.Write(b); err != nil {
		return fmt.Errorf("pipeline: stage %s: write state: %w", op.stage, err)
	}
	b.Clear()
	return nil
}

// State value of a key (cfWindows), little-endian varints:
//
//	byte 0x00; byte version (StateEncoding, 2); uvarint layout
//	uvarint n; n × { varint start; uvarint end-start; uvarint firings; acc... }
//	uvarint m; m × varint timer timestamp
//
// The accumulators are those of the layout's aggregate list, in its order;
// each starts with a flags byte (accSet, accPartial). Version 1 had no
// layout (layout 0) and no partial flag. Values written before versions
// (encoding 0) have no header: they start with n, which is at least 1 (a
// key without windows is deleted), so their first byte is never 0x00.
func (op *windowOp) encodeEntry(dst []byte, e *keyEntry) []byte {
	dst = append(dst, 0, StateEncoding)
	dst = binary.AppendUvarint(dst, uint64(op.layout))
	dst = binary.AppendUvarint(dst, uint64(len(e.wins)))
	for _, w := range e.wins {
		dst = binary.AppendVarint(dst, w.start)
		dst = binary.AppendUvarint(dst, uint64(w.end-w.start))
		dst = binary.AppendUvarint(dst, uint64(w.firings))
		for i, a := range op.plan.aggs {
			dst = appendAcc(dst, a.fn, &w.accs[i])
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(e.timers)))
	for _, t := range e.timers {
		dst = binary.AppendVarint(dst, t)
	}
	return dst
}

func (op *windowOp) decodeEntry(e *keyEntry, b []byte) error {
	b, layout, err := stripEncoding(b)
	if err != nil {
		return err
	}
	var lr *layoutReader // nil: the current layout
	if layout != op.layout {
		if lr = op.layouts[layout]; lr == nil {
			return fmt.Errorf("pipeline: state value has aggregate layout %d; the stage's schema records layouts %s", layout, layoutList(op))
		}
	}
	uv := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, errShortValue
		}
		b = b[n:]
		return v, nil
	}
	sv := func() (int64, error) {
		v, n := binary.Varint(b)
		if n <= 0 {
			return 0, errShortValue
		}
		b = b[n:]
		return v, nil
	}
	n, err := uv()
	if err != nil {
		return err
	}
	e.wins = make([]*win, 0, n)
	for range n {
		w := &win{accs: make([]acc, len(op.plan.aggs))}
		if w.start, err = sv(); err != nil {
			return err
		}
		d, err := uv()
		if err != nil {
			return err
		}
		w.end = w.start + int64(d)
		f, err := uv()
		if err != nil {
			return err
		}
		w.firings = uint32(f)
		if lr == nil {
			for i, a := range op.plan.aggs {
				if b, err = readAcc(b, a.fn, &w.accs[i]); err != nil {
					return err
				}
			}
		} else {
			for i, fn := range lr.fns {
				var a acc
				if b, err = readAcc(b, fn, &a); err != nil {
					return err
				}
				if j := lr.to[i]; j >= 0 {
					w.accs[j] = a
				}
			}
			for _, j := range lr.added {
				w.accs[j].partial = true
			}
		}
		e.wins = append(e.wins, w)
	}
	m, err := uv()
	if err != nil {
		return err
	}
	for range m {
		t, err := sv()
		if err != nil {
			return err
		}
		e.timers = append(e.timers, t)
	}
	return nil
}

func fmtMS(ms int64) string {
	if ms == minWatermark {
		return "-inf"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}
