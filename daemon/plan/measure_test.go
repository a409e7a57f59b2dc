package plan

import (
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/ingestlog"
	"github.com/eddy-stream/eddy/storage/state"
	"github.com/eddy-stream/eddy/upload"
)

// demo is configs/demo.yaml on data directory dir, with upload.remote a
// file:// remote under dir.
func demo(t *testing.T, dir string) *config.Config {
	t.Helper()
	b, err := os.ReadFile("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(b), "data_dir: ./.tmp/demo", "data_dir: "+filepath.Join(dir, "data"), 1)
	y += "upload:\n  remote: file://" + filepath.Join(dir, "remote") + "\n"
	p := filepath.Join(dir, "eddy.yaml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func stream(n int) *simulate.Options {
	return &simulate.Options{Devices: 50, Sites: 5, Batch: 20, Count: n, Interval: time.Millisecond, Seed: 3,
		Start: time.Now().Add(-time.Duration(n) * time.Millisecond).Truncate(time.Millisecond)}
}

// TestMeasureRemoteAndSpools: with upload.remote set, the plan downloads
// the appliance's newest remote checkpoint into its scratch directory and
// restores it, timed; with exactly-once sinks it says how long each spool
// rides out a sink outage at the live output rate, counting what the spool
// holds now.
//
// The remote is filled by the real uploader from the checkpoints of a
// first plan run (kept scratch directory): they are checkpoints of the
// same pipeline, as the running eddy's would be.
func TestMeasureRemoteAndSpools(t *testing.T) {
	dir := t.TempDir()
	cfg := demo(t, dir)
	scratch := filepath.Join(dir, "scratch1")
	first, err := Measure(context.Background(), Options{Config: cfg, Simulate: stream(60_000), Scratch: scratch, Keep: true,
		Duration: 30 * time.Second, LiveRate: 50})
	if err != nil {
		t.Fatal(err)
	}
	if first.Recovery.Remote != "not measured: no upload.remote" || first.Recovery.RemoteCheckpoint != 0 {
		t.Errorf("without Options.Remote: %+v", first.Recovery)
	}

	// Upload the newest checkpoint of that run.
	local, err := checkpoint.Open(filepath.Join(scratch, "data", "checkpoints"), fileutil.OSFS{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	md, _, err := local.Latest(false)
	if err != nil || md == nil {
		t.Fatalf("no checkpoint in the first run's scratch: %v", err)
	}
	remote, err := upload.NewFileStore(filepath.Join(dir, "remote"))
	if err != nil {
		t.Fatal(err)
	}
	up, err := upload.New(upload.Options{Store: remote, Appliance: cfg.ApplianceID, Local: local,
		DataDir: datadir.New(filepath.Join(scratch, "data"))})
	if err != nil {
		t.Fatal(err)
	}
	up.Start()
	up.Offer(md)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // liveness only
	err = up.WaitRemote(ctx, md.ID)
	cancel()
	if cerr := up.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("upload checkpoint %d: %v", md.ID, err)
	}

	// Something waits in the live spool of "archive" already.
	live := datadir.New(cfg.DataDir)
	if err := fileutil.CreateDirAll(live.Spool("archive")); err != nil {
		t.Fatal(err)
	}
	const held = 1 << 20
	if err := os.WriteFile(filepath.Join(live.Spool("archive"), "held"), make([]byte, held), 0o644); err != nil {
		t.Fatal(err)
	}

	rep, err := Measure(context.Background(), Options{Config: cfg, Simulate: stream(60_000), Scratch: filepath.Join(dir, "scratch2"),
		Duration: 30 * time.Second, LiveRate: 50, Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Recovery
	t.Logf("remote: %s; catch-up from it %.3fs; local restore %.3fs", r.Remote, r.RemoteCatchUpSeconds, r.RestoreSeconds)
	if r.RemoteCheckpoint != md.ID || r.RemoteBytes <= 0 || r.RemoteDownloadSeconds <= 0 || r.RemoteRestoreSeconds <= 0 ||
		!strings.HasPrefix(r.Remote, "checkpoint ") {
		t.Errorf("remote recovery: %+v", r)
	}
	if r.RemoteCatchUpSeconds < r.RemoteDownloadSeconds+r.RemoteRestoreSeconds {
		t.Errorf("catch-up from the remote %v below download + restore %v", r.RemoteCatchUpSeconds, r.RemoteDownloadSeconds+r.RemoteRestoreSeconds)
	}

	if len(rep.Spools) != len(cfg.Sinks) {
		t.Fatalf("spools %+v, want one per sink", rep.Spools)
	}
	for _, sp := range rep.Spools {
		t.Logf("spool %s: %d of %d bytes, output %.0f B/s, rides out %.0fs", sp.Sink, sp.Used, sp.MaxSize, sp.OutputBytesPerSecond, sp.RideOutSeconds)
		if sp.MaxSize != int64(config.DefaultSpoolMaxSize) {
			t.Errorf("spool %s: max_size %d", sp.Sink, sp.MaxSize)
		}
		if sp.Sink == "dead" {
			continue // no dead letters in the stream: no output, rides out forever
		}
		want := float64(sp.MaxSize-sp.Used) / sp.OutputBytesPerSecond
		if sp.OutputBytesPerSecond <= 0 || sp.RideOutSeconds <= 0 || sp.RideOutSeconds < want*0.999 || sp.RideOutSeconds > want*1.001 {
			t.Errorf("spool %s: %+v, want a ride-out of %v", sp.Sink, sp, want)
		}
		if sp.Sink == "archive" && sp.Used != held {
			t.Errorf("spool archive: used %d, want %d", sp.Used, held)
		}
	}
}

// TestMeasureMaxMechanics: the plan's maximum replays flat out what it was
// given — the keyed tasks took in exactly the readings of the first two
// thirds of the stream — with checkpointing really on: demo.yaml's 5 s
// interval is capped at PlanCheckpointInterval for the replay (a replay at
// the maximum lasts about a second), checkpoints complete during it, and
// the report keeps the configured interval for the catch-up.
//
// The caps are 10 ms and 0 here, not PlanCheckpointInterval: 1.5M
// readings (1M in the maximum) take about 0.5 s on 2 cores flat out, two
// 250 ms intervals, and a faster box could finish the replay before the
// first one. At 10 ms the first checkpoint is triggered right at the start;
// a slower or loaded box only makes the replay longer.
func TestMeasureMaxMechanics(t *testing.T) {
	caps := planCaps
	planCaps.interval, planCaps.minPause = 10*time.Millisecond, 0
	defer func() { planCaps = caps }()
	dir := t.TempDir()
	cfg := demo(t, dir)
	const total = 1_500_000
	o := &simulate.Options{Devices: 500, Sites: 10, Batch: 50, Count: total, Interval: 40 * time.Microsecond, Seed: 1}
	o.Start = time.Now().Add(-time.Duration(total) * o.Interval).Truncate(time.Millisecond)
	var perMsg []int
	if err := simulate.GenerateMessages(*o, func(m simulate.Message) error {
		perMsg = append(perMsg, len(m.Readings))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, k := range perMsg[:len(perMsg)*2/3] {
		want += int64(k)
	}
	rep, err := Measure(context.Background(), Options{Config: cfg, Simulate: o, Scratch: filepath.Join(dir, "scratch"),
		Duration: 2 * time.Minute, LiveRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Checkpointing
	t.Logf("max %.0f readings/s (%d readings in %.3fs), %d checkpoints every %.3fs", rep.Max.ReadingsPerSecond,
		rep.Max.Readings, rep.Max.Seconds, c.Completed, c.PlanIntervalSeconds)
	if rep.Max.Readings != want {
		t.Errorf("the maximum took in %d readings, want the %d of the first two thirds", rep.Max.Readings, want)
	}
	if c.IntervalSeconds != 5 || c.MinPauseSeconds != 1 {
		t.Errorf("configured interval %vs, min_pause %vs reported; want demo.yaml's 5s, 1s", c.IntervalSeconds, c.MinPauseSeconds)
	}
	if c.PlanIntervalSeconds != planCaps.interval.Seconds() || c.PlanMinPauseSeconds != planCaps.minPause.Seconds() {
		t.Errorf("plan interval %vs, min_pause %vs; want %v, %v", c.PlanIntervalSeconds, c.PlanMinPauseSeconds,
			planCaps.interval, planCaps.minPause)
	}
	if c.Completed < 1 {
		t.Errorf("no checkpoint completed in a maximum of %.3fs at a %.3fs interval", rep.Max.Seconds, c.PlanIntervalSeconds)
	}
	if rep.Recovery.Checkpoint <= c.Completed {
		t.Errorf("phase 2 restored checkpoint %d; want the one after the %d of the replay", rep.Recovery.Checkpoint, c.Completed)
	}
}

// TestPlanCheckpointTiming: the configured timing when it is shorter than
// the plan's caps, the caps otherwise; off stays off.
func TestPlanCheckpointTiming(t *testing.T) {
	for _, tc := range []struct{ interval, pause, wantI, wantP time.Duration }{
		{5 * time.Second, time.Second, PlanCheckpointInterval, PlanCheckpointMinPause},
		{100 * time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond, 10 * time.Millisecond},
		{0, 0, 0, 0},
	} {
		var cfg config.Config
		cfg.Checkpointing.Interval, cfg.Checkpointing.MinPause = tc.interval, tc.pause
		if i, p := planCheckpointTiming(&cfg); i != tc.wantI || p != tc.wantP {
			t.Errorf("interval %v, min_pause %v: plan %v, %v; want %v, %v", tc.interval, tc.pause, i, p, tc.wantI, tc.wantP)
		}
	}
}

// TestPlanGoMemoryLimit: the plan runs under the daemon's Go memory limit
// for the budget plus the planner's copy of the input (without it the
// copy alone exceeds the limit and the collector runs flat out), and puts
// the previous limit back.
func TestPlanGoMemoryLimit(t *testing.T) {
	if os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOMEMLIMIT is set: it wins")
	}
	mem, err := state.NewMemory(state.MemoryOptions{Managed: 64 << 20, WriteBufferRatio: .5, HighPrioPoolRatio: .1, NumDBs: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	prev := debug.SetMemoryLimit(1 << 40)
	defer debug.SetMemoryLimit(prev)
	const held = 300 << 20
	limit, restore := setGoMemoryLimit(mem, held)
	if got := debug.SetMemoryLimit(-1); limit != mem.GoMemoryLimit()+held || got != limit {
		t.Errorf("limit %d in effect %d; want %d + %d", limit, got, mem.GoMemoryLimit(), held)
	}
	restore()
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Errorf("after restore: %d, want %d", got, int64(1<<40))
	}
	rs := []ingestlog.Record{{Topic: "a/b", Payload: make([]byte, 1000)}, {Topic: "c", Payload: nil}}
	if got := heldBytes(rs); got != 1004+2*recordOverhead {
		t.Errorf("heldBytes %d", got)
	}
}
