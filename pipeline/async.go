package pipeline

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/eddy-stream/eddy/pipeline/sink"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/fileutil"
)

// taskAck is what a task reports when its part of checkpoint id is done.
type taskAck struct {
	id     int64
	task   string
	vertex string // source task name or stage name
	err    error
	source string // source name, for source tasks
	srcSt  checkpoint.SourceState
	state  checkpoint.TaskState
	stats  SubtaskStats
}

// cpTask is what every task shares for checkpointing.
type cpTask struct {
	j       *Job
	name    string
	vertex  string
	index   int
	stagers []*sink.Stager
	sums    *checkpoint.ChecksumCache
}

func (c *cpTask) stagedState() []stagedState {
	var out []stagedState
	for _, s := range c.stagers {
		if p := s.Pending(); len(p) > 0 {
			out = append(out, stagedState{Sink: s.Name(), Epochs: p})
		}
	}
	return out
}

// async runs the asynchronous part of a snapshot off the task's goroutine
// and sends the task's acknowledgement to the coordinator.
// pre, if not nil, runs first: it waits for the native RocksDB checkpoint,
// which creates the task's checkpoint directory, or creates the directory
// and writes the full snapshot stream there.
func (c *cpTask) async(b *Barrier, snap *taskSnapshot, base taskAck, t0 time.Time, syncDur time.Duration, pre func(dir string) error) {
	c.j.async.Go(func() {
		if testHookAsync != nil {
			testHookAsync(c.name, b.ID)
		}
		a := base
		a.id, a.task, a.vertex = b.ID, c.name, c.vertex
		dir := c.j.spec.Checkpoints.TaskDir(b.ID, c.name)
		err := a.err
		if err == nil && pre != nil {
			err = pre(dir)
		}
		if err == nil {
			err = c.writeState(dir, snap, &a)
		}
		if err != nil && a.err == nil {
			a.err = fmt.Errorf("task %s: checkpoint %d: %w", c.name, b.ID, err)
		}
		now := time.Now()
		a.stats.Index = c.index
		a.stats.Task = c.name
		a.stats.Status = "completed"
		a.stats.AckTimestamp = now.UnixMilli()
		a.stats.EndToEndDuration = now.UnixMilli() - b.Timestamp
		a.stats.StateSize = a.state.StateSize
		a.stats.Checkpoint = SyncAsync{Sync: syncDur.Milliseconds(), Async: now.Sub(t0.Add(syncDur)).Milliseconds()}
		select {
		case c.j.coord.acks <- a:
		case <-c.j.coordDone:
		}
	})
}

func (c *cpTask) writeState(dir string, snap *taskSnapshot, a *taskAck) error {
	fsys := c.j.spec.FS
	if err := fileutil.CreateDirAllFS(fsys, dir); err != nil {
		return err
	}
	data, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	if _, err := checkpoint.WriteTaskState(fsys, dir, data); err != nil {
		return err
	}
	files, err := c.sums.Files(dir)
	if err != nil {
		return err
	}
	a.state.Files = files
	for _, f := range files {
		a.state.StateSize += f.Size
	}
	return fsys.SyncDir(dir)
}

// testHookAsync, set only by tests, runs at the start of every task's
// asynchronous phase (to make checkpoints slow).
var testHookAsync func(task string, id int64)
