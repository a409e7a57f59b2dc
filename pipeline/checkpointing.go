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
	if j.coord == nil {
		return 0, errors.New("pipeline: checkpointing is not configured")
	}
	res := make(chan triggerResult, 1)
	select {
	case j.coord.manual <- res:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-j.coordDone:
		return 0, errors.New("pipeline: job is not running")
	}
	select {
	case r := <-res:
		return r.ID, r.Err
	case <-ctx.Done():
		return 0, ctx.Err()
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
	for {
		j.relMu.Lock()
		done, ch := j.relDoneLocked(), j.relDoneCh
		j.relMu.Unlock()
		if done >= id {
			return id, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return id, fmt.Errorf("pipeline: final checkpoint %d completed but its output is not all published: %w", id, ctx.Err())
		}
	}
}
