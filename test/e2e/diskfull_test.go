package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/storage/diskspace"
	"github.com/eddy-stream/eddy/test/diskfull"
	"github.com/eddy-stream/eddy/test/eddytest"
	"github.com/eddy-stream/eddy/test/mqtttest"
	"github.com/eddy-stream/eddy/test/notifytest"
	"github.com/eddy-stream/eddy/test/oracle"
)

// diskFullSize is the small real file system data_dir and the file sinks
// live on in the disk-full tests.
const diskFullSize = 128 << 20

// newDiskFullEddy is newEddy with data_dir (and so the file sinks, whose
// paths are relative to it) on a fresh tmpfs of diskFullSize, disk.min_free
// 8 MiB, and a second results sink "rotated" rotating every 4 KiB, in
// rotatedDir ("": data_dir); diskYAML is more of the disk section.
func newDiskFullEddy(t *testing.T, b *mqtttest.Broker, rotatedDir string, diskYAML ...string) (*eddy, string) {
	t.Helper()
	fsDir := diskfull.Tmpfs(t, diskFullSize)
	c := restartConfig()
	c.ExtraSinks = "  - name: rotated\n    from: per_device\n    file:\n      path: " + filepath.Join(rotatedDir, "rotated.jsonl") + "\n      max_size: 4KiB\n      max_files: 1000\n"
	in := eddytest.New(t, eddytest.Config{})
	in.DataDir = filepath.Join(fsDir, "data")
	in.WriteConfig(c.render(in.DataDir, b.URL(), in.HTTPAddr) + "disk:\n  min_free: 8MiB\n" + strings.Join(diskYAML, ""))
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
	var releasedFor, retried []string
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
		case strings.HasPrefix(l.Msg(), "disk full: released the disk reserve for "):
			releasedFor = append(releasedFor, strings.TrimPrefix(strings.SplitN(l.Msg(), ";", 2)[0], "disk full: released the disk reserve for "))
		case strings.HasPrefix(l.Msg(), "checkpoint retried on the disk reserve"):
			retried = append(retried, l.Msg())
		}
	}
	if len(releasedFor) == 0 {
		t.Error("the disk reserve was not released on the full disk")
	}
	if _, ok := e.Runs()[0].FindLog("disk reserve made again: the disk has room"); !ok {
		t.Error("the disk reserve was not made again after the hog went")
	}
	t.Logf("%d checkpoints failed for lack of space, %d state store failures, %d sink failure reports; reserve released for %q, retried checkpoints %q; %d windows, %d lines",
		noSpaceCP, dbFailed, sinkFailed, releasedFor, retried, len(want), got.Lines)
}

// TestDiskFullAtFullRate feeds readings continuously at full rate (a
// QoS 1 stream, eddytest.Feeder.Stream) while a hog fills the file system
// of data_dir and both file sinks: intake pauses (eddy_intake_paused
// {reason="disk_full"} 1, STATUS= to systemd and the overview's status say
// INTAKE PAUSED (disk_full), /healthz 503 degraded), eddy receives messages
// it does not acknowledge while the stream goes on, the spools retry with
// backoff instead of spinning, and when the hog is removed intake resumes
// in the same process; every window is exact against the oracle in both
// sinks, so nothing acknowledged was lost.
func TestDiskFullAtFullRate(t *testing.T) {
	s := newStream(t, simulate.Options{
		Devices: 10, Sites: 3, Count: 30000, Interval: 20 * time.Millisecond, Start: streamStart,
		Disorder: 500 * time.Millisecond, Seed: 53, EndMarker: true,
	})
	body := s.body()
	b := startBroker(t)
	f := newFeeder(t, b, "e2e-feeder")
	e, fsDir := newDiskFullEddy(t, b, "")
	ns := notifytest.Listen(t)
	p := e.StartReady(ns.Env())
	e.Probe(f)
	stream := f.Stream(t, body)
	e.WaitFor("eddy to acknowledge a tenth of the stream", resultsTimeout, func() bool {
		o := e.Overview()
		return len(o.Ingest) > 0 && o.Ingest[0].Acked >= int64(len(body)/10)
	})
	sentAtFill := stream.Sent()
	filled := time.Now()
	hog := diskfull.FillHog(t, fsDir)
	e.waitPaused()
	if m := p.Metrics(); !strings.Contains(m, `eddy_intake_paused{reason="disk_full"} 1`) {
		t.Errorf("/metrics lacks eddy_intake_paused{reason=\"disk_full\"} 1")
	}
	ns.WaitFor(0, resultsTimeout, "STATUS=… INTAKE PAUSED (disk_full", func(m notifytest.Msg) bool {
		return strings.Contains(m.Fields["STATUS"], "INTAKE PAUSED (disk_full")
	})
	if code, body := healthz(t, e, p); code != http.StatusServiceUnavailable || !strings.Contains(body, `"status": "degraded"`) ||
		!strings.Contains(body, "below disk.min_free") || !strings.Contains(body, `"disk_full"`) {
		t.Errorf("/healthz %d %s, want 503 degraded, disk_full, below disk.min_free", code, body)
	}
	if o := e.Overview(); !strings.Contains(o.Status, "INTAKE PAUSED (disk_full") {
		t.Errorf("overview status %q lacks INTAKE PAUSED (disk_full", o.Status)
	}
	e.WaitFor("eddy to receive messages it does not take while paused", resultsTimeout, func() bool {
		in := e.Overview().Ingest[0]
		return in.Received > int64(in.NextOffset)
	})
	sentAtRelease := stream.Sent()
	paused := time.Since(filled)
	if p.Exited() {
		t.Fatalf("eddy exited on a full disk: %v", p.ExitErr())
	}

	hog.Release()
	e.waitResumed()
	if err := stream.Wait(); err != nil {
		t.Fatal(err)
	}
	f.MustSend(t, s.end())
	want := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(s.endTS, restartOOO))
	got := e.waitResults("per_device", []string{"site", "device"}, want)
	compareResults(t, "results after a full disk at full rate", got, want, windowAggs)
	e.WaitFor("the rotating sink to have every window", resultsTimeout, func() bool {
		return collectResults(e.rotatedLines(t, ""), e.appliance(), "per_device", []string{"site", "device"}).Missing(want) == 0
	})
	compareResults(t, "rotating sink after a full disk at full rate", collectResults(e.rotatedLines(t, ""), e.appliance(), "per_device", []string{"site", "device"}), want, windowAggs)
	if p.Exited() || len(e.Runs()) != 1 {
		t.Fatalf("eddy did not survive the full disk in one process (exited %v, runs %d)", p.Exited(), len(e.Runs()))
	}
	// A spool that failed to append retries with backoff (100 ms doubling
	// to 5 s): never more than one retry per 100 ms of the pause.
	spoolFailures := map[string]int{}
	for _, l := range e.Logs() {
		if strings.Contains(l.Raw, "Assertion") {
			t.Errorf("RocksDB assertion in the log: %s", l.Raw)
		}
		if l.Msg() == "spooling staged output failed, retrying" {
			spoolFailures[l.Str("sink")]++
		}
	}
	limit := int(time.Since(filled)/(100*time.Millisecond)) + 1
	for sink, n := range spoolFailures {
		if n > limit {
			t.Errorf("spool of sink %s failed %d times in %v: it spins instead of backing off", sink, n, time.Since(filled))
		}
	}
	t.Logf("stream: %d sent when the hog filled the disk, %d when it was removed %v later; %d windows, %d lines; spool failures %v",
		sentAtFill, sentAtRelease, paused.Round(time.Millisecond), len(want), got.Lines, spoolFailures)
}

// TestDiskFullRestore stops eddy cleanly, removes its working state (as
// every start does) so the start frees nothing, fills its file system to
// zero free and starts it again with a checkpoint to restore: the restore
// surely fails for lack of space (it copies MANIFEST and OPTIONS), eddy
// gives it data_dir/_reserve (a warning naming the restore), the restore is
// retried at once and succeeds on the full disk, intake stays paused until
// there is room to make the reserve again; when the hog is removed the
// reserve is made again and intake resumes in the same process; the
// results over both runs are exact.
func TestDiskFullRestore(t *testing.T) {
	e, p, finish := diskFullRestart(t, 43, "")
	released := "disk full: released the disk reserve for the restore"
	e.WaitFor("the restore to get the disk reserve and the job to run", resultsTimeout, func() bool {
		return slices.ContainsFunc(p.Logs(), func(l eddytest.LogLine) bool { return strings.HasPrefix(l.Msg(), released) }) &&
			slices.ContainsFunc(p.Logs(), func(l eddytest.LogLine) bool { return l.Msg() == "pipeline running" })
	})
	if p.Exited() {
		t.Fatalf("eddy exited restoring on a full disk: %v", p.ExitErr())
	}
	if _, err := os.Stat(e.Path("_reserve")); !os.IsNotExist(err) {
		t.Fatalf("_reserve after its release: %v", err)
	}
	e.waitPaused() // the missing reserve counts toward disk.min_free
	o := e.Overview()
	if r := o.DiskReserve; r == nil || r.Bytes != 0 || !r.Released || r.Releases != 1 {
		t.Fatalf("overview disk_reserve after the release: %+v", r)
	}
	if m := p.Metrics(); !strings.Contains(m, "eddy_disk_reserve_bytes 0\n") {
		t.Errorf("/metrics lacks eddy_disk_reserve_bytes 0")
	}
	if slices.ContainsFunc(p.Logs(), func(l eddytest.LogLine) bool {
		return strings.HasPrefix(l.Msg(), "starting the job failed on a full disk")
	}) {
		t.Error("the restore waited for room although it had the reserve")
	}
	want := o.DiskReserve.Want
	finish(func() {
		e.WaitFor("the disk reserve to be made again", resultsTimeout, func() bool {
			st, err := os.Stat(e.Path("_reserve"))
			r := e.Overview().DiskReserve
			return err == nil && st.Size() == want && r != nil && r.Bytes == want && !r.Released
		})
		if _, ok := p.FindLog("disk reserve made again: the disk has room"); !ok {
			t.Error("no log line saying the reserve was made again")
		}
	})
	t.Logf("restored on a full disk with a %d-byte reserve", want)
}

// TestDiskFullRestoreNoReserve is TestDiskFullRestore with disk.reserve
// "0": the restore fails for lack of space, eddy says it waits for room
// (the log line, every time), stays alive, and restores when the hog is
// removed; the results are exact.
func TestDiskFullRestoreNoReserve(t *testing.T) {
	e, p, finish := diskFullRestart(t, 44, "  reserve: \"0\"\n")
	e.WaitFor("the restore to fail on the full disk and wait for room", resultsTimeout, func() bool {
		return slices.ContainsFunc(p.Logs(), func(l eddytest.LogLine) bool {
			return strings.HasPrefix(l.Msg(), "starting the job failed on a full disk; retrying when it has room") &&
				strings.Contains(l.Str("err"), "no space left on device")
		})
	})
	if p.Exited() {
		t.Fatalf("eddy exited restoring on a full disk: %v", p.ExitErr())
	}
	if _, err := os.Stat(e.Path("_reserve")); !os.IsNotExist(err) {
		t.Fatalf("_reserve with disk.reserve \"0\": %v", err)
	}
	if o := e.Overview(); o.DiskReserve != nil || o.Ready {
		t.Fatalf("overview: disk_reserve %+v, ready %v before the hog is removed", o.DiskReserve, o.Ready)
	}
	finish(nil)
	retries := 0
	for _, l := range p.Logs() {
		if strings.HasPrefix(l.Msg(), "starting the job failed on a full disk") {
			retries++
		}
	}
	t.Logf("%d restores failed on the full disk before it had room", retries)
}

// diskFullRestart runs eddy (disk section extra diskYAML) over the first
// half of restartStream(seed), takes a checkpoint, stops, removes the
// working state, fills the file system to zero free and starts eddy again.
// finish sends the rest while the hog is there, removes the hog, calls
// then (if not nil), waits for the intake to resume and checks the results
// over both runs exactly, in this one process.
func diskFullRestart(t *testing.T, seed int64, diskYAML string) (e *eddy, p *eddytest.Process, finish func(then func())) {
	s := restartStream(t, seed)
	body := s.body()
	half := len(body) / 2
	b := startBroker(t)
	f := newFeeder(t, b, "e2e-feeder")
	e, fsDir := newDiskFullEddy(t, b, "", diskYAML)
	e.StartReady()
	e.Probe(f)
	f.MustSend(t, body[:half])
	e.waitCaughtUp(map[string]int64{"readings": int64(half)})
	e.Trigger()
	e.Stop()
	if len(completedCheckpoints(e.Path("checkpoints"))) == 0 {
		t.Fatal("no checkpoint on disk after the stop")
	}
	// Every start clears the working state; clearing it here keeps that
	// from freeing space on the full disk, so the restore cannot have room.
	if err := os.RemoveAll(e.Path("state")); err != nil {
		t.Fatal(err)
	}
	hog := diskfull.FillHog(t, fsDir)
	if free := diskFree(t, fsDir); free != 0 {
		t.Fatalf("%d bytes free after the hog", free)
	}
	p = e.Start()
	return e, p, func(then func()) {
		t.Helper()
		f.MustSend(t, body[half:]) // the broker holds them
		hog.Release()
		if then != nil {
			then()
		}
		p.WaitReady()
		e.waitResumed()
		f.MustSend(t, s.end())
		want := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(s.endTS, restartOOO))
		got := e.waitResults("per_device", []string{"site", "device"}, want)
		compareResults(t, "results after a restore on a full disk", got, want, windowAggs)
		if p.Exited() {
			t.Fatalf("eddy exited: %v", p.ExitErr())
		}
		if n := len(e.Runs()); n != 2 {
			t.Fatalf("%d runs, want 2 (the full disk restarted eddy)", n)
		}
		t.Logf("%d windows, %d lines", len(want), got.Lines)
	}
}

// diskFree is the free bytes of dir's file system.
func diskFree(t *testing.T, dir string) uint64 {
	t.Helper()
	u, err := diskspace.Statfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return u.Free
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

// healthz is GET /healthz: the code and the body.
func healthz(t *testing.T, e *eddy, p *eddytest.Process) (int, string) {
	t.Helper()
	resp, err := p.Client().Get(e.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
