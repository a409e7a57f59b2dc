package service

import (
	"bufio"
	"encoding/json"
	"fmt"
	"github.com/eddy-stream/eddy/test/notifytest"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/daemon"
	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/eddytest"
)

// logTime is the time eddy stamped on a log line.
func logTime(t *testing.T, l eddytest.LogLine) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, l.Str("time"))
	if err != nil {
		t.Fatalf("log line without time: %s", l.Raw)
	}
	return at
}

// TestSystemdLifecycle runs the real binary under a fake systemd (a
// NOTIFY_SOCKET the test listens on, WATCHDOG_USEC) through the life of a
// service: READY=1, STATUS=, WATCHDOG=1, a reload that changes the
// checkpoint interval and log level live, a reload that is refused,
// SIGTERM with a final checkpoint and exit 0, and a restart that restores
// that checkpoint (READY=1 only after it), replays nothing and, over both
// runs, publishes every result exactly once.
func TestSystemdLifecycle(t *testing.T) {
	results := filepath.Join(t.TempDir(), "results.jsonl")
	c := testConfig{Interval: "3s", MinPause: "100ms", Out: results}
	e := newEddy(t, c)
	ns := notifytest.Listen(t)
	env := []string{ns.Env(), "WATCHDOG_USEC=1000000"}
	p := e.start(env...)

	// READY=1 once the job runs (no checkpoint to restore yet).
	ready, _ := ns.WaitFor(0, 60*time.Second, "READY=1", notifytest.IsKey("READY", "1"))
	running := p.WaitLog(0, "pipeline running", 5*time.Second)
	if lt := logTime(t, running); lt.After(ready.At) {
		t.Fatalf("READY=1 (%s) before the pipeline ran (%s)", ready.At, lt)
	}
	if !ready.Has("STATUS") {
		t.Errorf("READY=1 came without STATUS=: %q", ready.Raw)
	}

	// 4000 readings, 10 devices, 10 ms apart: 40 s of event time.
	e.simulate("--count", "4000", "--rate", "0", "--devices", "10", "--sites", "2",
		"--interval", "10ms", "--start", "2024-01-01T00:00:00Z", "--seed", "1")
	waitRead(p, 4000, 30*time.Second)

	// STATUS= names the last checkpoint, its age, the backlog and the rate.
	st, _ := ns.WaitFor(0, 20*time.Second, "STATUS=checkpoint …", func(m notifytest.Msg) bool {
		return strings.HasPrefix(m.Fields["STATUS"], "checkpoint ")
	})
	for _, want := range []string{" ago · backlog ", " rec/s"} {
		if !strings.Contains(st.Fields["STATUS"], want) {
			t.Errorf("STATUS=%q lacks %q", st.Fields["STATUS"], want)
		}
	}
	t.Logf("STATUS=%s", st.Fields["STATUS"])

	// WATCHDOG=1 every WATCHDOG_USEC/2 = 500 ms while idle (not a stall).
	t0 := time.Now()
	time.Sleep(2600 * time.Millisecond)
	if n := ns.Pings(t0, time.Now()); n < 3 {
		t.Fatalf("%d WATCHDOG=1 in 2.6 s with WatchdogSec=1s, want at least 3", n)
	}

	// Reload: interval 3s → 300ms and log.level info → debug, applied live.
	c.Interval, c.Level = "300ms", "debug"
	e.writeConfig(c)
	mark, logMark := ns.Count(), p.LogCount()
	reloadAt := time.Now()
	p.Signal(syscall.SIGHUP)
	rel, i := ns.WaitFor(mark, 10*time.Second, "RELOADING=1", notifytest.IsKey("RELOADING", "1"))
	if !rel.Has("MONOTONIC_USEC") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", rel.Raw)
	}
	ns.WaitFor(i+1, 10*time.Second, "READY=1 after RELOADING=1", notifytest.IsKey("READY", "1"))
	l := p.WaitLog(logMark, "configuration reloaded", 5*time.Second)
	if l.Str("checkpointing.interval") != "3s → 300ms" || l.Str("log.level") != "info → debug" {
		t.Errorf("reload log: %s", l.Raw)
	}
	var cc daemon.CheckpointConfig
	p.Get("/api/v1/checkpoints/config", &cc)
	if cc.Interval != 300 {
		t.Errorf("checkpoint config interval = %d ms after reload, want 300", cc.Interval)
	}
	// With a 3 s interval there is at most one trigger in 2.5 s; now there
	// are several.
	p.WaitFor("checkpoints every ~300 ms after the reload", 15*time.Second, func() bool {
		var o pipeline.CheckpointsOverview
		p.Get("/api/v1/checkpoints", &o)
		var trig []int64
		for _, h := range o.History {
			if h.TriggerTimestamp > reloadAt.UnixMilli() {
				trig = append(trig, h.TriggerTimestamp)
			}
		}
		return len(trig) >= 4 && trig[0]-trig[3] < 2500
	})
	p.WaitLog(logMark, "checkpoint triggered", 5*time.Second) // a debug line: the level applied

	// A window change does not fit the running state: refused, naming the
	// key and the reason; the running value stays.
	refused := c
	refused.Window = "20s"
	e.writeConfig(refused)
	mark, logMark = ns.Count(), p.LogCount()
	p.Signal(syscall.SIGHUP)
	_, i = ns.WaitFor(mark, 10*time.Second, "RELOADING=1", notifytest.IsKey("RELOADING", "1"))
	ns.WaitFor(i+1, 10*time.Second, "READY=1 after RELOADING=1", notifytest.IsKey("READY", "1"))
	l = p.WaitLog(logMark, "reload refused: the pipeline change does not fit the running state; the running job is kept", 5*time.Second)
	if l.Str("keys") != "pipeline.stages[1].window.size" || !strings.Contains(l.Str("reasons"), "window changed from") {
		t.Errorf("refused keys = %q, reasons %q; want pipeline.stages[1].window.size, window changed", l.Str("keys"), l.Str("reasons"))
	}
	var running1 struct {
		Config struct {
			Pipeline struct {
				Stages []struct {
					Window *struct {
						Size string `json:"size"`
					} `json:"window"`
				} `json:"stages"`
			} `json:"pipeline"`
			Checkpointing struct {
				Interval string `json:"interval"`
			} `json:"checkpointing"`
		} `json:"config"`
	}
	p.Get("/api/v1/config", &running1)
	if w := running1.Config.Pipeline.Stages[1].Window; w == nil || w.Size != "10s" {
		t.Errorf("running window size after a refused reload = %+v, want 10s", w)
	}
	if running1.Config.Checkpointing.Interval != "300ms" {
		t.Errorf("running checkpointing.interval = %s, want 300ms", running1.Config.Checkpointing.Interval)
	}
	e.writeConfig(c)

	// SIGTERM: STOPPING=1, a final checkpoint, exit 0.
	mark, logMark = ns.Count(), p.LogCount()
	p.Signal(syscall.SIGTERM)
	ns.WaitFor(mark, 5*time.Second, "STOPPING=1", notifytest.IsKey("STOPPING", "1"))
	final := p.WaitLog(logMark, "final checkpoint completed", 60*time.Second)
	finalID := int64(final.Attr["checkpoint"].(float64))
	if err := p.Wait(60 * time.Second); err != nil {
		t.Fatalf("eddy exited with %v after SIGTERM, want 0", err)
	}
	t.Logf("final checkpoint %d", finalID)

	// Restart: READY=1 only after the final checkpoint is restored.
	mark = ns.Count()
	p2 := e.start(env...)
	ready2, _ := ns.WaitFor(mark, 60*time.Second, "READY=1 after restart", notifytest.IsKey("READY", "1"))
	restoring := p2.WaitLog(0, "restoring from checkpoint", 5*time.Second)
	if restoring.Str("source") != "local" {
		t.Errorf("restored from %q, want local", restoring.Str("source"))
	}
	if id := int64(restoring.Attr["checkpoint"].(float64)); id != finalID {
		t.Fatalf("restart restored checkpoint %d, want the final checkpoint %d", id, finalID)
	}
	if lt := logTime(t, p2.WaitLog(0, "pipeline running", 5*time.Second)); lt.After(ready2.At) {
		t.Fatalf("READY=1 at %s, before recovery finished at %s", ready2.At, lt)
	}
	// READY's STATUS= names the restored checkpoint and the real backlog:
	// what the restored position has not read, not what the log retains.
	if st := ready2.Fields["STATUS"]; !strings.Contains(st, fmt.Sprintf("restored checkpoint %d (", finalID)) ||
		!strings.Contains(st, " · backlog 0 · ") {
		t.Errorf("READY=1 after restart: STATUS=%q, want restored checkpoint %d and backlog 0", st, finalID)
	}
	var cps pipeline.CheckpointsOverview
	p2.Get("/api/v1/checkpoints", &cps)
	if cps.Latest.Restored == nil || cps.Latest.Restored.ID != finalID {
		t.Fatalf("latest.restored = %+v, want checkpoint %d", cps.Latest.Restored, finalID)
	}
	time.Sleep(time.Second)
	if read, _ := ingested(p2); read != 0 {
		t.Fatalf("the source read %d messages again after restoring the final checkpoint, want 0", read)
	}

	// 3000 more readings from 60 s on, then an end marker that closes every
	// window; SIGTERM publishes the rest.
	e.simulate("--count", "3000", "--rate", "0", "--devices", "10", "--sites", "2",
		"--interval", "10ms", "--start", "2024-01-01T00:01:00Z", "--seed", "2", "--end-marker")
	waitRead(p2, 3001, 30*time.Second)
	p2.Stop() // SIGTERM, exit 0

	// Every (device, window) of both runs exactly once.
	f, err := os.Open(results)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids := map[string]int{}
	windows := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r struct {
			ID          string `json:"id"`
			Device      string `json:"device"`
			WindowStart int64  `json:"window_start"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("result %q: %v", sc.Text(), err)
		}
		ids[r.ID]++
		windows[fmt.Sprintf("%s@%d", r.Device, r.WindowStart)]++
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("result %s published %d times", id, n)
		}
	}
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	devices := map[string]bool{}
	for k := range windows {
		dev, _, _ := strings.Cut(k, "@")
		devices[dev] = true
	}
	if len(devices) < 10 {
		t.Fatalf("results for %d devices, want 10 (+ the end marker's): %v", len(devices), devices)
	}
	for dev := range devices {
		if dev == simulate.EndDevice {
			continue
		}
		for _, s := range []int64{0, 10, 20, 30, 60, 70, 80} {
			if n := windows[fmt.Sprintf("%s@%d", dev, base+s*1000)]; n != 1 {
				t.Errorf("device %s window +%ds: %d results, want 1", dev, s, n)
			}
		}
	}
	t.Logf("%d results, %d distinct ids", len(windows), len(ids))
}

// TestWatchdogStopsWhenStalled makes the pipeline stall for real: its sink
// is a FIFO nobody reads, so the task writing to it blocks, the channels
// fill, the source stops reading and messages wait in the ingest log.
// WATCHDOG=1 must go on while the pipeline is idle, stop while it is
// stalled, and resume once the FIFO is read again.
func TestWatchdogStopsWhenStalled(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "out.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// Open the read end first (non-blocking), so that eddy's open of the
	// write end does not wait; read nothing yet.
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	e := newEddy(t, testConfig{Interval: "0s", Mode: "at_least_once", Stateless: true, Out: fifo})
	ns := notifytest.Listen(t)
	p := e.start(ns.Env(), "WATCHDOG_USEC=1000000")
	ns.WaitFor(0, 60*time.Second, "READY=1", notifytest.IsKey("READY", "1"))

	// Idle, nothing to read: not a stall.
	t0 := time.Now()
	time.Sleep(3 * time.Second)
	if n := ns.Pings(t0, time.Now()); n < 4 {
		t.Fatalf("%d WATCHDOG=1 in 3 s of an idle pipeline, want at least 4", n)
	}

	// 20000 readings of ~100 bytes output each: far more than the 64 KiB
	// the pipe holds.
	mark, logMark := ns.Count(), p.LogCount()
	e.simulate("--count", "20000", "--rate", "0", "--devices", "10", "--interval", "10ms",
		"--start", "2024-01-01T00:00:00Z")
	p.WaitLog(logMark, "pipeline stalled: no task made progress while input waits; watchdog pings stopped", 30*time.Second)
	ns.WaitFor(mark, 5*time.Second, "STATUS=STALLED …", func(m notifytest.Msg) bool {
		return strings.HasPrefix(m.Fields["STATUS"], "STALLED for ")
	})
	var o daemon.Overview
	p.Get("/api/v1/overview", &o)
	if !o.Stalled {
		t.Errorf("overview: stalled = false while the watchdog reports a stall")
	}
	stalledAt := time.Now()
	time.Sleep(3 * time.Second)
	if n := ns.Pings(stalledAt, time.Now()); n != 0 {
		t.Fatalf("%d WATCHDOG=1 in 3 s of a stalled pipeline, want none", n)
	}
	if _, lag := ingested(p); lag <= 0 {
		t.Fatalf("ingest lag %d during the stall, want messages waiting", lag)
	}

	// Read the FIFO again: progress, pings resume.
	drained := make(chan int64)
	go func() {
		n, _ := io.Copy(io.Discard, r)
		drained <- n
	}()
	logMark = p.LogCount()
	p.WaitLog(logMark, "pipeline progressing again; watchdog pings resumed", 30*time.Second)
	resumed := time.Now()
	p.WaitFor("WATCHDOG=1 after the stall", 5*time.Second, func() bool { return ns.Pings(resumed, time.Now()) > 0 })
	waitRead(p, 20000, 60*time.Second)

	p.Stop()  // SIGTERM, exit 0
	r.Close() // ends the copy once eddy's write end is closed too
	t.Logf("read %d bytes from the FIFO", <-drained)
}
