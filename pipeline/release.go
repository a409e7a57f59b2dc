package pipeline

import (
	"context"
	"time"

	"github.com/eddy-stream/eddy/internal/failpoint"
	"github.com/eddy-stream/eddy/pipeline/sink"
)

// releaseUpTo hands staged output of every checkpoint <= id to the
// release loop. Only the newest id matters: it covers older ones.
func (j *Job) releaseUpTo(id int64) {
	j.relMu.Lock()
	if id > j.relWant {
		j.relWant = id
	}
	j.relMu.Unlock()
	select {
	case j.relWake <- struct{}{}:
	default:
	}
}

// releaseLoop releases staged output of completed checkpoints (exactly-once
// mode): it writes it to the sinks, waits until they have it (MQTT PUBACKs,
// fsync), and marks the checkpoint published (chk-N/_published) so a
// restart does not publish it again. It is one goroutine per job, owned by
// Run. (mqttio.Publisher, the MQTT client a sink writes through, is another
// thing.)
func (j *Job) releaseLoop(ctx context.Context) {
	done := int64(-1)
	for {
		select {
		case <-j.relWake:
		case <-ctx.Done():
			return
		}
		j.relMu.Lock()
		want := j.relWant
		j.relMu.Unlock()
		if want <= done {
			continue
		}
		if err := j.release(ctx, want); err != nil {
			if ctx.Err() == nil {
				j.log.Error("releasing staged output failed", "checkpoint", want, "err", err)
			}
			continue
		}
		done = want
		if err := j.spec.Checkpoints.MarkPublished(want); err != nil {
			j.log.Warn("marking checkpoint published failed", "checkpoint", want, "err", err)
		}
		j.relMu.Lock()
		j.relDone = done
		close(j.relDoneCh)
		j.relDoneCh = make(chan struct{})
		j.relMu.Unlock()
	}
}

// release hands the staged output of every checkpoint <= upTo to its sink
// and waits until every sink has it; only then is it dropped from the
// stagers, so every snapshot taken meanwhile still holds it. A sink that fails — to take the
// output, or to confirm it (an MQTT connection lost before the PUBACKs) —
// gets the whole batch again after a backoff, for as long as it takes:
// nothing staged is dropped, and a repeat carries the same result ids.
func (j *Job) release(ctx context.Context, upTo int64) error {
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
		var failures int
		var last string
		for {
			err := snk.Write(ctx, batches[snk])
			if err == nil {
				failpoint.Hit(failpoint.MidPublish)
				err = snk.Flush(ctx)
			}
			if err == nil {
				if failures > 0 {
					j.log.Info("releasing staged output succeeded again", "checkpoint", upTo, "failed_attempts", failures)
				}
				break
			}
			if ctx.Err() != nil {
				return err
			}
			// A full disk can last: say so once per distinct error, not
			// at every attempt.
			failures++
			if msg := err.Error(); msg != last {
				last = msg
				j.log.Warn("releasing staged output failed, retrying with backoff", "checkpoint", upTo, "err", err, "retry_in", backoff, "no_space", noSpace(err))
			}
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
