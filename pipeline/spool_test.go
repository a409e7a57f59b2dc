package pipeline

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline/clock"
	"github.com/eddy-stream/eddy/pipeline/sink"
	"github.com/eddy-stream/eddy/test/oracle"
)

func (h *harness) withSpools(spec JobSpec, maxSize map[string]int64) JobSpec {
	for i := range spec.Sinks {
		s := &spec.Sinks[i]
		m := maxSize[s.Name]
		if m == 0 {
			m = 64 << 20
		}
		s.Spool = &SpoolSpec{Dir: filepath.Join(h.dir, "spool", s.Name), MaxSize: m}
	}
	return spec
}

// A sink that is down fills its small spool: the job says so
// (OnSpoolFull, SinkState.Spool.Full), its sources stop reading, and
// checkpoints go on. After a crash, a restore with the sink back publishes
// every result to it once by id; a second restore from an older retained
// checkpoint (which cuts the spool back) publishes nothing different.
func TestSpoolFullHoldsSourcesAndRestoreDrains(t *testing.T) {
	h := newHarness(t, true)
	rs := genReadings(6000, 7, 3)
	end := endMarker(rs[len(rs)-1].ts + 3_600_000)
	h.appendReadings(append(rs, end))
	w := WindowSpec{Type: "tumbling", Size: 5 * time.Second}
	want := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 5000}, testAggs, end.ts-2000)

	var mu sync.Mutex
	var calls [][]string
	onFull := func(full []string) {
		mu.Lock()
		calls = append(calls, full)
		mu.Unlock()
	}
	lastCall := func() ([]string, int) {
		mu.Lock()
		defer mu.Unlock()
		if len(calls) == 0 {
			return nil, 0
		}
		return calls[len(calls)-1], len(calls)
	}
	down := &downSink{}
	spec := h.spec(2, w)
	spec.Sinks = append(spec.Sinks, SinkSpec{Name: "cloud", From: "win", Topic: "cloud/{site}/{device}", Sink: down})
	spec = h.withSpools(spec, map[string]int64{"cloud": 4 << 10})
	spec.OnSpoolFull = onFull
	var cpsWhileFull int64 = -1
	runUntil(t, spec, "cloud spool full, checkpoints go on", func(j *Job) bool {
		c := sinkState(j, "cloud")
		if c.Spool == nil || !c.Spool.Full || !slices.Equal(j.FullSpools(), []string{"cloud"}) {
			return false
		}
		if full, _ := lastCall(); !slices.Equal(full, []string{"cloud"}) {
			return false
		}
		if cpsWhileFull < 0 {
			cpsWhileFull = h.newestCompleted()
			return false
		}
		return h.newestCompleted() > cpsWhileFull+2 // checkpoints keep completing while full
	})
	if got := len(finals(t, h.out.snapshot())); got >= len(want) {
		t.Logf("note: out got all %d results before the cloud spool filled", got)
	}

	md, broken, err := h.store.Latest(true)
	if err != nil || md == nil || len(broken) > 0 {
		t.Fatalf("latest: %v %v %v", md, broken, err)
	}

	cloud := &memSink{}
	spec = h.spec(2, w)
	spec.Sinks = append(spec.Sinks, SinkSpec{Name: "cloud", From: "win", Topic: "cloud/{site}/{device}", Sink: cloud})
	spec = h.withSpools(spec, map[string]int64{"cloud": 4 << 10})
	spec.OnSpoolFull = onFull
	spec.Restore = md
	runUntil(t, spec, "cloud caught up after restore", func(j *Job) bool {
		full, _ := lastCall() // the daemon's view: intake must resume while the job runs
		return len(finals(t, cloud.snapshot())) >= len(want) && len(finals(t, h.out.snapshot())) >= len(want) &&
			len(j.FullSpools()) == 0 && len(full) == 0
	})
	compare(t, finals(t, cloud.snapshot()), want)
	compare(t, finals(t, h.out.snapshot()), want)
	if _, n := lastCall(); n < 2 {
		t.Errorf("OnSpoolFull called %d times, want at least full and drained", n)
	}

	ids, _ := h.store.Completed()
	older, err := h.store.Load(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	newest := ids[len(ids)-1]
	if older.ID == newest {
		return
	}
	t.Logf("restoring again from older checkpoint %d (newest %d)", older.ID, newest)
	spec.Restore = older
	runUntil(t, spec, "caught up after restore from an older checkpoint", func(j *Job) bool {
		return len(finals(t, cloud.snapshot())) >= len(want) && sinkState(j, "cloud").Spool.SpooledUpTo > newest
	})
	compare(t, finals(t, cloud.snapshot()), want) // finals checks identical content per id
}

// flappingSink takes output only every other Write, so that the job is
// killed at varied points of the spool's publish cycle.
type flappingSink struct {
	memSink
	n atomic.Int64
}

func (s *flappingSink) Write(ctx context.Context, outs []sink.Output) error {
	if s.n.Add(1)%2 == 0 {
		return errors.New("link flapping")
	}
	return s.memSink.Write(ctx, outs)
}

// TestSpoolRestoreAtEveryStep kills the job (no final checkpoint) at a
// series of points — after the spool took a checkpoint's output, after
// the sink confirmed one, while the spool is full — and restores from
// the newest checkpoint each time; in the end the cloud sink has every
// result, each id with one content.
func TestSpoolRestoreAtEveryStep(t *testing.T) {
	h := newHarness(t, true)
	rs := genReadings(12000, 7, 3)
	end := endMarker(rs[len(rs)-1].ts + 3_600_000)
	h.appendReadings(append(rs, end))
	w := WindowSpec{Type: "tumbling", Size: 5 * time.Second}
	want := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 5000}, testAggs, end.ts-2000)
	cloud := &flappingSink{}
	var spooled, published int64 = -1, -1
	for step := 0; ; step++ {
		spec := h.spec(2, w)
		spec.Sinks = append(spec.Sinks, SinkSpec{Name: "cloud", From: "win", Topic: "cloud/{site}/{device}", Sink: cloud})
		spec = h.withSpools(spec, map[string]int64{"cloud": 8 << 10})
		if step > 0 {
			md, broken, err := h.store.Latest(true)
			if err != nil || md == nil || len(broken) > 0 {
				t.Fatalf("step %d: latest: %v %v %v", step, md, broken, err)
			}
			spec.Restore = md
		}
		done := false
		runUntil(t, spec, fmt.Sprintf("step %d", step), func(j *Job) bool {
			c := sinkState(j, "cloud")
			if step >= 6 && len(finals(t, cloud.snapshot())) >= len(want) && c.Spool.SpooledUpTo == c.PublishedUpTo {
				done = true
				return true
			}
			switch step % 3 {
			case 0:
				return c.Spool.SpooledUpTo > spooled
			case 1:
				return c.PublishedUpTo > published
			default:
				return c.Spool.Full || c.PublishedUpTo > published+1
			}
		})
		if done || step > 40 {
			t.Logf("%d kills and restores; spooled %d, published %d before the last", step, spooled, published)
			break
		}
		// what a restore must keep: read from the spool's files, not the dead job
		s, _, err := sink.OpenSpool(sink.SpoolOptions{Dir: filepath.Join(h.dir, "spool", "cloud"), MaxSize: 8 << 10}, 1<<62)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		spooled, published = s.Spooled(), s.Confirmed()
		s.Close()
	}
	compare(t, finals(t, cloud.snapshot()), want)
	compare(t, finals(t, h.out.snapshot()), want)
}

// blockedSink blocks in Write until its context ends, not connected, like
// an MQTT sink waiting for its broker.
type blockedSink struct{}

func (blockedSink) Write(ctx context.Context, _ []sink.Output) error { <-ctx.Done(); return ctx.Err() }
func (blockedSink) Flush(context.Context) error                      { return nil }
func (blockedSink) Close() error                                     { return nil }
func (blockedSink) Connected() bool                                  { return false }

func TestBlockedSinkShowsLastError(t *testing.T) {
	defer func(d time.Duration) { blockedAfter = d }(blockedAfter)
	blockedAfter = 20 * time.Millisecond
	h := newHarness(t, true)
	rs := genReadings(2000, 5, 2)
	h.appendReadings(append(rs, endMarker(rs[len(rs)-1].ts+3_600_000)))
	spec := h.spec(2, WindowSpec{Type: "tumbling", Size: 5 * time.Second})
	spec.Sinks = append(spec.Sinks, SinkSpec{Name: "cloud", From: "win", Sink: blockedSink{}})
	spec = h.withSpools(spec, nil)
	runUntil(t, spec, "the blocked sink's state names why", func(j *Job) bool {
		c := sinkState(j, "cloud")
		return c.Retrying && c.Releasing > 0 && strings.Contains(c.LastError, "not connected to the broker")
	})
}

// The release backoff of a failing sink runs on the box's clock: 100 ms,
// doubling, at most 5 s. On a fake clock a retry happens exactly when the
// backoff has passed.
func TestReleaseBackoffOnFakeClock(t *testing.T) {
	h := newHarness(t, true)
	rs := genReadings(2000, 5, 2)
	h.appendReadings(append(rs, endMarker(rs[len(rs)-1].ts+3_600_000)))
	spec := h.spec(1, WindowSpec{Type: "tumbling", Size: 5 * time.Second})
	down := &downSink{}
	spec.Sinks = append(spec.Sinks, SinkSpec{Name: "cloud", From: "win", Sink: down})
	spec = h.withSpools(spec, nil)
	fc := clock.NewFakeClock(time.Now())
	spec.Clock = fc
	backoffs := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	step := 0
	runUntil(t, spec, "the backoffs on the fake clock", func(j *Job) bool {
		if step == len(backoffs) {
			return true
		}
		// the release loop waits on the clock after try step+1
		if down.tries.Load() != int64(step+1) || fc.Waiters() == 0 {
			return false
		}
		fc.Advance(backoffs[step] - time.Millisecond)
		if got := down.tries.Load(); got != int64(step+1) {
			t.Fatalf("after %v of a %v backoff: %d tries, want %d", backoffs[step]-time.Millisecond, backoffs[step], got, step+1)
		}
		fc.Advance(time.Millisecond)
		step++
		return false
	})
	if down.tries.Load() < int64(len(backoffs)+1) {
		t.Errorf("%d tries after %d backoffs", down.tries.Load(), len(backoffs))
	}
}
