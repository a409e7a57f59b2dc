package pipeline

import (
	"context"
	"time"

	"github.com/eddy-stream/eddy/internal/failpoint"
	"github.com/eddy-stream/eddy/pipeline/sink"
)

// publishUpTo hands staged output of every checkpoint <= id to the
// publisher goroutine. Only the newest id matters: it covers older ones.
func (j *Job) publishUpTo(id int64) {
	j.pubMu.Lock()
	if id > j.pubWant {
		j.pubWant = id
	}
	j.pubMu.Unlock()
	select {
	case j.pubWake <- struct{}{}:
	default:
	}
}

// publisher writes staged output of completed checkpoints to the sinks,
// waits until they have it (MQTT PUBACKs, fsync), and marks the checkpoint
// published so a restart does not publish it again.
func (j *Job) publisher(ctx context.Context) {
	done := int64(-1)
	for {
		select {
		case <-j.pubWake:
		case <-ctx.Done():
			return
		}
		j.pubMu.Lock()
		want := j.pubWant
		j.pubMu.Unlock()
		if want <= done {
			continue
		}
		if err := j.publish(ctx, want); err != nil {
			if ctx.Err() == nil {
				j.log.Error("publishing staged output failed", "checkpoint", want, "err", err)
			}
			continue
		}
		done = want
		if err := j.spec.Checkpoints.MarkPublished(want); err != nil {
			j.log.Warn("marking checkpoint published failed", "checkpoint", want, "err", err)
		}
		j.pubMu.Lock()
		j.pubDone = done
		close(j.pubDoneCh)
		j.pubDoneCh = make(chan struct{})
		j.pubMu.Unlock()
	}
}

// publish hands the staged output of every checkpoint <= upTo to its sink
// and waits until every sink has it; only then is it dropped from the
// stagers, so every snapshot taken meanwhile still holds it. A sink that fails — to take the
// output, or to confirm it (an MQTT connection lost before the PUBACKs) —
// gets the whole batch again after a backoff, for as long as it takes:
// nothing staged is dropped, and a repeat carries the same result ids.
func (j *Job) publish(ctx context.Context, upTo int64) error {
	batches := map[sink.Sink][]sink.Output{}
	var order []sink.Sink
	for _, s := range j.stagers {
		outs := s.Peek(upTo)
		if len(outs) == 0 {
			continue
		}
		if _, ok := batches[s.Sink()]; !ok {
			order = append(order, s.Sink())
		}
		batches[s.Sink()] = append(batches[s.Sink()], outs...)
	}
	for _, snk := range order {
		backoff := 100 * time.Millisecond
		for {
			err := snk.Write(ctx, batches[snk])
			if err == nil {
				failpoint.Hit(failpoint.MidPublish)
				err = snk.Flush(ctx)
			}
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return err
			}
			j.log.Warn("publishing staged output failed, retrying", "checkpoint", upTo, "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
		}
	}
	for _, s := range j.stagers {
		s.Drop(upTo)
	}
	return nil
}
