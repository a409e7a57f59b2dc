package e2e

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/daemon"
	"github.com/eddy-stream/eddy/simulate"
)

// TestCatchUpAfterKill (EDDY_LONG=1) checks the catch-up arithmetic
// against a real crash: eddy takes a paced stream at a known live rate,
// `eddy plan` measures the box on eddy's own ingest log (read-only, while
// eddy runs), the overview predicts the catch-up after a crash now; then
// eddy is killed with SIGKILL, started again at once, and the test measures
// how long until its sources are back at the head of the log. Both figures
// are logged; nothing is asserted about them (the box is shared), only
// that the prediction exists and the job catches up.
func TestCatchUpAfterKill(t *testing.T) {
	if os.Getenv("EDDY_LONG") == "" {
		t.Skip("set EDDY_LONG=1: a kill -9 under a paced stream, with eddy plan")
	}
	const rate = 2000 // readings/s, one per message
	b := startBroker(t)
	e := newEddy(t, b, config{Stages: windowStages("{type: tumbling, size: 10s}"), ResultsFrom: "per_device",
		Interval: "5s", MinPause: "1s", SegmentSize: "4MiB"})
	p := e.StartReady()
	f := newFeeder(t, b, "catchup-feeder")
	ctx, cancel := context.WithCancel(context.Background())
	fed := make(chan error, 1)
	go func() {
		_, err := simulate.Run(ctx, simulate.Options{Devices: 50, Sites: 5, Batch: 1, Rate: rate, Count: 1 << 30,
			Start: time.Now().Truncate(time.Millisecond), Seed: 3},
			func(ctx context.Context, topic string, payload []byte, _ byte, retain bool) error {
				return f.Publisher().Publish(ctx, topic, payload, 1, retain)
			})
		fed <- err
	}()
	defer func() {
		cancel()
		if err := <-fed; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("feeder: %v", err)
		}
	}()
	p.WaitFor("two checkpoints under the live stream", 2*time.Minute, func() bool { return p.LatestCompleted() >= 2 })

	out, err := e.Command("plan", "-c", e.ConfigPath, "--duration", "20s")
	if err != nil {
		t.Fatalf("eddy plan: %v\n%s", err, out)
	}
	t.Logf("eddy plan on the live ingest log:\n%s", out)

	var o daemon.Overview
	p.WaitFor("the live headroom", time.Minute, func() bool {
		o = p.Overview()
		return o.Headroom != nil && o.Headroom.Ratio > 0 && o.RecordsPerSecond > rate/2
	})
	h := o.Headroom
	t.Logf("before the kill: live %.0f readings/s, max %.0f, headroom %.1f×, restore %.3fs (%s), predicted catch-up %.2fs",
		h.LiveReadingsPerSecond, h.MaxReadingsPerSecond, h.Ratio, h.RestoreSeconds, h.RestoreFrom, h.CatchUpSeconds)
	if h.CatchUpSeconds < 0 {
		t.Fatalf("no catch-up predicted: %+v", h)
	}

	p.Kill()
	t0 := time.Now()
	p = e.StartReady()
	ready := time.Since(t0)
	p.WaitFor("the sources back at the head of the log", 5*time.Minute, func() bool {
		o := p.Overview()
		if len(o.Ingest) == 0 || !o.Running {
			return false
		}
		for _, in := range o.Ingest {
			if in.Lag > rate/10 { // a tenth of a second of input
				return false
			}
		}
		return true
	})
	actual := time.Since(t0)
	after := p.Overview().Headroom
	t.Logf("after the kill: ready in %.2fs, caught up in %.2fs (predicted %.2fs); this start's restore %.3fs",
		ready.Seconds(), actual.Seconds(), h.CatchUpSeconds, after.RestoreSeconds)
	if !strings.Contains(out, "max (checkpointing on)") {
		t.Errorf("eddy plan printed no maximum:\n%s", out)
	}
}
