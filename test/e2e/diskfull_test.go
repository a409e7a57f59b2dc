package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/daemon"
	"github.com/eddy-stream/eddy/test/diskfull"
	"github.com/eddy-stream/eddy/test/eddytest"
	"github.com/eddy-stream/eddy/test/mqtttest"
	"github.com/eddy-stream/eddy/test/oracle"
)

// diskFullSize is the small real file system data_dir and the file sinks
// live on in the disk-full tests.
const diskFullSize = 128 << 20

// newDiskFullEddy is newEddy with data_dir (and so the file sinks, whose
// paths are relative to it) on a fresh tmpfs of diskFullSize, disk.min_free
// 8 MiB, and a second results sink "rotated" rotating every 4 KiB, in
// rotatedDir ("": data_dir).
func newDiskFullEddy(t *testing.T, b *mqtttest.Broker, rotatedDir string) (*eddy, string) {
	t.Helper()
	fsDir := diskfull.Tmpfs(t, diskFullSize)
	c := restartConfig()
	c.ExtraSinks = "  - name: rotated\n    from: per_device\n    file:\n      path: " + filepath.Join(rotatedDir, "rotated.jsonl") + "\n      max_size: 4KiB\n      max_files: 1000\n"
	in := eddytest.New(t, eddytest.Config{})
	in.DataDir = filepath.Join(fsDir, "data")
	in.WriteConfig(c.render(in.DataDir, b.URL(), in.HTTPAddr) + "disk:\n  min_free: 8MiB\n")
	return &eddy{Instance: in, t: t, cfg: c}, fsDir
}

// waitPaused waits until eddy says its intake is paused for a full disk:
// overview intake_paused has disk_full and /healthz answers 503.
func (e *eddy) waitPaused() {
	e.t.Helper()
	e.WaitFor("intake paused for a full disk", resultsTimeout, func() bool {
		return slices.Contains(e.Overview().IntakePaused, "disk_full") && e.Get("/healthz", nil) == http.StatusServiceUnavailable
	})
}

// waitResumed waits until the intake is no longer paused and /healthz is 200.
func (e *eddy) waitResumed() {
	e.t.Helper()
	e.WaitFor("intake resumed", resultsTimeout, func() bool {
		return len(e.Overview().IntakePaused) == 0 && e.Get("/healthz", nil) == http.StatusOK
	})
}

// rotatedLines reads every file of the rotating sink in dir ("":
// data_dir), oldest first.
func (e *eddy) rotatedLines(t *testing.T, dir string) []string {
	t.Helper()
	if dir == "" {
		dir = e.DataDir
	}
	files, err := filepath.Glob(filepath.Join(dir, "rotated.jsonl*"))
	if err != nil {
		t.Fatal(err)
	}
	// rotated.jsonl.N are older for larger N; rotated.jsonl is the newest.
	sort.Slice(files, func(i, j int) bool {
		return len(files[i]) > len(files[j]) || (len(files[i]) == len(files[j]) && files[i] > files[j])
	})
	var all []string
	for _, f := range files {
		lines, _, err := readLines(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, lines...)
	}
	return all
}

// TestDiskFull fills the file system of data_dir and of both file sinks
// (one rotating every 4 KiB) with a hog file while readings flow (QoS 1),
// with checkpoints every 300 ms: intake pauses (overview, /healthz 503),
// checkpoints and sink writes fail for lack of space, and the process
// stays alive (no abort inside RocksDB, no exit). When the hog is removed
// eddy resumes by itself, in the same process, and the results of both
// sinks are exact against the oracle.
func TestDiskFull(t *testing.T) {
	s := restartStream(t, 41)
	body := s.body()
	third := len(body) / 3
	b := startBroker(t)
	f := newFeeder(t, b, "e2e-feeder")
	e, fsDir := newDiskFullEddy(t, b, "")
	p := e.StartReady()
	e.Probe(f)
	f.MustSend(t, body[:third])
	e.waitCaughtUp(map[string]int64{"readings": int64(third)})

	hog := diskfull.FillHog(t, fsDir)
	f.MustSend(t, body[third:2*third]) // the broker holds what eddy does not take
	e.waitPaused()
	e.WaitFor("a checkpoint or the state store to fail for lack of space", resultsTimeout, func() bool {
		for _, l := range e.Logs() {
			if (l.Msg() == "checkpoint failed" && strings.Contains(l.Str("reason"), "no space left on device")) ||
				strings.HasPrefix(l.Msg(), "state store failed") {
				return true
			}
		}
		return false
	})
	if p.Exited() {
		t.Fatalf("eddy exited on a full disk: %v", p.ExitErr())
	}

	hog.Release()
	e.waitResumed()
	f.MustSend(t, body[2*third:])
	f.MustSend(t, s.end())
	want := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(s.endTS, restartOOO))
	got := e.waitResults("per_device", []string{"site", "device"}, want)
	compareResults(t, "results after a full disk", got, want, windowAggs)
	e.WaitFor("the rotating sink to have every window", resultsTimeout, func() bool {
		return collectResults(e.rotatedLines(t, ""), e.appliance(), "per_device", []string{"site", "device"}).Missing(want) == 0
	})
	compareResults(t, "rotating sink after a full disk", collectResults(e.rotatedLines(t, ""), e.appliance(), "per_device", []string{"site", "device"}), want, windowAggs)
	if p.Exited() || len(e.Runs()) != 1 {
		t.Fatalf("eddy did not survive the full disk in one process (exited %v, runs %d)", p.Exited(), len(e.Runs()))
	}
	var noSpaceCP, dbFailed, sinkFailed int
	for _, l := range e.Logs() {
		if strings.Contains(l.Raw, "Assertion") {
			t.Errorf("RocksDB assertion in the log: %s", l.Raw)
		}
		switch {
		case l.Msg() == "checkpoint failed" && strings.Contains(l.Str("reason"), "no space left on device"):
			noSpaceCP++
		case strings.HasPrefix(l.Msg(), "state store failed"):
			dbFailed++
		case strings.HasPrefix(l.Msg(), "releasing staged output failed"):
			sinkFailed++
		}
	}
	t.Logf("%d checkpoints failed for lack of space, %d state store failures, %d sink failure reports; %d windows, %d lines",
		noSpaceCP, dbFailed, sinkFailed, len(want), got.Lines)
}

// TestDiskFullRestore stops eddy cleanly, fills its file system and starts
// it again on the full disk with a checkpoint to restore: it stays alive,
// says the intake is paused, and recovers by itself when the hog is
// removed; the results over both runs are exact.
func TestDiskFullRestore(t *testing.T) {
	s := restartStream(t, 43)
	body := s.body()
	half := len(body) / 2
	b := startBroker(t)
	f := newFeeder(t, b, "e2e-feeder")
	e, fsDir := newDiskFullEddy(t, b, "")
	e.StartReady()
	e.Probe(f)
	f.MustSend(t, body[:half])
	e.waitCaughtUp(map[string]int64{"readings": int64(half)})
	e.Trigger()
	e.Stop()
	if len(completedCheckpoints(e.Path("checkpoints"))) == 0 {
		t.Fatal("no checkpoint on disk after the stop")
	}

	hog := diskfull.FillHog(t, fsDir)
	p := e.Start()
	e.WaitFor("eddy to wait for room to restore, or to pause its intake", resultsTimeout, func() bool {
		var o daemon.Overview
		if p.GetJSON("/api/v1/overview", &o) == nil && slices.Contains(o.IntakePaused, "disk_full") {
			return true
		}
		return slices.ContainsFunc(p.Logs(), func(l eddytest.LogLine) bool {
			return strings.HasPrefix(l.Msg(), "starting the job failed on a full disk")
		})
	})
	if p.Exited() {
		t.Fatalf("eddy exited restoring on a full disk: %v", p.ExitErr())
	}
	f.MustSend(t, body[half:])
	hog.Release()
	p.WaitReady()
	f.MustSend(t, s.end())
	want := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(s.endTS, restartOOO))
	got := e.waitResults("per_device", []string{"site", "device"}, want)
	compareResults(t, "results after a restore on a full disk", got, want, windowAggs)
	if p.Exited() {
		t.Fatalf("eddy exited: %v", p.ExitErr())
	}
	retries := 0
	for _, l := range p.Logs() {
		if strings.HasPrefix(l.Msg(), "starting the job failed on a full disk") {
			retries++
		}
	}
	if _, err := os.Stat(e.Path("checkpoints")); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d recoveries failed on the full disk before it had room; %d windows, %d lines", retries, len(want), got.Lines)
}

// TestDiskFullSinkRotation fills only the file system of the rotating
// sink (4 KiB files) while readings flow and checkpoints complete: the
// release of their output fails at a write or a rotation, the sink backs
// off instead of spinning, the intake pauses (the sink's directory is
// watched), and when the hog is removed the sink reopens, cuts what was
// not confirmed, and every window is in its files; the process lives.
func TestDiskFullSinkRotation(t *testing.T) {
	s := restartStream(t, 47)
	body := s.body()
	third := len(body) / 3
	b := startBroker(t)
	f := newFeeder(t, b, "e2e-feeder")
	sinkFS := diskfull.Tmpfs(t, 16<<20)
	e, _ := newDiskFullEddy(t, b, sinkFS)
	p := e.StartReady()
	e.Probe(f)
	f.MustSend(t, body[:third])
	e.waitCaughtUp(map[string]int64{"readings": int64(third)})

	hog := diskfull.FillHog(t, sinkFS)
	f.MustSend(t, body[third:2*third])
	e.waitPaused()
	e.WaitFor("the rotating sink to fail for lack of space", resultsTimeout, func() bool {
		return slices.ContainsFunc(e.Logs(), func(l eddytest.LogLine) bool {
			return strings.HasPrefix(l.Msg(), "releasing staged output failed") && strings.Contains(l.Str("err"), "no space left on device")
		})
	})
	hog.Release()
	e.waitResumed()
	f.MustSend(t, body[2*third:])
	f.MustSend(t, s.end())
	want := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(s.endTS, restartOOO))
	got := e.waitResults("per_device", []string{"site", "device"}, want)
	compareResults(t, "results file", got, want, windowAggs)
	e.WaitFor("the rotating sink to have every window", resultsTimeout, func() bool {
		return collectResults(e.rotatedLines(t, sinkFS), e.appliance(), "per_device", []string{"site", "device"}).Missing(want) == 0
	})
	rot := collectResults(e.rotatedLines(t, sinkFS), e.appliance(), "per_device", []string{"site", "device"})
	compareResults(t, "rotating sink on a disk that was full", rot, want, windowAggs)
	if p.Exited() || len(e.Runs()) != 1 {
		t.Fatalf("eddy did not survive in one process (exited %v, runs %d)", p.Exited(), len(e.Runs()))
	}
	files, _ := filepath.Glob(filepath.Join(sinkFS, "rotated.jsonl*"))
	t.Logf("%d windows, rotating sink: %d files, %d lines, %d duplicates", len(want), len(files), rot.Lines, rot.Dups)
}
