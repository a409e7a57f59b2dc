package pipeline

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/eddy-stream/eddy/pipeline/clock"

	"github.com/eddy-stream/eddy/pipeline/lang"
	"github.com/eddy-stream/eddy/pipeline/sink"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/keygroup"
	"github.com/eddy-stream/eddy/storage/state"
	"github.com/eddy-stream/eddy/storage/timers"
)

func (j *Job) openSubtasks(n *stageNode) error {
	p, maxP := j.spec.Parallelism, j.spec.MaxParallelism
	for i := range p {
		name := fmt.Sprintf("%s-%d", n.spec.Name, i)
		opts := state.Options{
			Dir:               filepath.Join(j.spec.State.Dir, name),
			ColumnFamilies:    []string{cfWindows, cfTimers},
			Memory:            j.spec.State.Memory,
			CF:                j.spec.State.ColumnFamilies,
			MaxBackgroundJobs: j.spec.State.MaxBackgroundJobs,
			Logger:            j.log,
			FS:                j.spec.FS,
		}
		var (
			db  *state.DB
			err error
		)
		db, err = j.openState(name, n.spec.Name, keygroup.RangeFor(i, maxP, p), opts)
		if err != nil {
			err = fmt.Errorf("pipeline: open state of %s: %w", name, err)
			if r := j.spec.Restore; r != nil && j.spec.FromSavepoint == nil && errors.Is(err, state.ErrCorrupt) {
				// RocksDB read a block of the restored files whose checksum
				// does not match (it reads index and filter blocks at open).
				return &ErrCorruptRestore{ID: r.ID, Err: err}
			}
			return err
		}
		kgs := keygroup.RangeFor(i, maxP, p)
		t := &keyedTask{
			name: name, stage: n, index: i, kgs: kgs, db: db, pool: &j.pool,
			m: newTaskMetrics(name, "keyed"), wm: minWatermark, abort: j.abort,
			align: map[int64]*alignState{}, heap: j.spec.State.Timers == "heap",
		}
		j.keyed = append(j.keyed, t) // owned from here: Close closes db
		var ts timers.Service
		if j.spec.State.Timers == "heap" {
			ts = timers.NewHeap(kgs)
		} else if ts, err = timers.NewRocksDB(db, db.CF(cfTimers), kgs); err != nil {
			return fmt.Errorf("pipeline: timers of %s: %w", name, err)
		}
		t.op = &windowOp{
			stage: n.spec.Name, keyNames: n.spec.KeyBy, asg: n.asg, plan: n.plan,
			db: db, cfWin: db.CF(cfWindows), timers: ts, cache: map[string]*keyEntry{},
			limit: j.spec.State.WriteCacheEntries, maxBytes: db.WriteCacheBytes(), wm: minWatermark, batch: db.NewBatch(),
			out: t.onResult, late: t.onLate,
		}
		if err := t.op.setLayouts(j.schemaOf(n.spec.Name)); err != nil {
			return fmt.Errorf("pipeline: %s: %w", name, err)
		}
		if err := j.restoreChannelState(t); err != nil {
			return err
		}
		if snap := j.restored[name]; snap != nil {
			t.wm, t.op.wm = snap.Watermark, snap.Watermark
			t.m.Watermark.Store(snap.Watermark)
			if t.heap {
				parts := snap.heapParts
				if len(snap.HeapTimers) > 0 {
					parts = append(parts, snap.HeapTimers)
				}
				for _, p := range parts {
					if err := ts.Restore(bytes.NewReader(p)); err != nil {
						return fmt.Errorf("pipeline: restore heap timers of %s: %w", name, err)
					}
				}
			}
		}
		if !t.heap && j.spec.Restore != nil {
			if err := ts.Restore(nil); err != nil {
				return fmt.Errorf("pipeline: restore timers of %s: %w", name, err)
			}
		}
		j.metrics = append(j.metrics, t.m)
		n.tasks = append(n.tasks, t)
	}
	return nil
}

// taskCtx is what chain nodes of one task share.
type taskCtx struct {
	m  *TaskMetrics
	dl *deadLetters
	cp *cpTask
	ov *overtake // source tasks in unaligned mode
}

func (j *Job) newTaskCtx(m *TaskMetrics, vertex string, index int) *taskCtx {
	tc := &taskCtx{m: m, dl: &deadLetters{m: m, log: j.log.With("task", m.Name)}}
	tc.cp = &cpTask{j: j, name: m.Name, vertex: vertex, index: index, sums: &checkpoint.ChecksumCache{FS: j.spec.FS}}
	for i := range j.spec.Sinks {
		if s := &j.spec.Sinks[i]; s.DeadLetters {
			tc.dl.node = j.newSinkNode(tc, s, nil)
		}
	}
	return tc
}

func (j *Job) newSinkNode(tc *taskCtx, s *SinkSpec, n *stageNode) *sinkNode {
	sn := &sinkNode{ctx: j.ctx, name: s.Name, sink: s.Sink, m: tc.m, log: j.log, job: j.spec.Name}
	if s.Topic != "" {
		t, _ := lang.ParseTemplate(s.Topic) // checked by NewJob
		sn.tmpl = &t
	}
	if n != nil {
		sn.names, sn.plan = n.spec.KeyBy, n.plan
	}
	if j.spec.exactlyOnce() {
		// After a rescale snap.Staged holds an entry per old subtask merged
		// into this one (rescaledState): every one is published.
		var restored []sink.Epoch
		if snap := j.restored[tc.m.Name]; snap != nil {
			for _, st := range snap.Staged { // several after a rescale
				if st.Sink != s.Name {
					continue
				}
				for _, e := range st.Epochs {
					if j.restoredEpoch(s.Name, e.ID) { // not yet spooled or confirmed
						restored = append(restored, e)
					}
				}
			}
		}
		slices.SortStableFunc(restored, func(a, b sink.Epoch) int { return cmp.Compare(a.ID, b.ID) })
		sn.stg = sink.NewStager(s.Name, s.Sink, restored)
		tc.cp.stagers = append(tc.cp.stagers, sn.stg)
		r := j.releaseFor(s.Name, s.Sink)
		r.stagers = append(r.stagers, sn.stg)
	}
	return sn
}

// sourceKey names subtask sub of a source with parallelism w, in task
// names and in checkpoint metadata.
func sourceKey(name string, sub, w int) string {
	if w == 1 {
		return name
	}
	return fmt.Sprintf("%s/%d", name, sub)
}

// buildSource creates the source's subtasks. Subtask i of w handles the
// messages whose offset is i mod w; all read the same ingest log.
func (j *Job) buildSource(s *SourceSpec, start SourceStart) error {
	w := max(s.Parallelism, 1)
	var old []checkpoint.SourceState
	if md := j.spec.Restore; md != nil {
		if old = oldSourcePositions(md, s.Name); len(old) == 0 {
			return fmt.Errorf("pipeline: checkpoint %d has no position for source %s (sources cannot be added to restored state yet)", md.ID, s.Name)
		}
	}
	progress := newSourceProgress(w)
	for sub := range w {
		key := sourceKey(s.Name, sub, w)
		name := sourceTaskName(s.Name, sub, w)
		m := newTaskMetrics(name, "source")
		tc := j.newTaskCtx(m, "source-"+s.Name, sub)
		if j.unalignedMode() {
			tc.ov = &overtake{}
		}
		kids, err := j.children(tc, s.Name, true)
		if err != nil {
			return err
		}
		t := &sourceTask{
			spec: s, sub: uint64(sub), of: uint64(w), key: key, out: collectorOf(orNop(kids)), dl: tc.dl, m: m,
			ps: newParser(s, j.spec.MaxMessageSize), maxTS: minWatermark, wm: minWatermark,
			ooo: s.EventTime.MaxOutOfOrderness.Milliseconds(), abort: j.abort, cp: tc.cp,
			idleAfter: s.EventTime.IdleTimeout, progress: progress,
			box: clock.NewBoxClock(j.spec.Clock), advance: s.EventTime.IdleAdvance, ov: tc.ov,
		}
		enableSlots(t.ps, t.out) // typed slots instead of a map per reading, if the chain allows
		var ok bool
		if t.from, ok = start[s.Name]; !ok {
			t.from = s.Log.FirstOffset()
		}
		if old != nil {
			if err := j.restoreSource(t, old, name); err != nil {
				return err
			}
		}
		t.limit = j.spec.readLimits[key]
		if j.spec.Checkpoints != nil {
			t.trigger = make(chan *Barrier, 64)
		}
		m.Offset.Store(int64(t.from))
		m.Watermark.Store(t.wm)
		j.sources = append(j.sources, t)
		j.metrics = append(j.metrics[:len(j.sources)-1], append([]*TaskMetrics{m}, j.metrics[len(j.sources)-1:]...)...)
	}
	return nil
}

func (j *Job) buildKeyedChain(t *keyedTask) error {
	tc := j.newTaskCtx(t.m, t.stage.spec.Name, t.index)
	t.dl, t.cp = tc.dl, tc.cp
	for i := range j.spec.Sinks {
		if s := &j.spec.Sinks[i]; !s.DeadLetters && s.From == t.stage.spec.Name {
			t.sinks = append(t.sinks, j.newSinkNode(tc, s, t.stage))
		}
	}
	kids, err := j.children(tc, t.stage.spec.Name, false)
	if err != nil {
		return err
	}
	if len(kids) > 0 {
		t.next = collectorOf(kids)
	}
	t.inWM = make([]int64, len(t.inputs))
	t.idleIn = make([]bool, len(t.inputs))
	for i := range t.inWM {
		t.inWM[i] = minWatermark
	}
	if snap := j.restored[t.name]; snap != nil && len(snap.InputWatermarks) == len(t.inWM) {
		copy(t.inWM, snap.InputWatermarks)
	}
	return nil
}

// children builds the chain nodes fed by name (a source or a stage) inside
// one task. Readings reaching a keyed stage leave the task through a shuffle.
func (j *Job) children(tc *taskCtx, name string, isSource bool) ([]collector, error) {
	var out []collector
	for _, n := range j.stages {
		if n.from != name && !(isSource && n.from == "") {
			continue
		}
		if n.spec.Keyed() {
			out = append(out, j.newShuffle(tc, n))
			continue
		}
		kids, err := j.children(tc, n.spec.Name, false)
		if err != nil {
			return nil, err
		}
		next := collectorOf(orNop(kids))
		switch {
		case n.spec.Filter != "":
			prog, err := lang.CompileFilter(n.spec.Filter)
			if err != nil {
				return nil, fmt.Errorf("pipeline: stage %s: filter: %w", n.spec.Name, err)
			}
			out = append(out, &filterNode{passthrough: passthrough{next}, stage: n.spec.Name, prog: prog, dl: tc.dl})
		case len(n.spec.Map) > 0:
			mn, err := newMapNode(n.spec.Name, n.spec.Map, tc.dl, next)
			if err != nil {
				return nil, fmt.Errorf("pipeline: %w", err)
			}
			out = append(out, mn)
		default:
			return nil, fmt.Errorf("pipeline: stage %s has neither filter, map nor key_by", n.spec.Name)
		}
	}
	// Sinks reading a keyed stage get its results in the keyed task itself.
	if n, ok := j.byName[name]; !ok || !n.spec.Keyed() {
		for i := range j.spec.Sinks {
			if s := &j.spec.Sinks[i]; !s.DeadLetters && s.From == name {
				out = append(out, j.newSinkNode(tc, s, nil))
			}
		}
	}
	return out, nil
}

func (j *Job) newShuffle(tc *taskCtx, n *stageNode) *shuffleNode {
	sh := &shuffleNode{
		stage: n.spec.Name, keyFields: n.spec.KeyBy, inputs: n.plan.inputs,
		maxP: j.spec.MaxParallelism, bufs: make([]*batch, len(n.tasks)),
		batchSize: j.spec.BatchSize, pool: &j.pool, dl: tc.dl, m: tc.m, abort: j.abort,
	}
	for _, t := range n.tasks {
		ch := make(chan element, j.spec.ChannelCapacity)
		if j.unalignedMode() {
			sh.addLane(t, len(t.inputs))
		}
		t.inputs = append(t.inputs, ch)
		sh.outs = append(sh.outs, ch)
	}
	if tc.ov != nil {
		sh.ov = tc.ov
		tc.ov.shuffles = append(tc.ov.shuffles, sh)
	}
	return sh
}

type nopCollector struct{}

func (nopCollector) collect(*Reading) error { return nil }

func (nopCollector) watermark(int64) error { return nil }

func (nopCollector) idle(int64) error { return nil }

func (nopCollector) barrier(*Barrier) error { return nil }

func (nopCollector) end() error { return nil }

func orNop(cs []collector) []collector {
	if len(cs) == 0 {
		return []collector{nopCollector{}}
	}
	return cs
}

// startCheckpointing creates the coordinator; verified, if not nil, delivers
// the result of the full verification of the restored checkpoint.
func (j *Job) startCheckpointing(verified <-chan error) {
	if j.spec.Checkpoints == nil {
		return
	}
	o := j.spec.Checkpointing
	j.stats = NewStatsTracker(o.History)
	c := &coordinator{
		j: j, opts: o, store: j.spec.Checkpoints, stats: j.stats, log: j.log,
		acks: make(chan taskAck, 64), manual: make(chan manualTrigger),
		settings: make(chan [2]time.Duration), pending: map[int64]*pendingCheckpoint{},
		numTasks: len(j.sources) + len(j.keyed), retained: map[int64]*checkpoint.Metadata{},
		verified: verified, interval: o.Interval, minPause: o.MinPause, nextID: 1,
		discarded: map[int64]bool{},
	}
	if ids, err := j.spec.Checkpoints.Completed(); err == nil {
		for _, id := range ids {
			if md, err := j.spec.Checkpoints.Load(id); err == nil {
				c.retained[id] = md
			}
			c.nextID = max(c.nextID, id+1)
		}
	}
	if md := j.spec.Restore; md != nil {
		c.restored = md.ID
		c.nextID = max(c.nextID, md.ID+1)
		c.prevSST = map[string]map[string]bool{}
		for name, ts := range md.Tasks {
			c.prevSST[name] = map[string]bool{}
			for _, f := range ts.Files {
				if f.SST {
					c.prevSST[name][f.Name] = true
				}
			}
		}
	}
	j.coord = c
}
