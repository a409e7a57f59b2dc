package bench

import (
	"fmt"
	"math"
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
//
// One run of each takes ~3 s, and on this 2-core VM the same run varied
// 2.2M–3.6M readings/s, and its CPU seconds by ±20 % (2026-12-03: ten
// off runs in a row, 2.97–4.49 s of CPU, the collector ≤ 0.02 s of it),
// and the first run of a pair also warmed what the second found warm. So
// it replays ten pairs, off, on | on, off | off, on | … (each mode first
// and second equally often, each run on its own state directory and a
// fresh log), and compares the summed times: ratio is the on runs'
// readings per second over the off runs'. With five pairs the ratio came
// out 0.818–1.038 for the same code; ten gave 0.976 (CPU per reading 532
// on, 515 off). pair_ratio_min/max are the lowest and highest of the
// pairs' own ratios: how much one pair alone would have said; best_ratio
// is the fastest off run's time over the fastest on run's (interference
// from the rest of the box only ever slows a run). Each run's time, CPU
// and checkpoints are logged.
func BenchmarkCheckpointOverhead(b *testing.B) {
	const perMsg, total, pairs = 50, 8_000_000, 10
	e := newEnv(b, envOptions{managed: 64 << 20, parallelism: 2, checkpoints: true})
	_, readings := e.appendSim(replayStream(perMsg, total))
	cpOn := &pipeline.CheckpointOptions{
		Interval: time.Second, Mode: "exactly_once", Timeout: time.Minute, NumRetained: 2, Incremental: true,
	}
	runs := 0
	run := func(cp *pipeline.CheckpointOptions) (el time.Duration, cpu float64, completed int64) {
		runs++
		if runs > 1 { // an earlier on run's checkpoints truncated the log's front
			b.StopTimer()
			e.freshLog(fmt.Sprintf("log-%d", runs))
			e.appendSim(replayStream(perMsg, total))
			b.StartTimer()
		}
		spec := e.spec(2, demoWindow, cp)
		spec.State.Dir = fmt.Sprintf("%s/state-%d", e.dir, runs)
		cpu0 := cpuSeconds(os.Getpid())
		r := e.start(e.newJob(spec))
		el = r.waitKeyed(readings, 10*time.Minute)
		cpu = cpuSeconds(os.Getpid()) - cpu0
		if st := r.job.Stats(); st != nil {
			completed = st.Overview().Counts.Completed
		}
		r.stop()
		b.Logf("run %d on=%v: %v, cpu %.2f s, %d checkpoints", runs, cp != nil, el, cpu, completed)
		if err := os.RemoveAll(spec.State.Dir); err != nil {
			b.Fatal(err)
		}
		return el, cpu, completed
	}
	var offEl, onEl time.Duration
	offBest, onBest := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	var offCPU, onCPU float64
	var n int64
	pairMin, pairMax := math.Inf(1), math.Inf(-1)
	b.ResetTimer()
	for pair := 0; pair < pairs; pair++ {
		var pOff, pOn time.Duration
		for i := 0; i < 2; i++ {
			if (pair+i)%2 == 0 { // off, on | on, off | off, on | …
				el, cpu, _ := run(nil)
				pOff, offCPU = el, offCPU+cpu
			} else {
				el, cpu, c := run(cpOn)
				pOn, onCPU, n = el, onCPU+cpu, n+c
			}
		}
		offEl, onEl = offEl+pOff, onEl+pOn
		offBest, onBest = min(offBest, pOff), min(onBest, pOn)
		r := pOff.Seconds() / pOn.Seconds()
		pairMin, pairMax = math.Min(pairMin, r), math.Max(pairMax, r)
	}
	b.StopTimer()
	b.ReportMetric(pairs*float64(readings)/offEl.Seconds(), "off_readings/s")
	b.ReportMetric(pairs*float64(readings)/onEl.Seconds(), "on_readings/s")
	metric(b, offEl.Seconds()/onEl.Seconds(), "ratio")
	metric(b, offBest.Seconds()/onBest.Seconds(), "best_ratio")
	metric(b, pairMin, "pair_ratio_min")
	metric(b, pairMax, "pair_ratio_max")
	metric(b, offCPU*1e9/(pairs*float64(readings)), "off_cpu_ns/reading")
	metric(b, onCPU*1e9/(pairs*float64(readings)), "on_cpu_ns/reading")
	b.ReportMetric(float64(n), "checkpoints")
	reportLoad(b)
}
