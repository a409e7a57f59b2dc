package pipeline

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline/sink"
	"github.com/eddy-stream/eddy/test/oracle"
)

// downSink never takes anything, like a broker that is unreachable.
type downSink struct{ tries atomic.Int64 }

func (s *downSink) Write(context.Context, []sink.Output) error {
	s.tries.Add(1)
	return errors.New("broker unreachable")
}
func (s *downSink) Flush(context.Context) error { return nil } // nothing got through to wait for
func (s *downSink) Close() error                { return nil }

// runUntil runs the job built from spec until cond holds, then cancels it
// (as a kill would: no final checkpoint) and closes it.
func runUntil(t *testing.T, spec JobSpec, what string, cond func(*Job) bool) {
	t.Helper()
	os.RemoveAll(spec.State.Dir)
	job, err := NewJob(spec, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- job.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !cond(job) {
		if time.Now().After(deadline) {
			cancel()
			<-done
			job.Close()
			t.Fatalf("%s: not in time; sinks %+v", what, job.SinkStates())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := job.Close(); err != nil {
		t.Fatal(err)
	}
}

func sinkState(j *Job, name string) SinkState {
	for _, s := range j.SinkStates() {
		if s.Name == name {
			return s
		}
	}
	return SinkState{Name: name, PublishedUpTo: -1}
}

// newestCompleted is the id of the newest completed checkpoint, -1 if none.
func (h *harness) newestCompleted() int64 {
	ids, _ := h.store.Completed()
	if len(ids) == 0 {
		return -1
	}
	return ids[len(ids)-1]
}

// Two sinks read the same stage: "out" works, "cloud" is down for good.
// "out" gets the output of every checkpoint while "cloud" keeps failing;
// after a crash, the restore publishes the staged output only to "cloud",
// which now works, and it gets every result once by id.
func TestSinkDownDoesNotHoldOthersAndRestorePublishesOnlyToIt(t *testing.T) {
	h := newHarness(t, true)
	rs := genReadings(3000, 7, 3)
	end := endMarker(rs[len(rs)-1].ts + 3_600_000)
	h.appendReadings(append(rs, end))
	w := WindowSpec{Type: "tumbling", Size: 5 * time.Second}
	want := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 5000}, testAggs, end.ts-2000)

	down := &downSink{}
	spec := h.spec(2, w)
	spec.Sinks = append(spec.Sinks, SinkSpec{Name: "cloud", From: "win", Topic: "cloud/{site}/{device}", Sink: down})
	runUntil(t, spec, "out has every result and confirmed the newest checkpoint", func(j *Job) bool {
		if len(finals(t, h.out.snapshot())) < len(want) {
			return false
		}
		st := sinkState(j, "out")
		c := sinkState(j, "cloud")
		return st.PublishedUpTo >= 0 && st.PublishedUpTo >= h.newestCompleted() &&
			c.Retrying && c.LastError != "" && len(c.PendingEpochs) > 0 && down.tries.Load() > 1
	})
	compare(t, finals(t, h.out.snapshot()), want)
	published := len(h.out.snapshot())

	md, broken, err := h.store.Latest(true)
	if err != nil || md == nil || len(broken) > 0 {
		t.Fatalf("latest: %v %v %v", md, broken, err)
	}
	if p := h.store.PublishedSinks(md.ID); p.Has("cloud") || p.All {
		t.Fatalf("checkpoint %d marked published to cloud: %+v", md.ID, p)
	}

	cloud := &memSink{}
	spec = h.spec(2, w)
	spec.Sinks = append(spec.Sinks, SinkSpec{Name: "cloud", From: "win", Topic: "cloud/{site}/{device}", Sink: cloud})
	spec.Restore = md
	runUntil(t, spec, "cloud caught up", func(j *Job) bool {
		return len(finals(t, cloud.snapshot())) >= len(want) && sinkState(j, "cloud").PublishedUpTo >= md.ID
	})
	compare(t, finals(t, cloud.snapshot()), want)
	if got := len(h.out.snapshot()); got != published {
		t.Errorf("restore published %d outputs again to the sink that had confirmed them", got-published)
	}
	if p := h.store.PublishedSinks(md.ID); !p.All || !p.Has("cloud") || !p.Has("out") {
		t.Errorf("checkpoint %d published marker after catch-up: %+v", md.ID, p)
	}
}
