package pipeline

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/test/oracle"
)

// TestUnalignedInFlightWatermark: a reading that is late only because of a
// watermark that was in flight with it, ahead of it, when the checkpoint
// overtook both, is late after an unaligned restore too — at the same and
// at another parallelism — as in a run without a crash and an aligned one.
//
// The schedule is fixed, not timed: the whole log is written before the
// job starts (one source subtask reads 1024 messages, sends the watermark
// W of their event times, reads on), every keyed subtask is held after its
// first batch until the checkpoint's barrier is announced to it, so what
// is queued — W, then the late reading r (message 1030, event time from
// the first second) — is in flight.
func TestUnalignedInFlightWatermark(t *testing.T) {
	for _, tc := range []struct {
		name     string
		from, to int
	}{{"2 to 2", 2, 2}, {"2 to 3", 2, 3}, {"3 to 1", 3, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, true)
			rs := genReadings(2000, 13, 21)
			late := reading{site: rs[0].site, dev: rs[0].dev, ts: rs[0].ts, temp: 77}
			all := slices.Insert(slices.Clone(rs), 1030, late)
			h.appendReadings(all)
			w := WindowSpec{Type: "tumbling", Size: 5 * time.Second}
			mk := func(p int) JobSpec {
				s := h.spec(p, w)
				s.Checkpointing.Unaligned, s.Checkpointing.NumRetained = true, 10
				return s
			}
			old := mk(tc.from)
			old.Checkpointing.Interval = time.Hour // only the one triggered below
			old.ChannelCapacity = 1024             // everything fits: the source never blocks
			gate := make(chan struct{})
			var mu sync.Mutex
			held := map[string]bool{}
			old.batchHook = func(task string) {
				mu.Lock()
				first := !held[task]
				held[task] = true
				mu.Unlock()
				if first {
					<-gate
				}
			}
			h.runInFlight(old, gate)
			if len(withChannelState(h.store)) == 0 {
				t.Fatal("the checkpoint holds no in-flight data")
			}
			md := withChannelState(h.store)[0]

			h.dead = &memSink{}
			end := endMarker(all[len(all)-1].ts + 3_600_000)
			h.appendReadings([]reading{end})
			spec := mk(tc.to)
			spec.Restore = md
			want := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 5000}, testAggs, end.ts-2000)
			h.run(spec, func() bool { return len(finals(t, h.out.snapshot())) >= len(want) })
			compare(t, finals(t, h.out.snapshot()), want)
			var lates []int64
			for _, d := range h.dead.snapshot() {
				var m map[string]any
				if err := json.Unmarshal(d.Payload, &m); err != nil {
					t.Fatalf("dead letter %s: %v", d.Payload, err)
				}
				if r, _ := m["reason"].(string); strings.HasPrefix(r, "late event") {
					ts, _ := m["event_time"].(float64)
					lates = append(lates, int64(ts))
				}
			}
			if !slices.Equal(lates, []int64{late.ts}) {
				t.Errorf("late dead letters at %v, want one at %d", lates, late.ts)
			}
		})
	}
}

// runInFlight runs spec until one checkpoint, triggered once the source has
// read the whole log and announced to every keyed subtask while gate holds
// them, has completed; then stops the job.
func (h *harness) runInFlight(spec JobSpec, gate chan struct{}) {
	h.t.Helper()
	job, err := NewJob(spec, nil, testLogger())
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- job.Run(ctx) }()
	// Bounds for liveness only (a loaded machine is slow), never for a result.
	wait := func(what string, cond func() bool) {
		deadline := time.Now().Add(90 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				close(gate)
				cancel()
				<-done
				job.Close()
				h.t.Fatalf("%s: not in time", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	endOff := h.log.NextOffset()
	wait("source at the end of the log", func() bool {
		for _, off := range job.SourceOffsets() {
			if off < endOff {
				return false
			}
		}
		return true
	})
	cp := make(chan error, 1)
	go func() { _, err := job.TriggerCheckpoint(ctx); cp <- err }()
	wait("barrier announced to every keyed subtask", func() bool {
		for _, t := range job.keyed {
			if len(t.prio) == 0 {
				return false
			}
		}
		return true
	})
	close(gate)
	if err := <-cp; err != nil {
		h.t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		h.t.Fatal(err)
	}
	if err := job.Close(); err != nil {
		h.t.Fatal(err)
	}
}
