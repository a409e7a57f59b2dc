package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/eddy-stream/eddy/internal/failpoint"
	"github.com/eddy-stream/eddy/storage/checkpoint"
)

// ErrTooManyFailedCheckpoints ends a job whose checkpoints failed more than
// tolerable_failures times in a row; the daemon restarts it from the last
// completed checkpoint.
var ErrTooManyFailedCheckpoints = errors.New("pipeline: too many consecutive failed checkpoints")

// ErrCorruptRestore ends a job whose restored checkpoint failed the full
// verification that runs while the job already processes; nothing of it has
// been published or checkpointed. The daemon marks it broken and restarts.
type ErrCorruptRestore struct {
	ID  int64
	Err error
}

func (e *ErrCorruptRestore) Error() string {
	return fmt.Sprintf("pipeline: restored checkpoint %d is corrupt: %v", e.ID, e.Err)
}

func (e *ErrCorruptRestore) Unwrap() error { return e.Err }

type pendingCheckpoint struct {
	id       int64
	trigger  time.Time
	deadline time.Time
	acks     map[string]taskAck
	waiters  []chan<- triggerResult
	// savepoint: of kind savepoint (full snapshots; pinned against pruning
	// when it completes, until the savepoint copy is written).
	savepoint bool
}

type triggerResult struct {
	ID  int64
	Err error
	MD  *checkpoint.Metadata // the completed checkpoint
}

// manualTrigger is a request for a checkpoint now.
type manualTrigger struct {
	res       chan<- triggerResult
	savepoint bool
}

// coordinator triggers checkpoints, collects acknowledgements, commits
// _metadata, and tells the release loop and the ingest logs what is complete.
type coordinator struct {
	j        *Job
	opts     CheckpointOptions
	store    *checkpoint.Store
	stats    *StatsTracker
	log      *slog.Logger
	acks     chan taskAck
	manual   chan manualTrigger
	queued   []manualTrigger
	pending  map[int64]*pendingCheckpoint
	nextID   int64
	numTasks int
	lastTrig time.Time
	lastDone time.Time
	failures int
	prevSST  map[string]map[string]bool // task → SST names of the last completed checkpoint
	retained map[int64]*checkpoint.Metadata
	verified <-chan error // full verification of the restored checkpoint; nil when none
	restored int64
	interval time.Duration
	minPause time.Duration
	settings chan [2]time.Duration
	// discarded are failed or aborted checkpoints; their directories are
	// removed again once every asynchronous phase has ended, since a late
	// task may write into them after the first removal.
	discarded map[int64]bool
	// completions logs completed checkpoints (cplog.go).
	completions completionLog
}

// cleanup removes what late asynchronous phases wrote for discarded
// checkpoints. Call it after every asynchronous phase has ended.
func (c *coordinator) cleanup() {
	for id := range c.discarded {
		if err := c.store.Abort(id); err != nil {
			c.log.Warn("removing discarded checkpoint", "checkpoint", id, "err", err)
		}
	}
	c.discarded = map[int64]bool{}
}

func (c *coordinator) due(now time.Time) (time.Time, bool) {
	if c.verified != nil || len(c.pending) >= c.opts.MaxConcurrent {
		return time.Time{}, false
	}
	if len(c.queued) > 0 {
		return now, true
	}
	if c.interval <= 0 {
		return time.Time{}, false
	}
	at := c.lastTrig.Add(c.interval)
	if p := c.lastDone.Add(c.minPause); p.After(at) {
		at = p
	}
	return at, true
}

func (c *coordinator) run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	c.lastTrig = time.Now()
	for {
		now := time.Now()
		c.expire(now)
		if c.failures > c.opts.TolerableFailures {
			return fmt.Errorf("%w: %d failed, tolerable_failures is %d", ErrTooManyFailedCheckpoints, c.failures, c.opts.TolerableFailures)
		}
		wake := now.Add(time.Hour)
		if at, ok := c.due(now); ok {
			switch {
			case at.After(now):
				wake = at
			case len(c.queued) == 0 && c.j.draining.Load():
				// Stopping with a final checkpoint: no periodic one after
				// it (the interval starts again should the stop fail).
				c.lastTrig = now
				wake = now.Add(c.interval)
			default:
				c.trigger(now)
				continue
			}
		}
		for _, p := range c.pending {
			if p.deadline.Before(wake) {
				wake = p.deadline
			}
		}
		timer.Reset(time.Until(wake))
		select {
		case <-ctx.Done():
			c.abortAll("job stopped")
			return nil
		case <-c.j.abort:
			c.abortAll("job failed")
			return nil
		case a := <-c.acks:
			c.onAck(a)
		case w := <-c.manual:
			c.queued = append(c.queued, w)
		case s := <-c.settings:
			c.interval, c.minPause = s[0], s[1]
		case err := <-c.verified:
			c.verified = nil
			if err != nil {
				return &ErrCorruptRestore{ID: c.restored, Err: err}
			}
			c.log.Info("restored checkpoint verified in full", "checkpoint", c.restored)
		case <-timer.C:
		}
	}
}

func (c *coordinator) trigger(now time.Time) {
	id := c.nextID
	c.nextID++
	c.lastTrig = now
	p := &pendingCheckpoint{id: id, trigger: now, deadline: now.Add(c.opts.Timeout), acks: map[string]taskAck{}}
	for _, q := range c.queued {
		p.waiters = append(p.waiters, q.res)
		p.savepoint = p.savepoint || q.savepoint
	}
	c.queued = nil
	c.pending[id] = p
	cs := &CheckpointStats{
		ID: id, Status: StatusInProgress, CheckpointType: "CHECKPOINT", TriggerTimestamp: now.UnixMilli(),
		NumSubtasks: c.numTasks, Tasks: c.j.taskStatsSkeleton(), IsSavepoint: p.savepoint,
	}
	if p.savepoint {
		cs.CheckpointType = "SAVEPOINT"
	}
	c.stats.started(cs)
	if err := c.store.Begin(id); err != nil {
		c.failErr(p, fmt.Errorf("create checkpoint directory: %w", err))
		return
	}
	b := &Barrier{ID: id, Timestamp: now.UnixMilli(), Savepoint: p.savepoint}
	for _, s := range c.j.sources {
		select {
		case s.trigger <- b:
		default:
			c.fail(p, fmt.Sprintf("source %s has too many checkpoints queued", s.spec.Name))
			return
		}
	}
	c.log.Debug("checkpoint triggered", "checkpoint", id)
}

func (c *coordinator) onAck(a taskAck) {
	p, ok := c.pending[a.id]
	if !ok {
		// Late ack of a checkpoint that expired or failed: its directory was
		// removed before this task wrote into it.
		c.store.Abort(a.id)
		return
	}
	if a.err != nil {
		c.failErr(p, a.err)
		return
	}
	p.acks[a.task] = a
	c.stats.update(a.id, func(cs *CheckpointStats) {
		cs.NumAcknowledgedSubtasks = len(p.acks)
		cs.LatestAckTimestamp = a.stats.AckTimestamp
		if ts := cs.Tasks[a.vertex]; ts != nil {
			ts.NumAcknowledgedSubtasks++
			ts.LatestAckTimestamp = a.stats.AckTimestamp
			for i := range ts.Subtasks {
				if ts.Subtasks[i].Index == a.stats.Index {
					ts.Subtasks[i] = a.stats
				}
			}
		}
	})
	if len(p.acks) == c.numTasks {
		c.complete(p)
	}
}

func (c *coordinator) complete(p *pendingCheckpoint) {
	now := time.Now()
	md := &checkpoint.Metadata{
		Version: 1, ID: p.id, Job: c.j.spec.Name,
		TriggerTimestamp: p.trigger.UnixMilli(), CompletedTimestamp: now.UnixMilli(),
		Mode: c.opts.Mode, Incremental: c.opts.Incremental && !p.savepoint, Compression: c.opts.Compression,
		Parallelism: c.j.spec.Parallelism, MaxParallelism: c.j.spec.MaxParallelism,
		Sources: map[string]checkpoint.SourceState{}, Tasks: map[string]checkpoint.TaskState{},
		Schemas: c.j.schemas,
	}
	newSST := map[string]map[string]bool{}
	var total, delta int64
	perTask := map[string]int64{}
	for name, a := range p.acks {
		if a.source != "" {
			md.Sources[a.source] = a.srcSt
		}
		st := a.state
		prev := c.prevSST[name]
		names := map[string]bool{}
		for _, f := range st.Files {
			if f.SST {
				names[f.Name] = true
				if prev[f.Name] {
					continue
				}
			}
			st.CheckpointedSize += f.Size
		}
		newSST[name] = names
		md.Tasks[name] = st
		total += st.StateSize
		delta += st.CheckpointedSize
		perTask[name] = st.CheckpointedSize
	}
	md.Spools = c.j.spoolStates() // after every task's snapshot: see spoolStates
	if err := c.store.Commit(md); err != nil {
		c.failErr(p, fmt.Errorf("commit _metadata: %w", err))
		return
	}
	failpoint.Hit(failpoint.AfterMetadata)
	delete(c.pending, p.id)
	c.prevSST = newSST
	c.lastDone = now
	c.failures = 0
	c.retained[p.id] = md
	c.stats.completed(p.id, func(cs *CheckpointStats) {
		cs.LatestAckTimestamp = now.UnixMilli()
		cs.EndToEndDuration = now.Sub(p.trigger).Milliseconds()
		cs.StateSize, cs.CheckpointedSize = total, delta
		cs.ExternalPath = c.store.CheckpointDir(p.id)
		for _, ts := range cs.Tasks {
			ts.Status = "COMPLETED"
			ts.StateSize, ts.CheckpointedSize = 0, 0
			for i := range ts.Subtasks {
				sub := &ts.Subtasks[i]
				sub.CheckpointedSize = perTask[sub.Task]
				ts.StateSize += sub.StateSize
				ts.CheckpointedSize += sub.CheckpointedSize
				ts.MaxStartDelay = max(ts.MaxStartDelay, sub.StartDelay)
				ts.MaxAlignmentDuration = max(ts.MaxAlignmentDuration, sub.Alignment.Duration)
				ts.MaxSyncDuration = max(ts.MaxSyncDuration, sub.Checkpoint.Sync)
				ts.MaxAsyncDuration = max(ts.MaxAsyncDuration, sub.Checkpoint.Async)
				ts.ProcessedData += sub.Alignment.Processed
				cs.ProcessedData += sub.Alignment.Processed
				ts.PersistedData += sub.Alignment.Persisted
				cs.PersistedData += sub.Alignment.Persisted
				if sub.Unaligned {
					cs.CheckpointType = "UNALIGNED_CHECKPOINT"
				}
			}
			ts.EndToEndDuration = ts.LatestAckTimestamp - cs.TriggerTimestamp
		}
	})
	c.completions.record(c.log, p.id, now.Sub(p.trigger), c.interval, now, "state_size", total, "checkpointed_size", delta)
	if p.savepoint {
		c.j.spPins.set(p.id, true) // until TriggerSavepoint has copied it
	}
	for _, w := range p.waiters {
		w <- triggerResult{ID: p.id, MD: md}
	}
	// A newer checkpoint subsumes older ones still in flight.
	for id, old := range c.pending {
		if id < p.id {
			c.fail(old, fmt.Sprintf("subsumed by checkpoint %d", p.id))
		}
	}
	c.j.releaseUpTo(p.id)
	c.prune()
	if c.j.spec.OnCheckpoint != nil {
		c.j.spec.OnCheckpoint(md)
	}
}

// prune keeps num_retained checkpoints and lets each ingest log drop what
// every retained checkpoint has passed.
func (c *coordinator) prune() {
	removed, err := c.store.Prune(c.opts.NumRetained, c.j.protect)
	if err != nil {
		c.log.Warn("pruning checkpoints failed", "err", err)
	}
	for _, id := range removed {
		delete(c.retained, id)
	}
	for i := range c.j.spec.Sources {
		s := &c.j.spec.Sources[i]
		low, ok := uint64(0), false
		for _, md := range c.retained {
			if c.j.spec.LostLogs[s.Name] && md.ID <= c.restored {
				continue // its offsets are into the lost log, not this one
			}
			for _, st := range oldSourcePositions(md, s.Name) {
				if !ok || st.Offset < low {
					low, ok = st.Offset, true
				}
			}
		}
		if ok {
			if err := s.Log.TruncateFront(low); err != nil {
				c.log.Warn("truncating ingest log failed", "source", s.Name, "err", err)
			}
		}
	}
}

// noSpace reports whether err is for lack of space: ENOSPC, or a
// RocksDB status saying so (RocksDB's errors are text).
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || strings.Contains(strings.ToLower(err.Error()), "no space left on device")
}

// failErr fails p for err. A failure for lack of space is reported as
// "no space left on device: ..." and, being the environment's fault, is
// not counted toward tolerable_failures: the disk watcher pauses intake
// meanwhile, and a task whose RocksDB failed ends the job by itself.
func (c *coordinator) failErr(p *pendingCheckpoint, err error) {
	if !noSpace(err) {
		c.fail(p, err.Error())
		return
	}
	c.failCounted(p, "no space left on device: "+err.Error(), false)
	if f := c.j.spec.OnNoSpace; f != nil {
		f(p.id, err)
	}
}

func (c *coordinator) fail(p *pendingCheckpoint, msg string) { c.failCounted(p, msg, true) }

// failCounted fails p with msg; counted: toward tolerable_failures.
func (c *coordinator) failCounted(p *pendingCheckpoint, msg string, counted bool) {
	delete(c.pending, p.id)
	c.discarded[p.id] = true
	if err := c.store.Abort(p.id); err != nil {
		c.log.Warn("removing failed checkpoint", "checkpoint", p.id, "err", err)
	}
	c.stats.failed(p.id, time.Now().UnixMilli(), msg)
	if counted {
		c.failures++
	}
	c.lastDone = time.Now()
	c.log.Warn("checkpoint failed", "checkpoint", p.id, "reason", msg, "consecutive_failures", c.failures, "counted", counted)
	for _, w := range p.waiters {
		w <- triggerResult{ID: p.id, Err: errors.New(msg)}
	}
}

func (c *coordinator) expire(now time.Time) {
	for _, p := range c.pending {
		if now.After(p.deadline) {
			c.fail(p, fmt.Sprintf("checkpoint expired before completing (timeout %s)", c.opts.Timeout))
		}
	}
}

func (c *coordinator) abortAll(why string) {
	for _, p := range c.pending {
		c.store.Abort(p.id)
		c.discarded[p.id] = true
		c.stats.failed(p.id, time.Now().UnixMilli(), why)
		for _, w := range p.waiters {
			w <- triggerResult{ID: p.id, Err: errors.New(why)}
		}
	}
	for _, w := range c.queued {
		w.res <- triggerResult{Err: errors.New(why)}
	}
	c.pending = map[int64]*pendingCheckpoint{}
}

// taskStatsSkeleton lists every vertex with its subtasks pending.
func (j *Job) taskStatsSkeleton() map[string]*TaskStats {
	out := map[string]*TaskStats{}
	add := func(vertex, task string, index int) {
		ts := out[vertex]
		if ts == nil {
			ts = &TaskStats{ID: vertex, Status: "IN_PROGRESS"}
			out[vertex] = ts
		}
		ts.NumSubtasks++
		ts.Subtasks = append(ts.Subtasks, SubtaskStats{Index: index, Task: task, Status: "pending_or_in_progress"})
	}
	for _, s := range j.sources {
		add(s.cp.vertex, s.cp.name, int(s.sub))
	}
	for _, t := range j.keyed {
		add(t.cp.vertex, t.cp.name, t.index)
	}
	for _, ts := range out {
		slices.SortFunc(ts.Subtasks, func(a, b SubtaskStats) int { return a.Index - b.Index })
	}
	return out
}
