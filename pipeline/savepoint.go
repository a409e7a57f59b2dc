package pipeline

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/savepoint"
)

// A savepoint is a checkpoint of kind savepoint, triggered through the
// coordinator like any other (its barrier has Savepoint set, so every keyed
// task writes a full snapshot whatever checkpointing.incremental says),
// committed to checkpoints/chk-N as usual, and then copied in canonical
// form to savepoints/<name>/ (storage/savepoint), where checkpoint
// retention never reaches it. The checkpoint is kept from pruning until the
// copy is done.

// SavepointRestore says that JobSpec.Restore is a savepoint.
type SavepointRestore struct {
	Dir       string   // the savepoint directory; task directories are under it
	Name      string   // its name
	Published []string // sinks that had confirmed its staged output
}

// SavepointResult describes a savepoint written by TriggerSavepoint.
type SavepointResult struct {
	Name       string              `json:"name"`
	Path       string              `json:"path"`
	Checkpoint int64               `json:"checkpoint_id"`
	Size       int64               `json:"size"`
	Stopped    bool                `json:"stopped"`
	Metadata   *savepoint.Metadata `json:"-"`
}

// savepointPins keeps checkpoints of kind savepoint from pruning until
// their copy is written.
type savepointPins struct {
	mu   sync.Mutex
	pins map[int64]bool
}

func (p *savepointPins) set(id int64, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pins == nil {
		p.pins = map[int64]bool{}
	}
	if on {
		p.pins[id] = true
	} else {
		delete(p.pins, id)
	}
}

func (p *savepointPins) has(id int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pins[id]
}

// protect is the prune filter: the daemon's and the savepoints'.
func (j *Job) protect(id int64) bool {
	if j.spPins.has(id) {
		return true
	}
	return j.spec.ProtectCheckpoint != nil && j.spec.ProtectCheckpoint(id)
}

// DefaultSavepointName is the name of a savepoint taken without one.
func DefaultSavepointName(id int64, at time.Time) string {
	return fmt.Sprintf("savepoint-%d-%s", id, at.UTC().Format("20060102T150405Z"))
}

// TriggerSavepoint takes a savepoint named name ("" for
// DefaultSavepointName). With stop, it is Flink's stop-with-savepoint:
// the sources stop reading first, and TriggerSavepoint returns once the
// savepoint's staged output is published to every sink (then cancel Run's
// context; the job has nothing left to do). If it fails with stop, the
// sources read again.
func (j *Job) TriggerSavepoint(ctx context.Context, name string, stop bool) (res SavepointResult, err error) {
	if j.coord == nil || j.spec.Savepoints == nil {
		return res, errors.New("pipeline: savepoints need checkpointing")
	}
	if name != "" {
		if err := savepoint.ValidName(name); err != nil {
			return res, fmt.Errorf("pipeline: savepoint name %w", err)
		}
		if _, err := savepoint.LoadFS(j.spec.FS, j.spec.Savepoints.Dir(name)); err == nil {
			return res, fmt.Errorf("%w: %s", savepoint.ErrExists, j.spec.Savepoints.Dir(name))
		}
	}
	if stop {
		j.draining.Store(true)
		defer func() {
			if err != nil {
				j.draining.Store(false)
			}
		}()
	}
	r, err := j.trigger(ctx, true)
	if err != nil {
		return res, err
	}
	defer j.spPins.set(r.ID, false)
	if name == "" {
		name = DefaultSavepointName(r.ID, time.Now())
	}
	if stop {
		if err := j.waitReleased(ctx, r.ID); err != nil {
			return res, err
		}
	}
	md, err := j.writeSavepoint(name, r.MD, stop)
	if err != nil {
		return res, err
	}
	j.log.Info("savepoint written", "savepoint", name, "checkpoint", r.ID, "path", j.spec.Savepoints.Dir(name),
		"size", md.StateSize(), "stopped", stop)
	if j.stats != nil {
		j.stats.savepoint(r.ID, j.spec.Savepoints.Dir(name))
	}
	return SavepointResult{Name: name, Path: j.spec.Savepoints.Dir(name), Checkpoint: r.ID,
		Size: md.StateSize(), Stopped: stop, Metadata: md}, nil
}

// writeSavepoint copies completed checkpoint cm (of kind savepoint) to
// savepoints/<name>/ and commits it there.
func (j *Job) writeSavepoint(name string, cm *checkpoint.Metadata, stopped bool) (*savepoint.Metadata, error) {
	st := j.spec.Savepoints
	if err := st.Begin(name); err != nil {
		return nil, err
	}
	md := &savepoint.Metadata{
		Name: name, Job: cm.Job, CheckpointID: cm.ID,
		TriggerTimestamp: cm.TriggerTimestamp, Mode: cm.Mode, Compression: cm.Compression,
		Parallelism: cm.Parallelism, MaxParallelism: cm.MaxParallelism, Stopped: stopped,
		Sources: cm.Sources, Tasks: cm.Tasks,
	}
	for _, task := range cm.TaskNames() {
		if err := st.CopyTask(name, task, j.spec.Checkpoints.TaskDir(cm.ID, task), cm.Tasks[task]); err != nil {
			return nil, errors.Join(err, st.Abort(name))
		}
	}
	p := j.spec.Checkpoints.PublishedSinks(cm.ID)
	for i := range j.spec.Sinks {
		if n := j.spec.Sinks[i].Name; p.Has(n) {
			md.Published = append(md.Published, n)
		}
	}
	for i := range j.spec.Stages {
		s := &j.spec.Stages[i]
		stage := savepoint.Stage{UID: s.StateUID(), Keyed: s.Keyed(), Parallelism: j.spec.Parallelism, MaxParallelism: j.spec.MaxParallelism}
		if !s.Keyed() {
			stage.Parallelism = 0
		}
		for k := range j.schemas {
			if j.schemas[k].UID == stage.UID {
				stage.Schema = &j.schemas[k]
			}
		}
		md.Stages = append(md.Stages, stage)
	}
	md.CompletedTimestamp = time.Now().UnixMilli()
	if err := st.Commit(md); err != nil {
		return nil, errors.Join(err, st.Abort(name))
	}
	return md, nil
}

// restoreTaskDir is the directory of task in the restored checkpoint or
// savepoint.
func (j *Job) restoreTaskDir(task string) string {
	if sp := j.spec.FromSavepoint; sp != nil {
		return filepath.Join(sp.Dir, task)
	}
	return j.spec.Checkpoints.TaskDir(j.spec.Restore.ID, task)
}
