package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/daemon/plan"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/storage/ingestlog"
)

// BenchmarkPlanVsReplay (m): the maximum `eddy plan` measures (plan.Measure
// in process, not niced, on configs/demo.yaml with its checkpointing)
// against the (d) replay (BenchmarkPipelineReplay's setup: the demo
// pipeline, checkpointing off) of the same stream: the simulator's
// readings_per_msg=50 stream of (d), of which the plan's maximum replays
// the first two thirds, and so does the replay here. One after the other
// on the same box; ratio = plan ÷ replay (checkpointing costs the plan a
// little, see (e)).
func BenchmarkPlanVsReplay(b *testing.B) {
	const perMsg, total = 50, 3_000_000
	o := replayStream(perMsg, total)
	// Event times end now, as `eddy plan --simulate` makes them: with the
	// demo's event_time.idle_advance an old stream would be late.
	o.Start = time.Now().Add(-time.Duration(total) * o.Interval).Truncate(time.Millisecond)

	// (d): the first two thirds of the messages, flat out.
	e := newEnv(b, envOptions{managed: 64 << 20, parallelism: 2})
	var rs []ingestlog.Record
	var perRec []int
	if err := simulate.GenerateMessages(o, func(m simulate.Message) error {
		rs = append(rs, ingestlog.Record{Timestamp: 1, Topic: m.Topic, Payload: m.Payload, QoS: 1})
		perRec = append(perRec, len(m.Readings))
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	n := len(rs) * 2 / 3
	var readings int64
	for _, k := range perRec[:n] {
		readings += int64(k)
	}
	for i := 0; i < n; i += 1024 {
		if _, err := e.log.AppendBatch(rs[i:min(i+1024, n)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.log.Sync(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	r := e.start(e.newJob(e.spec(2, demoWindow, nil)))
	el := r.waitKeyed(readings, 5*time.Minute)
	r.stop()
	replay := float64(readings) / el.Seconds()

	// The plan on configs/demo.yaml, over the whole stream.
	y, err := os.ReadFile("../../configs/demo.yaml")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	cfgPath := filepath.Join(dir, "eddy.yaml")
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(y), "data_dir: ./.tmp/demo", "data_dir: "+filepath.Join(dir, "data"), 1)), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	rep, err := plan.Measure(context.Background(), plan.Options{Config: cfg, Simulate: &o, Scratch: filepath.Join(dir, "scratch"),
		Duration: 5 * time.Minute, LiveRate: 1})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if rep.Max.Readings != readings {
		b.Logf("plan's maximum took in %d readings, the replay %d", rep.Max.Readings, readings)
	}
	b.ReportMetric(rep.Max.ReadingsPerSecond, "plan_max_readings/s")
	b.ReportMetric(replay, "replay_readings/s")
	b.ReportMetric(rep.Max.ReadingsPerSecond/replay, "ratio")
	b.ReportMetric(float64(rep.Checkpointing.Completed), "plan_checkpoints")
	reportLoad(b)
}
