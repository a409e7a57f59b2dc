package pipeline

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/eddy-stream/eddy/pipeline/sink"
	"github.com/eddy-stream/eddy/storage/checkpoint"
)

// SpoolSpec configures the on-disk spool of one sink (exactly-once mode):
// the output of completed checkpoints waits there for the sink, not in
// memory and not in every checkpoint. See sink.Spool.
type SpoolSpec struct {
	Dir     string
	MaxSize int64 // the spool is full at this many bytes: sources stop reading, OnSpoolFull
}

// spoolPublishBytes is how much output the release loop reads from a
// spool and hands to the sink at once (whole checkpoints, at least one).
const spoolPublishBytes = 1 << 20

// openSpools opens the spool of every sink that has one, cut back to the
// restored checkpoint. It runs before the sink nodes are built: their
// restored staged epochs that the spool holds already are not staged again.
func (j *Job) openSpools() error {
	if !j.spec.exactlyOnce() {
		return nil
	}
	restored := int64(-1)
	if md := j.spec.Restore; md != nil {
		restored = md.ID
	}
	for i := range j.spec.Sinks {
		s := &j.spec.Sinks[i]
		if s.Spool == nil {
			continue
		}
		sp, dedupe, err := sink.OpenSpool(sink.SpoolOptions{
			Dir: s.Spool.Dir, MaxSize: s.Spool.MaxSize, FS: j.spec.FS,
			Logger: j.log.With("sink", s.Name),
		}, restored)
		if err != nil {
			return fmt.Errorf("pipeline: sink %s: %w", s.Name, err)
		}
		if j.spools == nil {
			j.spools = map[string]*sink.Spool{}
			j.spoolDedupe = map[string]int64{}
		}
		j.spools[s.Name], j.spoolDedupe[s.Name] = sp, dedupe
	}
	j.spoolResume = make(chan struct{})
	return nil
}

// spoolStates is where every sink's spool stands, for the metadata of a
// checkpoint whose tasks have all acknowledged (nil: no spools). Output is
// dropped from a stager only after it is durably spooled, and the spool
// end only grows while the job runs, so an end read after every snapshot
// covers all output a snapshot no longer holds.
func (j *Job) spoolStates() map[string]checkpoint.SpoolState {
	if len(j.spools) == 0 {
		return nil
	}
	out := make(map[string]checkpoint.SpoolState, len(j.spools))
	for name, sp := range j.spools {
		out[name] = sp.State()
	}
	return out
}

func (j *Job) closeSpools() error {
	var err error
	for _, sp := range j.spools {
		if e := sp.Close(); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// restoredEpoch reports whether a staged epoch of a restored checkpoint
// still has to be staged for sink name: not if its spool holds it already
// (or published it), or without a spool, if the sink confirmed it.
func (j *Job) restoredEpoch(name string, id int64) bool {
	if d, ok := j.spoolDedupe[name]; ok {
		return id > d
	}
	confirmed, ok := j.confirmed[name]
	return !ok || id > confirmed
}

// spoolLoop moves the staged output of completed checkpoints of one sink
// into its spool: when checkpoint N has completed, every epoch <= N of
// every stager of the sink is appended with a mark for N and fsynced, and
// only then dropped from the stagers. While the spool is full it waits for
// the release loop to drain it; the sources stop reading meanwhile
// (spoolHold). A failed append or fsync is retried with backoff.
func (j *Job) spoolLoop(ctx context.Context, r *sinkRelease) {
	backoff := 100 * time.Millisecond
	for {
		j.relMu.Lock()
		want := r.want
		j.relMu.Unlock()
		if want > r.spool.Spooled() {
			if r.spool.Full() {
				j.setSpoolFull(r, true)
				wake(r.pub) // what is in the spool is the way out
			} else if err := j.spoolUpTo(r, want); err != nil {
				j.relMu.Lock()
				r.lastErr, r.lastErrAt = err.Error(), time.Now()
				j.relMu.Unlock()
				j.log.Warn("spooling staged output failed, retrying", "sink", r.name, "checkpoint", want, "err", err, "retry_in", backoff)
				select {
				case <-ctx.Done():
					return
				case <-j.relClock().After(backoff):
				}
				backoff = min(backoff*2, 5*time.Second)
				continue
			} else {
				backoff = 100 * time.Millisecond
				j.setSpoolFull(r, r.spool.Full())
				wake(r.pub)
				continue
			}
		} else {
			wake(r.pub)
		}
		select {
		case <-r.wake:
		case <-r.drained:
		case <-ctx.Done():
			return
		}
	}
}

func (j *Job) spoolUpTo(r *sinkRelease, upTo int64) error {
	var epochs []sink.Epoch
	for _, s := range r.stagers {
		epochs = append(epochs, s.PeekEpochs(upTo)...)
	}
	slices.SortStableFunc(epochs, func(a, b sink.Epoch) int { return cmp.Compare(a.ID, b.ID) })
	if err := r.spool.Append(upTo, epochs); err != nil {
		return err
	}
	for _, s := range r.stagers {
		s.Drop(upTo)
	}
	return nil
}

// publishLoop hands the output in the spool of one sink to the sink, whole
// checkpoints at a time from the confirmed position, and once the sink
// has it records the new position and marks chk-N/_published for the sink.
func (j *Job) publishLoop(ctx context.Context, r *sinkRelease, names []string) {
	for {
		select {
		case <-r.pub:
		case <-ctx.Done():
			return
		}
		for {
			b, err := r.spool.Read(spoolPublishBytes)
			if err != nil {
				// Corruption: the sink gets nothing more, and says so.
				j.relMu.Lock()
				r.lastErr, r.lastErrAt, r.retrying = err.Error(), time.Now(), true
				j.relMu.Unlock()
				j.log.Error("reading sink spool failed", "sink", r.name, "err", err)
				break
			}
			if b.UpTo < 0 {
				break
			}
			if err := j.deliver(ctx, r, b.UpTo, b.Outputs); err != nil {
				return // ctx done
			}
			for {
				err := r.spool.Confirm(b)
				if err == nil {
					break
				}
				j.log.Warn("recording published spool position failed, retrying", "sink", r.name, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
			if err := j.spec.Checkpoints.MarkSinkPublished(b.UpTo, r.name, names); err != nil {
				j.log.Warn("marking checkpoint published failed", "checkpoint", b.UpTo, "sink", r.name, "err", err)
			}
			j.relMu.Lock()
			r.done = max(r.done, b.UpTo)
			r.retrying = false
			close(j.relDoneCh)
			j.relDoneCh = make(chan struct{})
			j.relMu.Unlock()
			if !r.spool.Full() {
				j.setSpoolFull(r, false)
			}
			wake(r.drained)
		}
	}
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// setSpoolFull records whether the spool of r is full; the job holds its
// sources while any is, and tells OnSpoolFull.
func (j *Job) setSpoolFull(r *sinkRelease, full bool) {
	j.relMu.Lock()
	if r.full == full {
		j.relMu.Unlock()
		return
	}
	r.full = full
	names := j.fullSpoolsLocked()
	was := j.spoolHold.Load()
	j.spoolHold.Store(len(names) > 0)
	if was && len(names) == 0 {
		close(j.spoolResume)
		j.spoolResume = make(chan struct{})
	}
	j.relMu.Unlock()
	if full {
		j.log.Warn("sink spool full: sources stop reading and input is not acknowledged until the sink drains it",
			"sink", r.name, "spool_bytes", r.spool.Size(), "max_size", r.spool.MaxSize(), "dir", r.spool.Dir())
	} else {
		j.log.Info("sink spool has room again: input resumes", "sink", r.name, "spool_bytes", r.spool.Size())
	}
	if j.spec.OnSpoolFull != nil {
		// Calls from the spool and the publish loops are serialized, and
		// each reports the state as it is when it runs: the last call
		// always tells the current one, even when two changes race.
		j.spoolCbMu.Lock()
		defer j.spoolCbMu.Unlock()
		j.spec.OnSpoolFull(j.FullSpools())
	}
}

// spoolResumed returns a channel closed when no spool is full any more.
func (j *Job) spoolResumed() <-chan struct{} {
	j.relMu.Lock()
	defer j.relMu.Unlock()
	return j.spoolResume
}

// FullSpools names the sinks whose spool is full now.
func (j *Job) FullSpools() []string {
	j.relMu.Lock()
	defer j.relMu.Unlock()
	return j.fullSpoolsLocked()
}

// fullSpoolsLocked is FullSpools with j.relMu held.
func (j *Job) fullSpoolsLocked() []string {
	var names []string
	for _, r := range j.rels {
		if r.full {
			names = append(names, r.name)
		}
	}
	return names
}
