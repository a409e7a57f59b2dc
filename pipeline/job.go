package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/keygroup"
	"github.com/eddy-stream/eddy/storage/snapshot"
	"github.com/eddy-stream/eddy/storage/state"
	"github.com/eddy-stream/eddy/storage/timers"
)

type stageNode struct {
	spec  *StageSpec
	from  string // resolved: a source, an earlier stage, or "" for every source
	plan  *aggPlan
	asg   assigner
	tasks []*keyedTask
}

// Job is a built, runnable dataflow. Build it with NewJob, run it once with
// Run, and Close it to release its RocksDB instances.
type Job struct {
	spec    JobSpec
	log     *slog.Logger
	sources []*sourceTask
	stages  []*stageNode
	byName  map[string]*stageNode
	keyed   []*keyedTask
	metrics []*TaskMetrics
	pool    batchPool
	abort   chan struct{}
	once    sync.Once
	ctx     context.Context
	cancel  context.CancelFunc
	closed  bool

	// checkpointing; coord is nil when checkpoints are off
	coord     *coordinator
	coordDone chan struct{}
	stats     *StatsTracker
	async     sync.WaitGroup
	stagers   []*stager
	pubMu     sync.Mutex
	pubWant   int64
	pubDone   int64         // newest checkpoint whose staged output is published
	pubDoneCh chan struct{} // closed and replaced when pubDone advances
	pubWake   chan struct{}
	draining  atomic.Bool              // sources stop reading: a final checkpoint is coming
	restored  map[string]*taskSnapshot // task name → restored non-keyed state
	lostLogs  []LostLog                // sources restored onto a new, empty ingest log
}

// SourceStart gives the ingest-log offset each source starts reading at.
type SourceStart map[string]uint64

// NewJob builds the task graph and opens one RocksDB instance per keyed
// subtask under spec.State.Dir. Sources start at start[name] (missing: the
// log's first retained offset).
func NewJob(spec JobSpec, start SourceStart, log *slog.Logger) (j *Job, err error) {
	built := time.Now()
	spec.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	j = &Job{
		spec: spec, log: log, byName: map[string]*stageNode{}, abort: make(chan struct{}),
		coordDone: make(chan struct{}), pubWake: make(chan struct{}, 1), pubWant: -1,
		pubDone: -1, pubDoneCh: make(chan struct{}),
		restored: map[string]*taskSnapshot{},
	}
	if err := j.checkRestore(); err != nil {
		return nil, err
	}
	j.ctx, j.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			err = errors.Join(err, j.Close())
		}
	}()
	if spec.Parallelism > spec.MaxParallelism || spec.MaxParallelism > 32768 {
		return nil, fmt.Errorf("pipeline: need 1 <= parallelism (%d) <= max_parallelism (%d) <= 32768",
			spec.Parallelism, spec.MaxParallelism)
	}
	known := map[string]bool{}
	for i := range spec.Sources {
		known[spec.Sources[i].Name] = true
	}
	for i := range j.spec.Stages {
		s := &j.spec.Stages[i]
		n := &stageNode{spec: s, from: s.From}
		if n.from == "" && i > 0 {
			n.from = j.spec.Stages[i-1].Name
		}
		if n.from != "" && !known[n.from] {
			return nil, fmt.Errorf("pipeline: stage %s reads %q, which is neither a source nor an earlier stage", s.Name, n.from)
		}
		known[s.Name] = true
		if s.Keyed() {
			if s.Window == nil {
				return nil, fmt.Errorf("pipeline: stage %s: key_by needs a window", s.Name)
			}
			if n.asg, err = newAssigner(s.Window); err != nil {
				return nil, fmt.Errorf("pipeline: stage %s: %w", s.Name, err)
			}
			if n.plan, err = compileAggregates(s.Aggregates); err != nil {
				return nil, fmt.Errorf("pipeline: stage %s: %w", s.Name, err)
			}
			if err := j.openSubtasks(n); err != nil {
				return nil, err
			}
		}
		j.stages = append(j.stages, n)
		j.byName[s.Name] = n
	}
	for i := range j.spec.Sinks {
		if f := j.spec.Sinks[i].From; f != "" && !known[f] {
			return nil, fmt.Errorf("pipeline: sink %s reads %q, which is neither a source nor a stage", j.spec.Sinks[i].Name, f)
		}
	}
	for i := range j.spec.Sources {
		if err := j.buildSource(&j.spec.Sources[i], start); err != nil {
			return nil, err
		}
	}
	for _, t := range j.keyed {
		if err := j.buildKeyedChain(t); err != nil {
			return nil, err
		}
	}
	j.startCheckpointing(spec.RestoreVerified)
	if j.stats != nil && spec.Restore != nil {
		j.stats.restored(&RestoredStats{
			ID: spec.Restore.ID, RestoreTimestamp: time.Now().UnixMilli(),
			ExternalPath: spec.Checkpoints.CheckpointDir(spec.Restore.ID),
			Source:       spec.RestoreSource, DurationMs: time.Since(built).Milliseconds(),
		})
	}
	return j, nil
}

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
		}
		var (
			db  *state.DB
			err error
		)
		db, err = j.openState(name, n.spec.Name, keygroup.RangeFor(i, maxP, p), opts)
		if err != nil {
			return fmt.Errorf("pipeline: open state of %s: %w", name, err)
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
			limit: j.spec.State.WriteCacheEntries, wm: minWatermark, batch: db.NewBatch(),
			out: t.onResult, late: t.onLate,
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
}

func (j *Job) newTaskCtx(m *TaskMetrics, vertex string, index int) *taskCtx {
	tc := &taskCtx{m: m, dl: &deadLetters{m: m, log: j.log.With("task", m.Name)}}
	tc.cp = &cpTask{j: j, name: m.Name, vertex: vertex, index: index, sums: &checkpoint.ChecksumCache{}}
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
		t, _ := ParseTemplate(s.Topic) // validated with the configuration
		sn.tmpl = &t
	}
	if n != nil {
		sn.names, sn.plan = n.spec.KeyBy, n.plan
	}
	if j.spec.exactlyOnce() {
		sn.stg = &stager{name: s.Name, sink: s.Sink}
		if snap := j.restored[tc.m.Name]; snap != nil {
			for _, st := range snap.Staged {
				if st.Sink == s.Name {
					sn.stg.epochs = st.Epochs
				}
			}
		}
		tc.cp.stagers = append(tc.cp.stagers, sn.stg)
		j.stagers = append(j.stagers, sn.stg)
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

// oldSourcePositions returns the positions a checkpoint holds for a source,
// indexed by old subtask.
func oldSourcePositions(md *checkpoint.Metadata, name string) []checkpoint.SourceState {
	if st, ok := md.Sources[name]; ok {
		return []checkpoint.SourceState{st}
	}
	var out []checkpoint.SourceState
	for i := 0; ; i++ {
		st, ok := md.Sources[sourceKey(name, i, 2)]
		if !ok {
			return out
		}
		out = append(out, st)
	}
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
		name := "source-" + strings.ReplaceAll(key, "/", "-")
		m := newTaskMetrics(name, "source")
		tc := j.newTaskCtx(m, "source-"+s.Name, sub)
		kids, err := j.children(tc, s.Name, true)
		if err != nil {
			return err
		}
		t := &sourceTask{
			spec: s, sub: uint64(sub), of: uint64(w), key: key, out: collectorOf(orNop(kids)), dl: tc.dl, m: m,
			ps: newParser(s, j.spec.MaxMessageSize), maxTS: minWatermark, wm: minWatermark,
			ooo: s.EventTime.MaxOutOfOrderness.Milliseconds(), abort: j.abort, cp: tc.cp,
			idleAfter: s.EventTime.IdleTimeout, progress: progress,
			box: NewBoxClock(j.spec.Clock), advance: s.EventTime.IdleAdvance,
		}
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

// restoreSource positions a source subtask from the checkpoint's positions
// of the source (see resumeSource for the invariant).
func (j *Job) restoreSource(t *sourceTask, old []checkpoint.SourceState, name string) error {
	md := j.spec.Restore
	rs := resumeSource(old, t.sub, t.of)
	t.from, t.maxTS, t.done = rs.from, rs.maxTS, rs.done
	// Every offset below the log's end at restore was read by an old
	// subtask or is read by this one before its next checkpoint.
	t.settle = min(rs.settle, t.spec.Log.NextOffset())
	if uint64(len(old)) == t.of {
		if snap := j.restored[name]; snap != nil {
			t.wm = snap.Watermark
		}
	} else if t.maxTS != minWatermark {
		t.wm = t.maxTS - t.ooo - 1
	}
	if j.spec.LostLogs[t.spec.Name] {
		j.resumeLostLog(t)
		return nil
	}
	if first := t.spec.Log.FirstOffset(); t.from < first {
		return fmt.Errorf("pipeline: source %s: checkpoint %d starts at ingest-log offset %d but the log begins at %d",
			t.spec.Name, md.ID, t.from, first)
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
// one task. Records reaching a keyed stage leave the task through a shuffle.
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
			prog, err := compileExpr(n.spec.Filter, true)
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
		t.inputs = append(t.inputs, ch)
		sh.outs = append(sh.outs, ch)
	}
	return sh
}

type nopCollector struct{}

func (nopCollector) collect(*Record) error  { return nil }
func (nopCollector) watermark(int64) error  { return nil }
func (nopCollector) idle(int64) error       { return nil }
func (nopCollector) barrier(*Barrier) error { return nil }
func (nopCollector) end() error             { return nil }

func orNop(cs []collector) []collector {
	if len(cs) == 0 {
		return []collector{nopCollector{}}
	}
	return cs
}

// Run runs every task until ctx is done, then drains: sources stop reading,
// keyed tasks finish what is in their channels and write their caches to
// RocksDB, sinks are flushed. The first task error aborts the others and is
// returned.
func (j *Job) Run(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		j.once.Do(func() { close(j.abort) })
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var side sync.WaitGroup // coordinator and publisher
	if j.coord != nil {
		side.Go(func() {
			defer close(j.coordDone)
			if err := j.coord.run(ctx); err != nil {
				fail(err)
			}
		})
		side.Go(func() { j.publisher(ctx) })
		if md := j.spec.Restore; md != nil && !j.spec.Checkpoints.Published(md.ID) {
			j.publishUpTo(md.ID)
		}
	} else {
		close(j.coordDone)
	}
	for _, t := range j.keyed {
		wg.Go(func() {
			if err := t.run(ctx); err != nil && !errors.Is(err, errAborted) {
				fail(fmt.Errorf("task %s: %w", t.name, err))
			}
		})
	}
	for _, t := range j.sources {
		wg.Go(func() {
			if err := t.run(ctx); err != nil && !errors.Is(err, errAborted) {
				fail(fmt.Errorf("task %s: %w", t.m.Name, err))
			}
		})
	}
	wg.Wait()
	cancel()
	side.Wait()
	j.async.Wait()
	if j.coord != nil {
		j.coord.cleanup()
	}
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelFlush()
	for i := range j.spec.Sinks {
		if err := j.spec.Sinks[i].Sink.Flush(flushCtx); err != nil {
			errs = append(errs, fmt.Errorf("pipeline: flush sink %s: %w", j.spec.Sinks[i].Name, err))
		}
	}
	return errors.Join(errs...)
}

// Close releases the RocksDB instances. It is idempotent.
func (j *Job) Close() error {
	if j.closed {
		return nil
	}
	j.closed = true
	j.cancel()
	j.async.Wait()
	var errs []error
	for _, t := range j.keyed {
		if t.op != nil && t.op.batch != nil {
			t.op.batch.Close()
		}
		errs = append(errs, t.db.Close())
	}
	return errors.Join(errs...)
}

// Overview returns every task's figures, sources first.
func (j *Job) Overview() []TaskOverview {
	out := make([]TaskOverview, len(j.metrics))
	for i, m := range j.metrics {
		out[i] = m.overview()
	}
	return out
}

// SourceOffsets returns, per source, the lowest next ingest-log offset any
// of its subtasks will read.
func (j *Job) SourceOffsets() map[string]uint64 {
	out := make(map[string]uint64, len(j.sources))
	for _, s := range j.sources {
		off := uint64(s.m.Offset.Load())
		if cur, ok := out[s.spec.Name]; !ok || off < cur {
			out[s.spec.Name] = off
		}
	}
	return out
}

// checkRestore refuses a checkpoint the job cannot continue from and loads
// the non-keyed state of every task.
func (j *Job) checkRestore() error {
	md := j.spec.Restore
	if md == nil {
		return nil
	}
	if md.MaxParallelism != j.spec.MaxParallelism {
		return fmt.Errorf("pipeline: checkpoint %d was taken with max_parallelism %d, the configuration says %d; "+
			"max_parallelism is fixed for the life of the state", md.ID, md.MaxParallelism, j.spec.MaxParallelism)
	}
	published := j.spec.Checkpoints.Published(md.ID)
	old := map[string]*taskSnapshot{}
	for name := range md.Tasks {
		data, err := checkpoint.ReadTaskState(filepath.Join(j.spec.Checkpoints.TaskDir(md.ID, name), checkpoint.TaskStateFile))
		if err != nil {
			return fmt.Errorf("pipeline: restore %s: %w", name, err)
		}
		snap := &taskSnapshot{}
		if err := json.Unmarshal(data, snap); err != nil {
			return fmt.Errorf("pipeline: restore %s: decode task state: %w", name, err)
		}
		if published {
			snap.Staged = nil
		}
		old[name] = snap
	}
	if !j.rescaled() {
		j.restored = old
		return nil
	}
	j.log.Info("rescaling: restoring by key-group ranges", "checkpoint", md.ID,
		"from_parallelism", md.Parallelism, "to_parallelism", j.spec.Parallelism)
	for name, ts := range md.Tasks {
		if ts.Kind == checkpoint.KindNone {
			j.restored[name] = old[name] // sources do not depend on parallelism
		}
	}
	for i := range j.spec.Stages {
		s := &j.spec.Stages[i]
		if !s.Keyed() {
			continue
		}
		for k := range j.spec.Parallelism {
			kgs := keygroup.RangeFor(k, j.spec.MaxParallelism, j.spec.Parallelism)
			j.restored[fmt.Sprintf("%s-%d", s.Name, k)] = j.rescaledState(old, s.Name, k, kgs)
		}
	}
	return nil
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
		acks: make(chan taskAck, 64), manual: make(chan chan<- triggerResult),
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

// openState opens a subtask's working RocksDB: empty, hard-linked from a
// native checkpoint (task-local recovery, no copy), or loaded from a full
// snapshot.
func (j *Job) openState(name, stage string, kgs keygroup.Range, opts state.Options) (*state.DB, error) {
	md := j.spec.Restore
	if md == nil {
		return state.Open(opts)
	}
	if j.rescaled() {
		return j.openRescaled(stage, kgs, opts)
	}
	ts, ok := md.Tasks[name]
	if !ok {
		return nil, fmt.Errorf("checkpoint %d has no state for %s", md.ID, name)
	}
	dir := j.spec.Checkpoints.TaskDir(md.ID, name)
	if ts.Kind != checkpoint.KindFull {
		return state.OpenFromCheckpoint(dir, opts.Dir, opts)
	}
	db, err := state.Open(opts)
	if err != nil {
		return nil, err
	}
	if _, err := snapshot.Restore(filepath.Join(dir, fullSnapshotFile), db, kgs); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return db, nil
}
