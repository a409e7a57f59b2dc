package pipeline

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/storage/ingestlog"
	"github.com/eddy-stream/eddy/test/oracle"
)

// appendBulk appends rs to the ingest log with one sync.
func (h *harness) appendBulk(rs []reading) {
	h.t.Helper()
	for _, r := range rs {
		topic, p := r.msg()
		if _, err := h.log.Append(&ingestlog.Record{Timestamp: 1, Topic: topic, Payload: p, QoS: 1}); err != nil {
			h.t.Fatal(err)
		}
	}
	if err := h.log.Sync(); err != nil {
		h.t.Fatal(err)
	}
}

// keyedIn is the records the job's keyed subtasks have processed.
func keyedIn(j *Job) int64 {
	var n int64
	for _, o := range j.Overview() {
		if o.Kind == "keyed" {
			n += o.RecordsIn
		}
	}
	return n
}

// TestNativeCheckpointHoldsWrites holds the RocksDB part of a native
// checkpoint (testHookNative) while the keyed task processes more input:
// evictions of a 3-entry write-back cache, windows that fire (their keys'
// state deleted) and rocksdb timers that fire and are registered. None of
// it may reach the checkpoint: restored from it with the rest of the
// stream, every window must come out as the oracle computes it (a leaked
// put counts a reading twice, a leaked delete of a window or its timer
// loses the window). "back-pressure" touches more keys during the hold
// than the held cache may take, so the task must wait for the checkpoint.
func TestNativeCheckpointHoldsWrites(t *testing.T) {
	t.Cleanup(func() { testHookNative, testHookHeldWait = nil, nil })
	for _, tc := range []struct {
		name           string
		devs, pre, mid int
		wait           bool
	}{
		{"held writes", 60, 600, 900, false},
		{"back-pressure", 5000, 600, 9000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, true)
			rs := genReadings(tc.pre+tc.mid+600, tc.devs, 5)
			w := WindowSpec{Type: "tumbling", Size: time.Second}
			newSpec := func() JobSpec {
				s := h.spec(1, w)
				s.State.Timers = "rocksdb"
				s.Checkpointing.Interval = time.Hour // triggered by the test only
				return s
			}
			var (
				armed   atomic.Bool
				waited  atomic.Bool
				entered = make(chan struct{})
				release = make(chan struct{})
				once    sync.Once
			)
			unblock := func() { once.Do(func() { close(release) }) }
			t.Cleanup(unblock)
			testHookNative = func(string, int64) {
				if armed.CompareAndSwap(true, false) {
					close(entered)
					<-release
				}
			}
			testHookHeldWait = func(string) { waited.Store(true); unblock() }

			h.appendBulk(rs[:tc.pre])
			job, err := NewJob(newSpec(), nil, testLogger())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- job.Run(ctx) }()
			stop := func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run: %v", err)
				}
				if err := job.Close(); err != nil {
					t.Error(err)
				}
			}
			// Deadlines bound liveness only (a loaded machine is slow).
			waitFor := func(what string, cond func() bool) {
				t.Helper()
				deadline := time.Now().Add(90 * time.Second)
				for !cond() {
					select {
					case err := <-done:
						t.Fatalf("job ended while waiting for %s: %v", what, err)
					default:
					}
					if time.Now().After(deadline) {
						unblock()
						stop()
						t.Fatalf("timed out waiting for %s; keyed records in %d", what, keyedIn(job))
					}
					time.Sleep(2 * time.Millisecond)
				}
			}
			waitFor("the first input", func() bool { return keyedIn(job) >= int64(tc.pre) })
			armed.Store(true)
			type res struct {
				id  int64
				err error
			}
			cp := make(chan res, 1)
			go func() {
				id, err := job.TriggerCheckpoint(context.Background())
				cp <- res{id, err}
			}()
			waitFor("the native checkpoint to start", func() bool {
				select {
				case <-entered:
					return true
				default:
					return false
				}
			})
			// The barrier has passed the keyed task: what follows is after
			// checkpoint N.
			h.appendBulk(rs[tc.pre : tc.pre+tc.mid])
			waitFor("the input after the barrier", func() bool { return keyedIn(job) >= int64(tc.pre+tc.mid) })
			// One more reading: its batch comes after the watermark of the
			// ones above, so once it is processed their windows have fired.
			h.appendBulk(rs[tc.pre+tc.mid : tc.pre+tc.mid+1])
			waitFor("the last reading", func() bool { return keyedIn(job) >= int64(tc.pre+tc.mid+1) })
			if got := waited.Load(); got != tc.wait {
				t.Errorf("task waited for the pending checkpoint: %v, want %v", got, tc.wait)
			}
			unblock()
			r := <-cp
			stop()
			if r.err != nil {
				t.Fatalf("checkpoint: %v", r.err)
			}
			md, err := h.store.Load(r.id)
			if err != nil {
				t.Fatal(err)
			}
			if off := md.Sources["readings"].Offset; off != uint64(tc.pre) {
				t.Fatalf("checkpoint %d at offset %d, want %d", r.id, off, tc.pre)
			}
			for name, ts := range md.Tasks {
				if ts.Stage == "win" && ts.Kind != "native" {
					t.Errorf("task %s kind %s, want native", name, ts.Kind)
				}
			}

			end := endMarker(rs[len(rs)-1].ts + 3_600_000)
			h.appendBulk(append(rs[tc.pre+tc.mid+1:], end))
			spec := newSpec()
			spec.Checkpointing.Interval = 50 * time.Millisecond // exactly-once sinks publish on completion
			spec.Restore = md
			want := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 1000}, testAggs, end.ts-2000)
			h.run(spec, func() bool { return len(finals(t, h.out.snapshot())) >= len(want) })
			compare(t, finals(t, h.out.snapshot()), want)
		})
	}
}
