package plan

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eddy-stream/eddy/pipeline"
)

// Figures are a job's task counters summed by kind.
type Figures struct {
	SourceMsgs, SourceRecords, KeyedIn, Dead, Late int64
}

// Processed is what the keyed tasks took in, late and dead-lettered
// readings included: the readings the pipeline is done with.
func (f Figures) Processed() int64 { return f.KeyedIn + f.Dead + f.Late }

// Sum adds up the counters of tasks.
func Sum(tasks []pipeline.TaskOverview) Figures {
	var f Figures
	for _, t := range tasks {
		switch t.Kind {
		case "source":
			f.SourceMsgs += t.MessagesIn
			f.SourceRecords += t.RecordsIn
		case "keyed":
			f.KeyedIn += t.RecordsIn
		}
		f.Dead += t.DeadLetters
		f.Late += t.LateEvents
	}
	return f
}

// Replay is a job run flat out over a pre-filled ingest log: the pipeline
// replay of `make bench` (d) and of `eddy plan`.
type Replay struct {
	Job    *pipeline.Job
	Start  time.Time
	cancel context.CancelFunc
	done   chan error
}

// StartReplay runs job.
func StartReplay(job *pipeline.Job) *Replay {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Replay{Job: job, cancel: cancel, done: make(chan error, 1), Start: time.Now()}
	go func() { r.done <- job.Run(ctx) }()
	return r
}

// Figures sums the job's counters now.
func (r *Replay) Figures() Figures { return Sum(r.Job.Overview()) }

// ErrDeadline is Wait's error when until did not hold in time.
var ErrDeadline = errors.New("plan: replay deadline")

// Wait polls every poll until until(figures) holds and returns the time
// since Start: ErrDeadline (with the time) after timeout, or the job's
// error if it ended first.
func (r *Replay) Wait(timeout, poll time.Duration, until func(Figures) bool) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if until(r.Figures()) {
			return time.Since(r.Start), nil
		}
		if time.Now().After(deadline) {
			return time.Since(r.Start), ErrDeadline
		}
		select {
		case err := <-r.done:
			r.done <- err
			return time.Since(r.Start), fmt.Errorf("plan: job ended early: %v", err)
		case <-t.C:
		}
	}
}

// Stop cancels the job, waits for it to drain and closes it. It may be
// called more than once.
func (r *Replay) Stop() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.cancel = nil
	err := <-r.done
	if cerr := r.Job.Close(); err == nil {
		err = cerr
	}
	return err
}
