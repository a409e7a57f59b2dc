package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eddy-stream/eddy/pipeline/clock"

	"github.com/eddy-stream/eddy/internal/failpoint"
	"github.com/eddy-stream/eddy/pipeline/lang"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/ingestlog"
	"github.com/eddy-stream/eddy/storage/keygroup"
	"github.com/eddy-stream/eddy/storage/snapshot"
	"github.com/eddy-stream/eddy/storage/state"
)

// errAborted is returned by a task that stops because another task failed.
var errAborted = errors.New("pipeline: job aborted")

type batchPool struct{ p sync.Pool }

func (bp *batchPool) get() *batch {
	if b, ok := bp.p.Get().(*batch); ok {
		return b
	}
	return &batch{}
}

func (bp *batchPool) put(b *batch) {
	b.reset()
	bp.p.Put(b)
}

// sourceTask reads one ingest log from an offset, parses, runs the chained
// stateless stages, and emits watermarks of bounded out-of-orderness.
type sourceTask struct {
	spec    *SourceSpec
	sub, of uint64                   // this subtask handles the messages with offset % of == sub
	key     string                   // sourceKey: its name in checkpoint metadata
	done    func(offset uint64) bool // after a source rescale: read by an old subtask
	// settle: no checkpoint before the reader has reached it (resumeSource).
	settle uint64
	// limit, if set, is an offset the subtask does not read beyond
	// (tests: stop subtasks at chosen positions).
	limit *atomic.Uint64
	// progress is shared by the subtasks of one source (see sourceProgress).
	progress *sourceProgress
	from     uint64
	out      collector
	dl       *deadLetters
	m        *TaskMetrics
	ps       *parser
	maxTS    int64
	wm       int64
	ooo      int64
	abort    <-chan struct{}
	trigger  chan *Barrier
	cp       *cpTask
	// idleAfter marks the source idle downstream after this long without
	// messages; isIdle until the next message.
	idleAfter time.Duration
	isIdle    bool
	// advance: while idle, tell downstream every idleTick what watermark
	// the box's clock allows (idle_advance).
	advance bool
	box     *clock.BoxClock
	// ov, in unaligned mode, lets a trigger reach the source while it is
	// blocked on a full channel (unaligned.go).
	ov *overtake
	// uncounted: readings of the message being parsed, not yet in
	// m.RecordsIn.
	uncounted int64
}

// idleTick is how often an idle source with idle_advance passes on the
// box's clock.
const idleTick = time.Second

// idleWatermark is the watermark the box's clock allows an idle source:
// what a reading received now could still carry.
func (t *sourceTask) idleWatermark() int64 {
	if !t.advance || (t.spec.Receiving != nil && !t.spec.Receiving()) {
		return minWatermark
	}
	return t.box.NowMs() - t.ooo - 1
}

const readBatch = 1024

// fullSnapshotFile is the full snapshot stream of a keyed task in a
// checkpoint taken with incremental: false.
const fullSnapshotFile = "full.snap"

// checkpoint records the source's position and sends barrier b downstream,
// behind every message read before it.
func (t *sourceTask) checkpoint(b *Barrier, offset uint64) error {
	t0 := time.Now()
	// Unaligned: announced before the hand-over, which may block on a
	// full channel; what it sends is then in flight (stored).
	if err := t.ov.announce(b); err != nil {
		return err
	}
	if err := t.handOver(); err != nil {
		return err
	}
	if err := t.out.barrier(b); err != nil {
		return err
	}
	if t.dl.node != nil {
		if err := t.dl.node.barrier(b); err != nil {
			return err
		}
	}
	snap := &taskSnapshot{Watermark: t.wm, Offset: offset, MaxTimestamp: t.maxTS, Staged: t.cp.stagedState()}
	base := taskAck{
		source: t.key,
		srcSt:  checkpoint.SourceState{Offset: offset, MaxTimestamp: t.maxTS},
		state:  checkpoint.TaskState{Stage: t.cp.vertex, Kind: "none"},
	}
	base.stats.StartDelay = max(0, t0.UnixMilli()-b.Timestamp)
	t.cp.async(b, snap, base, t0, time.Since(t0), nil)
	return nil
}

func (t *sourceTask) emit(r *Reading) error {
	t.uncounted++
	if r.TS > t.maxTS {
		t.maxTS = r.TS
	}
	return t.out.collect(r)
}

// handOver sends the watermark downstream, which also flushes the batches
// and sink buffers of the chain, and flushes the dead letters.
func (t *sourceTask) handOver() error {
	// An idle source sends no watermark: downstream would take it as
	// active again and be held back by it.
	if !t.isIdle {
		if err := t.out.watermark(t.wm); err != nil {
			return err
		}
	}
	if t.dl.node != nil {
		return t.dl.node.flush()
	}
	return nil
}

func (t *sourceTask) end() error {
	if err := t.out.end(); err != nil {
		return err
	}
	if t.dl.node != nil {
		return t.dl.node.flush()
	}
	return nil
}

func (t *sourceTask) run(ctx context.Context) (err error) {
	r, err := t.spec.Log.NewReader(t.from)
	if err != nil {
		return fmt.Errorf("pipeline: source %s: open ingest log at offset %d: %w", t.spec.Name, t.from, err)
	}
	defer r.Close()
	var rec ingestlog.Record
	clock := t.box.Clock()
	lastData := clock.Mono()
	for {
		// Take the notification channel before reading: a sync that lands
		// after the last read below closes it, so the wait cannot miss it.
		notify, sibling, resumed := t.spec.Log.Notify(), t.progress.wait(), t.cp.j.spoolResumed()
		if t.ov != nil && r.Offset() >= t.settle {
			t.ov.trigger = t.trigger
		}
		n := 0
		for ; n < readBatch && t.mayRead(r.Offset()); n++ {
			err := r.Next(&rec)
			if errors.Is(err, ingestlog.ErrNoData) {
				break
			}
			if err != nil {
				return fmt.Errorf("pipeline: source %s: %w", t.spec.Name, err)
			}
			if (t.of > 1 && rec.Offset%t.of != t.sub) || (t.done != nil && t.done(rec.Offset)) {
				continue
			}
			t.m.MessagesIn.Add(1)
			err = t.ps.parse(&rec, t.emit, t.dl)
			t.m.RecordsIn.Add(t.uncounted) // once per message, not per reading
			t.uncounted = 0
			if err != nil {
				return err
			}
			if t.ov != nil && t.ov.pending != nil {
				b := t.ov.pending
				t.ov.pending, t.ov.trigger = nil, nil
				if err := t.checkpoint(b, r.Offset()); err != nil {
					return err
				}
			}
		}
		if t.ov != nil {
			t.ov.trigger = nil
		}
		t.m.Offset.Store(int64(r.Offset()))
		trigger := t.trigger
		if r.Offset() < t.settle {
			trigger = nil // replaying what old subtasks had read: not yet
		} else {
			t.done = nil
		}
		select {
		case b := <-trigger:
			if err := t.checkpoint(b, r.Offset()); err != nil {
				return err
			}
		default:
		}
		if mx := t.progress.update(t.sub, r.Offset(), t.maxTS); mx != minWatermark {
			if wm := mx - t.ooo - 1; wm > t.wm {
				t.wm = wm
				t.m.Watermark.Store(wm)
			}
		}
		if n > 0 {
			t.isIdle = false
			lastData = clock.Mono()
		}
		if n == readBatch {
			if err := t.handOverArmed(trigger, r.Offset()); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return t.end()
			case <-t.abort:
				return errAborted
			default:
			}
			continue
		}
		// Caught up: hand over what is batched, then sleep until the log grows.
		if err := t.handOverArmed(trigger, r.Offset()); err != nil {
			return err
		}
		var idleC <-chan time.Time
		switch {
		case t.idleAfter <= 0:
		case !t.isIdle:
			idleC = clock.After(lastData + t.idleAfter - clock.Mono())
		case t.advance:
			idleC = clock.After(min(idleTick, t.idleAfter))
		}
		select {
		case <-ctx.Done():
			return t.end()
		case <-t.abort:
			return errAborted
		case b := <-trigger:
			if err := t.checkpoint(b, r.Offset()); err != nil {
				return err
			}
		case <-idleC:
			t.isIdle = true
			if err := t.out.idle(t.idleWatermark()); err != nil {
				return err
			}
		case <-notify:
		case <-sibling:
		case <-resumed:
		}
	}
}

// mayRead reports whether the subtask reads on at reader offset off. When
// the job drains for a final checkpoint it stops, except while it replays
// what old subtasks had read (settle): it could not checkpoint before.
func (t *sourceTask) mayRead(off uint64) bool {
	if t.limit != nil && off >= t.limit.Load() {
		return false
	}
	if t.cp.j.spoolHold.Load() && off >= t.settle {
		return false // a sink's spool is full (spool.go)
	}
	return !t.cp.j.draining.Load() || off < t.settle
}

// sourceProgress lets the subtasks of one source share event time. Bounded
// out-of-orderness holds for the stream as a whole: a message is at most
// max_out_of_orderness older than every message before it in the log. So a
// subtask that has read the log up to position p may count the highest
// event time that a sibling saw below a position <= p, not only its own.
// Without it, a reading one subtask never sees (the last one before a pause)
// would hold back the watermark of the others forever.
type sourceProgress struct {
	mu      sync.Mutex
	pos     []uint64
	maxTS   []int64
	changed chan struct{} // closed and replaced when a subtask's event time grows
}

func newSourceProgress(n int) *sourceProgress {
	p := &sourceProgress{pos: make([]uint64, n), maxTS: make([]int64, n), changed: make(chan struct{})}
	for i := range p.maxTS {
		p.maxTS[i] = minWatermark
	}
	return p
}

// update records subtask sub at position pos with own highest event time
// maxTS, and returns the highest event time it may use for its watermark.
func (p *sourceProgress) update(sub, pos uint64, maxTS int64) int64 {
	if len(p.pos) == 1 {
		return maxTS
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if maxTS > p.maxTS[sub] || pos > p.pos[sub] {
		close(p.changed)
		p.changed = make(chan struct{})
	}
	p.pos[sub], p.maxTS[sub] = pos, maxTS
	mx := maxTS
	for i, q := range p.pos {
		if q <= pos && p.maxTS[i] > mx {
			mx = p.maxTS[i]
		}
	}
	return mx
}

// wait returns a channel closed when a sibling progresses (nil with one
// subtask: never).
func (p *sourceProgress) wait() <-chan struct{} {
	if len(p.pos) == 1 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// keyedTask is one subtask of a keyed window stage: it owns a RocksDB
// instance and the key groups keygroup.RangeFor(index).
type keyedTask struct {
	name     string
	stage    *stageNode
	index    int
	kgs      keygroup.Range
	inputs   []chan element
	inWM     []int64
	idleIn   []bool
	idleWM   []int64 // per idle input: the watermark the box's clock allows
	wm       int64
	db       *state.DB
	op       *windowOp
	pool     *batchPool
	dl       *deadLetters
	m        *TaskMetrics
	sinks    []*sinkNode
	next     collector // stateless stages and shuffles fed by the results
	resRec   Reading
	firstErr error
	abort    <-chan struct{}
	cp       *cpTask
	align    map[int64]*alignState
	heap     bool // timers on the heap: snapshot them in the sync phase
	unaligned
}

// alignState tracks barrier id across the inputs of a keyed task.
type alignState struct {
	barrier   *Barrier
	first     time.Time
	seen      []bool
	count     int
	processed int64 // bytes taken in during the alignment
	unalignedCP
}

func (t *keyedTask) onResult(res *Result) {
	if t.firstErr != nil {
		return
	}
	k, err := decodeKey(res.rawKey, len(t.stage.spec.KeyBy))
	if err != nil {
		t.firstErr = err
		return
	}
	res.Key = k
	for _, s := range t.sinks {
		if err := s.collectResult(res); err != nil {
			t.firstErr = err
			return
		}
	}
	if t.next == nil {
		return
	}
	f := make(map[string]any, len(k)+len(res.Values)+3)
	for i, name := range t.stage.spec.KeyBy {
		f[name] = k[i]
	}
	for i, a := range t.stage.plan.aggs {
		f[a.name] = res.Values[i]
	}
	f[lang.FieldWindowStart] = float64(res.Start)
	f[lang.FieldWindowEnd] = float64(res.End)
	f[lang.FieldStage] = res.Stage
	t.resRec = Reading{Fields: f, TS: res.End - 1}
	if err := t.next.collect(&t.resRec); err != nil {
		t.firstErr = err
	}
}

func (t *keyedTask) err() error { return t.firstErr }

func (t *keyedTask) onLate(e *event, reason string) {
	t.m.LateEvents.Add(1)
	if err := t.dl.lateEvent(t.stage.spec.Name, e, reason); err != nil && t.firstErr == nil {
		t.firstErr = err
	}
}

func (t *keyedTask) forEachDownstream(f func(c collector) error) error {
	for _, s := range t.sinks {
		if err := f(s); err != nil {
			return err
		}
	}
	if t.next != nil {
		if err := f(t.next); err != nil {
			return err
		}
	}
	if t.dl.node != nil {
		return f(t.dl.node)
	}
	return nil
}

func (t *keyedTask) run(ctx context.Context) error {
	ended := make([]bool, len(t.inputs))
	live := len(t.inputs)
	cases := make([]reflect.SelectCase, len(t.inputs)+3)
	for i, ch := range t.inputs {
		cases[i] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)}
	}
	cases[len(t.inputs)] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(t.abort)}
	cases[len(t.inputs)+1] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(t.prio)}
	if err := t.replayChannelState(); err != nil {
		return err
	}
	t.idleWM = make([]int64, len(t.inputs))
	for i := range t.idleWM {
		t.idleWM[i] = minWatermark
	}
	for live > 0 {
		var (
			e  element
			in int
		)
		if t.prio != nil {
			select { // announced barriers overtake queued batches
			case p := <-t.prio:
				if err := t.announced(p, cases, ended); err != nil {
					return err
				}
				continue
			default:
			}
		}
		if len(t.inputs) == 1 {
			select {
			case e = <-t.inputs[0]:
			case <-t.abort:
				return errAborted
			case p := <-t.prio:
				if err := t.announced(p, cases, ended); err != nil {
					return err
				}
				continue
			case <-t.timerC:
				if err := t.alignTimeout(cases, ended); err != nil {
					return err
				}
				continue
			}
		} else {
			cases[len(t.inputs)+2] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(t.timerC)}
			i, v, _ := reflect.Select(cases)
			switch i {
			case len(t.inputs):
				return errAborted
			case len(t.inputs) + 1:
				if err := t.announced(v.Interface().(prioBarrier), cases, ended); err != nil {
					return err
				}
				continue
			case len(t.inputs) + 2:
				if err := t.alignTimeout(cases, ended); err != nil {
					return err
				}
				continue
			}
			in, e = i, v.Interface().(element)
		}
		if len(t.align) > 0 {
			t.inFlight(in, &e)
		}
		switch e.kind {
		case elemData:
			if err := t.processBatch(e.b); err != nil {
				return err
			}
		case elemWatermark:
			if e.idle {
				t.idleIn[in], t.idleWM[in] = true, e.wm
				if err := t.onWatermark(in, t.inWM[in]); err != nil {
					return err
				}
				continue
			}
			t.idleIn[in] = false
			if err := t.onWatermark(in, e.wm); err != nil {
				return err
			}
		case elemBarrier:
			if err := t.onBarrier(in, e.barrier, cases, ended); err != nil {
				return err
			}
		case elemEnd:
			ended[in] = true
			live--
			cases[in].Chan = reflect.Value{} // a zero Chan is never selected
			for _, id := range slices.Sorted(maps.Keys(t.align)) {
				if a := t.align[id]; a != nil {
					if err := t.tryAlign(a.barrier, a, cases, ended); err != nil {
						return err
					}
				}
			}
		}
	}
	if err := t.op.flush(); err != nil {
		return err
	}
	return t.forEachDownstream(func(c collector) error { return c.end() })
}

func (t *keyedTask) processBatch(b *batch) error {
	k := len(t.stage.plan.inputs)
	for i := range b.events {
		b.events[i].vals = b.vals[i*k : (i+1)*k]
	}
	if err := t.op.processBatch(b.events, t.err); err != nil {
		return err
	}
	if c := t.cp.j.spec.BatchCost; c > 0 {
		time.Sleep(c) // a slow stage, for back-pressure benchmarks
	}
	if h := t.cp.j.spec.batchHook; h != nil {
		h(t.name)
	}
	t.m.RecordsIn.Add(int64(len(b.events)))
	t.pool.put(b)
	return nil
}

// onBarrier aligns barrier b over the inputs. In exactly-once mode an input
// that delivered b is not read again until b has arrived on every input;
// in at-least-once mode inputs are only counted.
func (t *keyedTask) onBarrier(in int, b *Barrier, cases []reflect.SelectCase, ended []bool) error {
	a := t.align[b.ID]
	if a == nil {
		a = &alignState{barrier: b, first: time.Now(), seen: make([]bool, len(t.inputs))}
		t.align[b.ID] = a
	}
	if !a.seen[in] {
		a.seen[in] = true
		a.count++
	}
	if a.snapped {
		a.persist[in] = false // what follows is after the upstream's snapshot
		return t.tryAlign(b, a, cases, ended)
	}
	if t.unalignedNow(a) {
		return t.goUnaligned(a, cases, ended)
	}
	exactly := t.cp.j.spec.Checkpointing.Mode != "at_least_once"
	if exactly && len(t.inputs) > 1 {
		cases[in].Chan = reflect.Value{}
	}
	return t.tryAlign(b, a, cases, ended)
}

// tryAlign completes the alignment of barrier b once every input that has
// not ended has delivered it. An input that ends (the job stops) while
// others wait for it must not keep them blocked: run calls this again then.
func (t *keyedTask) tryAlign(b *Barrier, a *alignState, cases []reflect.SelectCase, ended []bool) error {
	for i := range ended {
		if !ended[i] && !a.seen[i] {
			return nil
		}
	}
	exactly := t.cp.j.spec.Checkpointing.Mode != "at_least_once"
	delete(t.align, b.ID)
	t.doneID = max(t.doneID, b.ID)
	alignDur := time.Since(a.first)
	if a.snapped {
		return t.finishUnaligned(b, a, alignDur)
	}
	if exactly {
		for i, ch := range t.inputs {
			if !ended[i] {
				cases[i].Chan = reflect.ValueOf(ch)
			}
		}
	}
	return t.checkpoint(b, a.first, alignDur, a.processed)
}

// checkpoint is the synchronous phase of a snapshot, on the task's
// goroutine: write the cache to RocksDB, start the native RocksDB
// checkpoint (or pin a snapshot for a full one), copy heap timers, stage
// sink output, pass the barrier on. The RocksDB checkpoint (memtable
// flush, hard links), the file listing, checksums and the task state file
// are done in the asynchronous phase.
func (t *keyedTask) checkpoint(b *Barrier, first time.Time, alignDur time.Duration, processed int64) error {
	s, err := t.syncSnapshot(b)
	if err != nil {
		return err
	}
	s.base.stats.StartDelay = max(0, first.UnixMilli()-b.Timestamp)
	s.base.stats.Alignment = AlignmentFig{Duration: alignDur.Milliseconds(), Processed: processed}
	return t.snapshotAsync(b, s)
}

// syncSnap is a synchronous phase done, its asynchronous phase to come.
type syncSnap struct {
	snap *taskSnapshot
	base taskAck
	t0   time.Time
	sync time.Duration
	pre  func(dir string) error
}

func (t *keyedTask) snapshotAsync(b *Barrier, s *syncSnap) error {
	t.cp.async(b, s.snap, s.base, s.t0, s.sync, s.pre)
	if errors.Is(s.base.err, state.ErrFailed) {
		// The checkpoint is reported failed above; the DB is not called
		// again, so the task ends the job, which the daemon rebuilds from
		// the last completed checkpoint.
		return s.base.err
	}
	return nil
}

// syncSnapshot is the synchronous phase; it passes the barrier on.
func (t *keyedTask) syncSnapshot(b *Barrier) (*syncSnap, error) {
	t0 := time.Now()
	opts := &t.cp.j.spec.Checkpointing
	base := taskAck{state: checkpoint.TaskState{
		Stage: t.stage.spec.Name, Index: t.index, KeyGroupStart: t.kgs.Start, KeyGroupEnd: t.kgs.End, Kind: checkpoint.KindNative,
	}}
	snap := &taskSnapshot{Watermark: t.wm, InputWatermarks: slices.Clone(t.inWM)}
	if err := t.op.waitPending(); err != nil { // the previous native checkpoint
		return nil, err
	}
	waited := time.Since(t0)
	err := t.op.flush()
	if err != nil {
		return nil, err // the cache could not be written: the task's state is in doubt
	}
	written := time.Since(t0) - waited
	var pre func(dir string) error
	if opts.Incremental && !b.Savepoint {
		// The RocksDB checkpoint runs in the asynchronous phase; the
		// task's writes are held until it returns (nativecp.go).
		pre = t.startNative(b.ID, t.cp.j.spec.Checkpoints.TaskDir(b.ID, t.name))
	} else {
		// Full snapshot: pin a RocksDB snapshot now, stream it in the
		// asynchronous phase while the task goes on writing.
		base.state.Kind = checkpoint.KindFull
		rs, err := t.db.NewSnapshot()
		if err != nil {
			base.err = fmt.Errorf("task %s: snapshot: %w", t.name, err)
		} else {
			pre = func(dir string) error {
				defer rs.Release()
				if err := fileutil.CreateDirAllFS(t.cp.j.spec.FS, dir); err != nil {
					return err
				}
				_, err := snapshot.WriteFS(t.cp.j.spec.FS, filepath.Join(dir, fullSnapshotFile), rs, t.db.ColumnFamilies(), t.kgs, opts.Compression)
				return err
			}
		}
		failpoint.Hit(failpoint.CheckpointSync)
	}
	if t.heap && base.err == nil {
		var buf bytes.Buffer
		if err := t.op.timers.Snapshot(&buf); err != nil {
			base.err = fmt.Errorf("task %s: snapshot heap timers: %w", t.name, err)
		}
		snap.HeapTimers = buf.Bytes()
	}
	if err := t.forEachDownstream(func(c collector) error { return c.barrier(b) }); err != nil {
		return nil, err
	}
	snap.Staged = t.cp.stagedState()
	d := time.Since(t0)
	t.cp.j.log.Debug(msgSyncPhase, "task", t.name, "checkpoint", b.ID, "took", d, "wait", waited, "write", written)
	return &syncSnap{snap: snap, base: base, t0: t0, sync: d, pre: pre}, nil
}

// onWatermark takes input in's watermark; the task's watermark is the
// minimum over inputs that are not idle, and never goes back. When every
// input is idle and each allows a watermark from the box's clock
// (idle_advance), it is the minimum of those.
//
// The advanced watermark travels in the channels like any other, in order
// with records and barriers, so a checkpoint records it in the task's
// watermark, and the windows it fired are in that checkpoint's epoch.
func (t *keyedTask) onWatermark(in int, wm int64) error {
	t.inWM[in] = max(t.inWM[in], wm)
	low, any := lowWatermark(t.inWM, t.idleIn, t.idleWM)
	if !any || low <= t.wm {
		return t.flushSinks()
	}
	return t.advanceTo(low)
}

// advanceTo moves the task's watermark up to low: fires the windows it
// closes and passes it downstream.
func (t *keyedTask) advanceTo(low int64) error {
	t.wm = low
	t.m.Watermark.Store(low)
	if err := t.op.advance(low); err != nil {
		return err
	}
	if t.firstErr != nil {
		return t.firstErr
	}
	return t.forEachDownstream(func(c collector) error { return c.watermark(low) })
}

// lowWatermark is the minimum of the input watermarks of inputs that are
// not idle or, when every input is idle, of what each allows from the box's
// clock; false when there is none.
func lowWatermark(inWM []int64, idleIn []bool, idleWM []int64) (int64, bool) {
	low, any := int64(0), false
	for i, w := range inWM {
		if idleIn[i] {
			continue
		}
		if !any || w < low {
			low, any = w, true
		}
	}
	if !any && len(idleWM) > 0 {
		low = idleWM[0]
		for _, w := range idleWM {
			low = min(low, w)
		}
		any = low != minWatermark
	}
	return low, any
}

func (t *keyedTask) flushSinks() error {
	for _, s := range t.sinks {
		if err := s.flush(); err != nil {
			return err
		}
	}
	if t.dl.node != nil {
		return t.dl.node.flush()
	}
	return nil
}
