package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eddy-stream/eddy/pipeline/lang"
	"github.com/eddy-stream/eddy/pipeline/sink"
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
	spPins    savepointPins // checkpoints of kind savepoint not yet copied
	stats     *StatsTracker
	async     sync.WaitGroup
	relMu     sync.Mutex
	rels      []*sinkRelease   // one per sink with stagers, see release.go
	confirmed map[string]int64 // sink → newest restored checkpoint whose output it confirmed
	relDoneCh chan struct{}    // closed and replaced when a sink's release advances
	draining  atomic.Bool      // sources stop reading: a final checkpoint is coming
	// spools (spool.go): per sink with one, and the newest restored epoch it holds
	spools      map[string]*sink.Spool
	spoolDedupe map[string]int64
	spoolHold   atomic.Bool              // some spool is full: sources stop reading
	spoolResume chan struct{}            // closed and replaced when spoolHold turns false
	spoolCbMu   sync.Mutex               // serializes OnSpoolFull calls (setSpoolFull)
	restored    map[string]*taskSnapshot // task name → restored non-keyed state
	lostLogs    []LostLog                // sources restored onto a new, empty ingest log
	schemas     []StageSchema            // recorded in every checkpoint (schema.go)
	outcomes    map[string]StageOutcome  // stage name → what its restore did (schemarestore.go)
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
		coordDone: make(chan struct{}), relDoneCh: make(chan struct{}),
		restored: map[string]*taskSnapshot{},
	}
	j.schemas = Schemas(&j.spec)
	if err := j.checkRestore(); err != nil {
		return nil, err
	}
	j.restageSources() // rescale.go
	j.ctx, j.cancel = context.WithCancel(context.Background())
	job := j // "return nil, err" sets j to nil before this runs
	defer func() {
		if err != nil {
			err = errors.Join(err, job.Close())
		}
	}()
	if err := j.openSpools(); err != nil {
		return nil, err
	}
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
		if _, err := lang.ParseTemplate(j.spec.Sinks[i].Topic); err != nil {
			return nil, fmt.Errorf("pipeline: sink %s: topic %q %w", j.spec.Sinks[i].Name, j.spec.Sinks[i].Topic, err)
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
		rs := &RestoredStats{
			ID: spec.Restore.ID, RestoreTimestamp: time.Now().UnixMilli(),
			ExternalPath: spec.Checkpoints.CheckpointDir(spec.Restore.ID),
			Source:       spec.RestoreSource, DurationMs: time.Since(built).Milliseconds(),
		}
		if sp := spec.FromSavepoint; sp != nil {
			rs.IsSavepoint, rs.ExternalPath = true, sp.Dir
		}
		j.stats.restored(rs)
	}
	return j, nil
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
	var side sync.WaitGroup // coordinator and the release loops
	if j.coord != nil {
		side.Go(func() {
			defer close(j.coordDone)
			if err := j.coord.run(ctx); err != nil {
				fail(err)
			}
		})
		names := make([]string, len(j.rels))
		for i, r := range j.rels {
			names[i] = r.name
		}
		if j.spools != nil && j.spec.OnSpoolFull != nil {
			j.spec.OnSpoolFull(nil) // none is full yet: a previous job's pause ends
		}
		for _, r := range j.rels {
			if r.spool != nil {
				side.Go(func() { j.spoolLoop(ctx, r) })
				side.Go(func() { j.publishLoop(ctx, r, names) })
				continue
			}
			side.Go(func() { j.releaseLoop(ctx, r) })
		}
		if md := j.spec.Restore; md != nil {
			j.releaseUpTo(md.ID) // to the sinks that had not confirmed it
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

// Close releases the RocksDB instances and the write-back caches. It is
// idempotent.
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
		if t.op != nil {
			t.op.release()
		}
		if t.db != nil { // nil: its restore failed
			errs = append(errs, t.db.Close())
		}
	}
	errs = append(errs, j.closeSpools())
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
