package bench

import (
	"os"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/simulate"
)

// replayStream is the simulated fleet of the replay benchmarks: 500
// devices on 10 sites, one reading every 40 µs of event time (so one
// device's 50-reading message spans 1 s, inside the 2 s out-of-orderness:
// nothing is late), 10 s windows of 50 readings per device.
func replayStream(perMsg, readings int) simulate.Options {
	return simulate.Options{
		Devices: 500, Sites: 10, Batch: perMsg, Count: readings,
		Interval: 40 * time.Microsecond, Seed: 1,
	}
}

// BenchmarkPipelineReplay (d): the demo pipeline alone, in process,
// replaying a pre-filled ingest log (checkpointing off, parallelism 2):
// from Run until both keyed subtasks have taken in every reading. The demo
// has one source subtask (sources[].parallelism 1); the last case gives
// the source two.
func BenchmarkPipelineReplay(b *testing.B) {
	for _, c := range []struct {
		name             string
		perMsg, readings int
		srcParallelism   int
	}{
		{"readings_per_msg=50", 50, 3_000_000, 1},
		{"readings_per_msg=1", 1, 600_000, 1},
		{"readings_per_msg=50,source_parallelism=2", 50, 3_000_000, 2},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b, envOptions{managed: 64 << 20, parallelism: 2})
			msgs, readings := e.appendSim(replayStream(c.perMsg, c.readings))
			resetPeakRSS(b)
			spec := e.spec(2, demoWindow, nil)
			spec.Sources[0].Parallelism = c.srcParallelism
			job := e.newJob(spec)
			b.ResetTimer()
			prof := phaseProfile(b)
			cpu0 := cpuSeconds(os.Getpid())
			r := e.start(job)
			el := r.waitKeyed(readings, 5*time.Minute)
			cpu := cpuSeconds(os.Getpid()) - cpu0
			prof()
			b.StopTimer()
			f := r.figures()
			r.stop()
			metric(b, float64(readings)/el.Seconds(), "readings/s")
			b.ReportMetric(float64(msgs)/el.Seconds(), "msgs/s")
			b.ReportMetric(float64(readings), "readings")
			metric(b, cpu*1e9/float64(readings), "cpu_ns/reading") // the test process: the pipeline, GC, RocksDB
			b.ReportMetric(peakRSSMiB(b, "self"), "peak_rss_MiB")
			b.ReportMetric(float64(f.Dead+f.Late), "dead+late")
			b.ReportMetric(float64(e.out.n.Load()), "results")
			reportLoad(b)
		})
	}
}

// BenchmarkCheckpointOverhead (e): the same replay with checkpoints every
// second (exactly-once, incremental, native RocksDB checkpoints) against
// checkpointing off; ratio is throughput with checkpoints / without.
func BenchmarkCheckpointOverhead(b *testing.B) {
	const perMsg, total = 50, 8_000_000
	e := newEnv(b, envOptions{managed: 64 << 20, parallelism: 2, checkpoints: true})
	_, readings := e.appendSim(replayStream(perMsg, total))
	run := func(cp *pipeline.CheckpointOptions, stateDir string) (rate float64, completed int64) {
		spec := e.spec(2, demoWindow, cp)
		spec.State.Dir = stateDir
		r := e.start(e.newJob(spec))
		el := r.waitKeyed(readings, 10*time.Minute)
		if st := r.job.Stats(); st != nil {
			completed = st.Overview().Counts.Completed
		}
		r.stop()
		return float64(readings) / el.Seconds(), completed
	}
	b.ResetTimer()
	off, _ := run(nil, e.dir+"/state-off")
	on, n := run(&pipeline.CheckpointOptions{
		Interval: time.Second, Mode: "exactly_once", Timeout: time.Minute, NumRetained: 2, Incremental: true,
	}, e.dir+"/state-on")
	b.StopTimer()
	b.ReportMetric(off, "off_readings/s")
	b.ReportMetric(on, "on_readings/s")
	metric(b, on/off, "ratio")
	b.ReportMetric(float64(n), "checkpoints")
	reportLoad(b)
}
