package pipeline

import (
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"time"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// Unaligned checkpoints (checkpointing.unaligned), Flink's way, over the
// bounded channels between tasks.
//
// A barrier is announced ahead of the queue: a shuffle sends it on the
// receiving keyed subtask's priority lane (prio), then in-band behind the
// batches already queued (the marker). A keyed subtask snapshots when the
// first announcement (or marker) of a barrier reaches it, passes the barrier
// on at once, and goes on processing; every batch that then reaches it on
// an input before that input's marker was sent before the upstream's
// snapshot, so it is processed and also stored with the checkpoint, in the
// channel-state file (chanstate.go), in order with the watermarks that came
// with them. On restore those batches are processed first, by the subtask
// that owns their key groups at the new parallelism, each judged late or on
// time against the watermark its old subtask had when it processed it.
//
// A source blocked on a full channel takes the trigger there (overtake): it
// announces the barrier downstream at once and takes its own snapshot,
// marker and position after the message it is emitting.
//
// With checkpointing.aligned_timeout a keyed subtask aligns first and
// switches to unaligned once that long has passed since the trigger.

// prioBarrier is an announced barrier on a keyed subtask's priority lane.
type prioBarrier struct {
	in int // the input of the receiving subtask it belongs to
	b  *Barrier
}

// prioLane is the capacity of a keyed subtask's priority lane; a sender
// blocks on a full lane (only with more than this many announcements
// outstanding).
const prioLane = 256

func (j *Job) unalignedMode() bool {
	return j.spec.Checkpoints != nil && j.spec.Checkpointing.Unaligned && j.spec.Checkpointing.Mode != "at_least_once"
}

// announcer is the shuffle's part: the priority lanes of its receivers.
type announcer struct {
	prio      []chan prioBarrier
	prioIn    []int
	announced int64
	ov        *overtake
}

func (a *announcer) addLane(t *keyedTask, in int) {
	if t.prio == nil {
		t.prio = make(chan prioBarrier, prioLane)
	}
	a.prio = append(a.prio, t.prio)
	a.prioIn = append(a.prioIn, in)
}

// announce sends barrier b ahead of the queued batches, once.
func (a *announcer) announce(b *Barrier, abort <-chan struct{}) error {
	if a.prio == nil || b.ID <= a.announced {
		return nil
	}
	a.announced = b.ID
	for i, ch := range a.prio {
		select {
		case ch <- prioBarrier{in: a.prioIn[i], b: b}:
		case <-abort:
			return errAborted
		}
	}
	return nil
}

// overtake lets a source subtask blocked on a full channel take a
// checkpoint trigger.
type overtake struct {
	trigger  <-chan *Barrier // set by the source while it may checkpoint
	pending  *Barrier        // taken while blocked: the source checkpoints after the message
	shuffles []*shuffleNode
}

func (o *overtake) armed() <-chan *Barrier {
	if o == nil || o.pending != nil {
		return nil
	}
	return o.trigger
}

func (o *overtake) fire(b *Barrier) error {
	o.pending = b
	return o.announce(b)
}

// announce sends barrier b ahead of the queued batches on every shuffle of
// the source (once per barrier: a later call does nothing).
func (o *overtake) announce(b *Barrier) error {
	if o == nil {
		return nil
	}
	for _, s := range o.shuffles {
		if err := s.announce(b, s.abort); err != nil {
			return err
		}
	}
	return nil
}

// handOverArmed is the source's hand-over after a batch of reads: armed,
// a trigger that comes while it is blocked on a full channel is taken
// there, and the checkpoint is taken after it, at offset.
func (t *sourceTask) handOverArmed(trigger <-chan *Barrier, offset uint64) error {
	if t.ov == nil || trigger == nil {
		return t.handOver()
	}
	t.ov.trigger = trigger
	err := t.handOver()
	t.ov.trigger = nil
	b := t.ov.pending
	t.ov.pending = nil
	if err != nil || b == nil {
		return err
	}
	return t.checkpoint(b, offset)
}

// unaligned is the keyed subtask's part.
type unaligned struct {
	prio     chan prioBarrier
	doneID   int64 // the highest barrier completed
	timer    *time.Timer
	timerC   <-chan time.Time
	restored []oldFlights // in-flight elements of the restored checkpoint
	// restoredInWM: the restore keeps the inputs of the old subtask
	// (same parallelism), so its input watermarks carry over.
	restoredInWM bool
}

// oldFlights is what one old subtask overlapping a restored subtask left in
// flight, and its snapshot (the watermarks it started from).
type oldFlights struct {
	snap  *taskSnapshot
	items []flight
}

// unalignedCP is the alignState's part: barrier's snapshot taken, what is
// persisted until every input's marker.
type unalignedCP struct {
	snapped   bool
	persist   []bool // per input: batches are in flight (stored with the checkpoint)
	cs        *chanState
	pend      *syncSnap
	persisted int64
}

func (t *keyedTask) alignFor(b *Barrier) *alignState {
	a := t.align[b.ID]
	if a == nil {
		a = &alignState{barrier: b, first: time.Now(), seen: make([]bool, len(t.inputs))}
		t.align[b.ID] = a
	}
	return a
}

// unalignedNow reports whether alignment a is to go unaligned now; with
// aligned_timeout it arms the timer otherwise.
func (t *keyedTask) unalignedNow(a *alignState) bool {
	if t.prio == nil {
		return false
	}
	d := t.cp.j.spec.Checkpointing.AlignedTimeout
	if d <= 0 {
		return true
	}
	left := time.Until(time.UnixMilli(a.barrier.Timestamp).Add(d))
	if left <= 0 {
		return true
	}
	if t.timer == nil {
		t.timer = time.NewTimer(left)
	} else {
		t.timer.Reset(left)
	}
	t.timerC = t.timer.C
	return false
}

// announced takes barrier p.b announced on input p.in.
func (t *keyedTask) announced(p prioBarrier, cases []reflect.SelectCase, ended []bool) error {
	if p.b.ID <= t.doneID {
		return nil // its marker came first and completed it
	}
	a := t.alignFor(p.b)
	if a.snapped || !t.unalignedNow(a) {
		return nil
	}
	return t.goUnaligned(a, cases, ended)
}

// alignTimeout switches the alignments past aligned_timeout to unaligned.
func (t *keyedTask) alignTimeout(cases []reflect.SelectCase, ended []bool) error {
	t.timerC = nil
	for _, id := range slices.Sorted(maps.Keys(t.align)) {
		a := t.align[id]
		if a == nil || a.snapped || !t.unalignedNow(a) {
			continue
		}
		if err := t.goUnaligned(a, cases, ended); err != nil {
			return err
		}
	}
	return nil
}

// goUnaligned snapshots for alignment a now and persists, per input, what
// arrives until its marker.
func (t *keyedTask) goUnaligned(a *alignState, cases []reflect.SelectCase, ended []bool) error {
	a.snapped = true
	a.cs = newChanState()
	a.persist = make([]bool, len(t.inputs))
	for i, ch := range t.inputs {
		a.persist[i] = !ended[i] && !a.seen[i]
		if !ended[i] && !t.alignedBlocks(i, a) {
			cases[i].Chan = reflect.ValueOf(ch) // blocked while aligning
		}
	}
	s, err := t.syncSnapshot(a.barrier)
	if err != nil {
		return err
	}
	a.pend = s
	return t.tryAlign(a.barrier, a, cases, ended)
}

// alignedBlocks reports whether another alignment than a, still aligned,
// holds input i blocked (more than one checkpoint in flight).
func (t *keyedTask) alignedBlocks(i int, a *alignState) bool {
	for _, o := range t.align {
		if o != a && !o.snapped && o.seen[i] {
			return true
		}
	}
	return false
}

// inFlight accounts element e of input in to the alignments in progress:
// processed bytes, and in unaligned ones the batches and watermarks to
// persist, in the order they are processed.
func (t *keyedTask) inFlight(in int, e *element) {
	k := len(t.stage.plan.inputs)
	for _, a := range t.align {
		var n int64
		switch {
		case e.kind == elemData && a.snapped && a.persist[in]:
			n = a.cs.add(in, e.b, k)
			a.persisted += n
		case e.kind == elemData:
			n = batchBytes(e.b)
		case e.kind == elemWatermark && a.snapped && a.persist[in]:
			n = a.cs.addWatermark(in, e.wm, e.idle)
			a.persisted += n
		}
		a.processed += n
	}
}

// batchBytes is the size of b in the channel-state format.
func batchBytes(b *batch) int64 {
	n := int64(frameHeader + 3 + 6 + 8*len(b.vals))
	for i := range b.events {
		n += int64(22 + len(b.events[i].key) + len(b.events[i].src.source))
	}
	return n
}

// finishUnaligned completes unaligned checkpoint b: every input's marker is
// in. The channel state is written in the asynchronous phase.
func (t *keyedTask) finishUnaligned(b *Barrier, a *alignState, alignDur time.Duration) error {
	s := a.pend
	s.base.stats.StartDelay = max(0, a.first.UnixMilli()-b.Timestamp)
	s.base.stats.Alignment = AlignmentFig{Duration: alignDur.Milliseconds(), Processed: a.processed, Persisted: a.persisted}
	s.base.stats.Unaligned = true
	if a.cs.frames > 0 {
		pre, cs, fsys := s.pre, a.cs, t.cp.j.spec.FS
		s.pre = func(dir string) error {
			if pre != nil {
				if err := pre(dir); err != nil {
					return err
				}
			}
			if err := fileutil.CreateDirAllFS(fsys, dir); err != nil {
				return err
			}
			return cs.write(fsys, dir)
		}
	}
	return t.snapshotAsync(b, s)
}

// restoreChannelState reads the in-flight elements of the restored
// checkpoint that belong to t: from every old subtask of its stage whose key
// groups overlap, the watermarks and the events of t's key groups, each old
// subtask's in its order, with that subtask's snapshot.
func (j *Job) restoreChannelState(t *keyedTask) error {
	md := j.spec.Restore
	if md == nil {
		return nil
	}
	snap := j.restored[t.name]
	var out []oldFlights
	any := false
	for _, ot := range j.overlapping(t.stage.spec.Name, t.kgs) {
		path := filepath.Join(j.spec.Checkpoints.TaskDir(md.ID, ot.name), channelStateFile)
		fs, err := readChanState(j.spec.FS, path, t.kgs)
		if err != nil {
			return fmt.Errorf("pipeline: restore in-flight data of %s: %w", t.name, err)
		}
		old := snap
		if j.rescaled() && snap != nil {
			old = snap.olds[ot.name]
		}
		if old == nil {
			old = &taskSnapshot{Watermark: minWatermark}
		}
		any = any || len(fs) > 0
		out = append(out, oldFlights{snap: old, items: fs})
	}
	if any {
		t.restored, t.restoredInWM = out, !j.rescaled()
	}
	return nil
}

// replayChannelState processes the restored in-flight elements before
// anything from the inputs, with the outcome the old subtasks had when they
// processed them (and an aligned checkpoint would have held):
//
//   - For each old subtask its input watermarks are followed from its
//     snapshot through its in-flight watermarks, in order, and each of its
//     batches is judged late or on time against that old subtask's
//     watermark at that point, whatever the parallelism now.
//   - No window fires during the replay (one old subtask's watermark must
//     not fire the windows of another's keys early); then the task's
//     watermark becomes the lowest the old subtasks reached — what a
//     rescaled restore of an aligned checkpoint starts from — the windows
//     up to it fire, and it is passed downstream, where the old subtasks
//     had sent it after their barrier. At the same parallelism the input
//     watermarks are those the old subtask reached.
//
// With allowed lateness a window that the old subtask fired and then
// updated with an in-flight reading fires once here, with the same values.
func (t *keyedTask) replayChannelState() error {
	if len(t.restored) == 0 {
		return nil
	}
	wm, low := t.op.wm, int64(math.MaxInt64)
	for _, o := range t.restored {
		sim := newWatermarkSim(o.snap)
		for _, f := range o.items {
			if f.kind != flightBatch {
				sim.take(f)
				continue
			}
			t.op.wm = max(wm, sim.wm)
			err := t.processBatch(f.b)
			t.op.wm = wm
			if err != nil {
				return err
			}
			if t.firstErr != nil {
				return t.firstErr
			}
		}
		low = min(low, sim.wm)
		if t.restoredInWM && len(sim.inWM) == len(t.inWM) {
			copy(t.inWM, sim.inWM)
		}
	}
	t.restored = nil
	if low <= t.wm {
		return nil
	}
	return t.advanceTo(low)
}

// watermarkSim follows an old subtask's watermark through its in-flight
// watermarks the way onWatermark does.
type watermarkSim struct {
	wm     int64
	inWM   []int64
	idleIn []bool
	idleWM []int64
}

func newWatermarkSim(s *taskSnapshot) *watermarkSim {
	n := len(s.InputWatermarks)
	w := &watermarkSim{wm: s.Watermark, inWM: slices.Clone(s.InputWatermarks), idleIn: make([]bool, n), idleWM: make([]int64, n)}
	for i := range w.idleWM {
		w.idleWM[i] = minWatermark
	}
	return w
}

func (w *watermarkSim) take(f flight) {
	if f.in < 0 || f.in >= len(w.inWM) {
		return // a version 1 file has no watermarks; a bad index cannot be placed
	}
	if f.kind == flightIdle {
		w.idleIn[f.in], w.idleWM[f.in] = true, f.wm
	} else {
		w.idleIn[f.in] = false
		w.inWM[f.in] = max(w.inWM[f.in], f.wm)
	}
	if low, ok := lowWatermark(w.inWM, w.idleIn, w.idleWM); ok {
		w.wm = max(w.wm, low)
	}
}
