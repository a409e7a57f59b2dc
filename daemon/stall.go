package daemon

import (
	"sync"
	"time"
)

// The stall detector decides whether the pipeline is stalled, which stops
// the watchdog pings (notify.go).
//
// Stalled means: a job is running, input is waiting in an ingest log (its
// newest offset is past what the source has read), and for longer than the
// stall timeout (the watchdog timeout, or 30 s without a watchdog) no task
// made progress: no message read, no record in or out, no watermark moved,
// no checkpoint completed. An idle pipeline with nothing to read is never
// stalled, nor is one that is slow but moving; neither is the daemon while
// it recovers, restarts a failed job (the supervisor is in charge) or stops.
// When pings stop, systemd kills eddy one watchdog timeout later and
// Restart=on-failure starts it again from the last checkpoint.

// defaultStallAfter is the stall timeout when systemd runs no watchdog.
const defaultStallAfter = 30 * time.Second

// progressSig changes whenever any task makes progress.
type progressSig struct {
	job                      any // a new job is progress
	messages, in, out, marks int64
	checkpoint               int64
}

type stallDetector struct {
	after time.Duration

	mu           sync.Mutex
	sig          progressSig
	lastProgress time.Time
	stalled      bool
	waiting      int64 // messages waiting in the ingest logs
}

func newStallDetector(after time.Duration, now time.Time) *stallDetector {
	return &stallDetector{after: after, lastProgress: now}
}

// observe takes one sample: sig, the messages waiting, and whether nothing
// can stall now (no job, or the daemon is stopping). It reports whether the
// pipeline is stalled and whether that changed with this sample.
func (s *stallDetector) observe(now time.Time, sig progressSig, waiting int64, exempt bool) (stalled, changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sig != s.sig || exempt || waiting == 0 {
		s.lastProgress = now
	}
	s.sig = sig
	s.waiting = waiting
	was := s.stalled
	s.stalled = now.Sub(s.lastProgress) > s.after
	return s.stalled, s.stalled != was
}

// state returns whether the pipeline is stalled, since when no task made
// progress, and how many messages wait.
func (s *stallDetector) state() (stalled bool, lastProgress time.Time, waiting int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stalled, s.lastProgress, s.waiting
}
