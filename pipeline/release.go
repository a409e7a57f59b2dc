package pipeline

import (
	"context"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/eddy-stream/eddy/internal/failpoint"
	"github.com/eddy-stream/eddy/pipeline/clock"
	"github.com/eddy-stream/eddy/pipeline/sink"
)

// sinkRelease is the release state of one sink (exactly-once mode): the
// stagers of every task that writes to it, and how far it has confirmed.
// Each sink has its own loop, so one sink down never holds another.
type sinkRelease struct {
	name    string
	sink    sink.Sink
	stagers []*sink.Stager
	wake    chan struct{}

	// under Job.relMu
	want      int64 // newest completed checkpoint to release
	done      int64 // newest checkpoint whose output this sink confirmed
	lastErr   string
	lastErrAt time.Time
	retrying  bool
	releasing int64 // checkpoint whose output is being handed over now, 0: idle
	full      bool  // the spool is full

	// With a spool (spool.go): spoolLoop moves staged output into it,
	// publishLoop publishes from it.
	spool   *sink.Spool
	pub     chan struct{} // wakes publishLoop
	drained chan struct{} // wakes spoolLoop: publishLoop confirmed some
}

// SinkState is the release state of one sink, for the overview.
type SinkState struct {
	Name string `json:"name"`
	// PublishedUpTo is the newest checkpoint whose staged output the sink
	// confirmed (-1: none since start or restore).
	PublishedUpTo int64 `json:"published_up_to"`
	// PendingEpochs are the checkpoint ids of output staged and not yet
	// confirmed, ascending (those above the newest completed checkpoint are
	// waiting for it).
	PendingEpochs []int64 `json:"pending_epochs"`
	// Releasing is the checkpoint whose output is being handed to the sink
	// now (0: idle); a sink whose broker is unreachable stays here, its
	// publisher waiting for the connection or retrying.
	Releasing   int64     `json:"releasing,omitempty"`
	Retrying    bool      `json:"retrying"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Spool is the sink's on-disk spool of output waiting for it (nil:
	// none, at_least_once).
	Spool *SpoolState `json:"spool,omitempty"`
}

// SpoolState is the state of a sink's spool, for the overview.
type SpoolState struct {
	Dir     string `json:"dir"`
	Bytes   int64  `json:"bytes"`
	MaxSize int64  `json:"max_size"`
	// Full: the sources stop reading and input is not acknowledged until
	// the sink drains the spool.
	Full bool `json:"full"`
	// SpooledUpTo is the newest checkpoint whose output is in the spool
	// (or published); PublishedUpTo the newest the sink confirmed.
	SpooledUpTo int64 `json:"spooled_up_to"`
}

// releaseFor returns the release state of the sink named name, creating it.
func (j *Job) releaseFor(name string, s sink.Sink) *sinkRelease {
	for _, r := range j.rels {
		if r.name == name {
			return r
		}
	}
	done := int64(-1)
	if c, ok := j.confirmed[name]; ok {
		done = c
	}
	r := &sinkRelease{name: name, sink: s, wake: make(chan struct{}, 1), want: -1, done: done,
		spool: j.spools[name], pub: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
	if r.spool != nil {
		r.done = max(r.done, r.spool.Confirmed())
	}
	j.rels = append(j.rels, r)
	return r
}

// SinkStates returns the release state of every sink in exactly-once mode
// (nil otherwise), in configuration order.
func (j *Job) SinkStates() []SinkState {
	j.relMu.Lock()
	defer j.relMu.Unlock()
	var out []SinkState
	for _, r := range j.rels {
		st := SinkState{Name: r.name, PublishedUpTo: r.done, Releasing: r.releasing, Retrying: r.retrying, LastError: r.lastErr, LastErrorAt: r.lastErrAt}
		st.PendingEpochs = []int64{}
		for _, s := range r.stagers {
			for _, e := range s.Pending() {
				if !slices.Contains(st.PendingEpochs, e.ID) {
					st.PendingEpochs = append(st.PendingEpochs, e.ID)
				}
			}
		}
		slices.Sort(st.PendingEpochs)
		if sp := r.spool; sp != nil {
			st.Spool = &SpoolState{Dir: sp.Dir(), Bytes: sp.Size(), MaxSize: sp.MaxSize(), Full: r.full, SpooledUpTo: sp.Spooled()}
		}
		out = append(out, st)
	}
	return out
}

// releaseUpTo hands staged output of every checkpoint <= id to the
// release loop of every sink. Only the newest id matters: it covers older
// ones.
func (j *Job) releaseUpTo(id int64) {
	j.relMu.Lock()
	defer j.relMu.Unlock()
	if len(j.rels) == 0 { // nothing staged (at_least_once): all of it is out
		if err := j.spec.Checkpoints.MarkPublished(id); err != nil {
			j.log.Warn("marking checkpoint published failed", "checkpoint", id, "err", err)
		}
		return
	}
	for _, r := range j.rels {
		if id > r.want {
			r.want = id
		}
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// relDoneLocked is the newest checkpoint whose output every sink confirmed.
func (j *Job) relDoneLocked() int64 {
	done := int64(math.MaxInt64) // no sink has anything to release
	for _, r := range j.rels {
		done = min(done, r.done)
	}
	return done
}

// releaseLoop releases the staged output of completed checkpoints to one
// sink (exactly-once mode): it writes it, waits until the sink has it
// (MQTT PUBACKs, fsync), drops it from the sink's stagers and records in
// chk-N/_published that this sink confirmed checkpoint N, so a restart
// publishes it again only to the sinks that had not. There is one such
// goroutine per sink, owned by Run. (mqttio.Publisher, the MQTT client a
// sink writes through, is another thing.)
func (j *Job) releaseLoop(ctx context.Context, r *sinkRelease) {
	names := make([]string, len(j.rels))
	for i, o := range j.rels {
		names[i] = o.name
	}
	for {
		select {
		case <-r.wake:
		case <-ctx.Done():
			return
		}
		j.relMu.Lock()
		want, done := r.want, r.done
		j.relMu.Unlock()
		if want <= done {
			continue
		}
		if err := j.release(ctx, r, want); err != nil {
			return // only when ctx is done
		}
		if err := j.spec.Checkpoints.MarkSinkPublished(want, r.name, names); err != nil {
			j.log.Warn("marking checkpoint published failed", "checkpoint", want, "sink", r.name, "err", err)
		}
		j.relMu.Lock()
		r.done = want
		r.retrying = false
		close(j.relDoneCh)
		j.relDoneCh = make(chan struct{})
		j.relMu.Unlock()
	}
}

// release hands the staged output of every checkpoint <= upTo to the sink
// of r and waits until the sink has it; only then is it dropped from r's
// stagers, so every snapshot taken meanwhile still holds it. A sink that
// fails — to take the output, or to confirm it (an MQTT connection lost
// before the PUBACKs) — gets the whole batch again after a backoff, for as
// long as it takes: nothing staged is dropped, and a repeat carries the
// same result ids. It returns an error only when ctx is done.
func (j *Job) release(ctx context.Context, r *sinkRelease, upTo int64) error {
	var batch []sink.Output
	for _, s := range r.stagers {
		batch = append(batch, s.Peek(upTo)...)
	}
	if err := j.deliver(ctx, r, upTo, batch); err != nil {
		return err
	}
	for _, s := range r.stagers {
		s.Drop(upTo)
	}
	return nil
}

// deliver hands batch, the output of checkpoints up to upTo, to the sink
// of r and waits until the sink has it, retrying with backoff for as long
// as it takes. It returns an error only when ctx is done.
func (j *Job) deliver(ctx context.Context, r *sinkRelease, upTo int64, batch []sink.Output) error {
	j.relMu.Lock()
	r.releasing = upTo
	j.relMu.Unlock()
	defer func() {
		j.relMu.Lock()
		r.releasing = 0
		j.relMu.Unlock()
	}()
	backoff := 100 * time.Millisecond
	var failures int
	var last string
	for len(batch) > 0 {
		stop := j.watchBlocked(r, upTo)
		err := r.sink.Write(ctx, batch)
		if err == nil {
			failpoint.Hit(failpoint.MidPublish)
			err = r.sink.Flush(ctx)
		}
		stop()
		if err == nil {
			if failures > 0 {
				j.log.Info("releasing staged output succeeded again", "sink", r.name, "checkpoint", upTo, "failed_attempts", failures)
			}
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		j.relMu.Lock()
		r.retrying, r.lastErr, r.lastErrAt = true, err.Error(), time.Now()
		j.relMu.Unlock()
		// A full disk or a long outage can last: say so once per distinct
		// error, not at every attempt.
		failures++
		if msg := err.Error(); msg != last {
			last = msg
			j.log.Warn("releasing staged output failed, retrying with backoff", "sink", r.name, "checkpoint", upTo,
				"err", err, "retry_in", backoff, "no_space", noSpace(err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-j.relClock().After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

// blockedAfter is how long a sink may block in Write or Flush before its
// state says why (watchBlocked); a variable for tests.
var blockedAfter = 5 * time.Second

// watchBlocked makes the state of r say so when the sink blocks in Write
// or Flush for longer than blockedAfter without a connection (a sink that
// says, sink.Connector): an MQTT sink whose broker is down waits there,
// retrying by itself, without returning an error. The returned func stops
// the watch. It only reports; release does not depend on it.
func (j *Job) watchBlocked(r *sinkRelease, upTo int64) (stop func()) {
	c, ok := r.sink.(sink.Connector)
	if !ok {
		return func() {}
	}
	t := time.AfterFunc(blockedAfter, func() {
		if c.Connected() {
			return
		}
		j.relMu.Lock()
		r.retrying, r.lastErr, r.lastErrAt = true, "not connected to the broker: waiting to publish checkpoint "+strconv.FormatInt(upTo, 10), time.Now()
		j.relMu.Unlock()
	})
	return func() { t.Stop() }
}

// relClock is the clock the release backoffs wait on: the box's (a fake
// one in tests).
func (j *Job) relClock() clock.Clock {
	if j.spec.Clock != nil {
		return j.spec.Clock
	}
	return clock.SystemClock()
}
