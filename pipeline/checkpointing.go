package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eddy-stream/eddy/storage/checkpoint"
)

// TriggerCheckpoint asks for a checkpoint now (it still waits for a free
// max_concurrent slot) and returns once it has completed or failed.
func (j *Job) TriggerCheckpoint(ctx context.Context) (int64, error) {
	r, err := j.trigger(ctx, false)
	return r.ID, err
}

// trigger asks the coordinator for a checkpoint (of kind savepoint:
// full snapshots, kept from pruning until unpinned) and waits for it.
func (j *Job) trigger(ctx context.Context, savepoint bool) (triggerResult, error) {
	if j.coord == nil {
		return triggerResult{}, errors.New("pipeline: checkpointing is not configured")
	}
	res := make(chan triggerResult, 1)
	select {
	case j.coord.manual <- manualTrigger{res: res, savepoint: savepoint}:
	case <-ctx.Done():
		return triggerResult{}, ctx.Err()
	case <-j.coordDone:
		return triggerResult{}, errors.New("pipeline: job is not running")
	}
	select {
	case r := <-res:
		return r, r.Err
	case <-ctx.Done():
		return triggerResult{}, ctx.Err()
	}
}

// SetCheckpointTiming changes interval and min pause of a running job.
func (j *Job) SetCheckpointTiming(interval, minPause time.Duration) {
	if j.coord == nil {
		return
	}
	select {
	case j.coord.settings <- [2]time.Duration{interval, minPause}:
	case <-j.coordDone:
	}
}

// Stats returns the checkpoint statistics (nil without checkpointing).
func (j *Job) Stats() *StatsTracker { return j.stats }

// Restored returns the checkpoint the job was restored from, nil if none.
func (j *Job) Restored() *checkpoint.Metadata { return j.spec.Restore }

// StopWithCheckpoint is a graceful stop (SIGTERM): sources stop reading,
// a final checkpoint is taken at their positions, and its staged output is
// published. Cancel the context of Run afterwards. A restart restores this
// checkpoint and replays nothing.
func (j *Job) StopWithCheckpoint(ctx context.Context) (int64, error) {
	j.draining.Store(true)
	id, err := j.TriggerCheckpoint(ctx)
	if err != nil {
		return id, err
	}
	return id, j.waitReleased(ctx, id)
}

// waitReleased waits until every sink has published the staged output of
// checkpoint id.
func (j *Job) waitReleased(ctx context.Context, id int64) error {
	for {
		j.relMu.Lock()
		done, ch := j.relDoneLocked(), j.relDoneCh
		j.relMu.Unlock()
		if done >= id {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("pipeline: checkpoint %d completed but its output is not all published: %w", id, ctx.Err())
		}
	}
}
