package bench

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/pipeline/sink"
)

// BenchmarkCheckpointBackPressure (j): checkpoints under sustained
// back-pressure. The demo pipeline (two source subtasks, two keyed
// subtasks, so every keyed subtask aligns two inputs) replays a pre-filled
// log while checkpoints are taken every 500 ms, in two cases:
//
//   - slow stage: the keyed stage is made slow on purpose
//     (pipeline.JobSpec.BatchCost per batch), so the channels into it stay
//     full;
//   - slow sink: the results sink waits 40 ms per output (sink.Slow; the
//     stage emits some 500 results per 250k readings) and has a 64 KiB
//     spool. In exactly-once mode a sink writes from its release
//     loop, not from the task, so it back-pressures through its spool: when
//     the spool is full the sources stop reading (the daemon pauses intake)
//     until the sink drains it. The channels between tasks do not fill, and
//     time to first barrier should stay short aligned or not.
//
// Figures over every keyed subtask of every completed checkpoint: time to
// first barrier (start_delay) and alignment duration, aligned against
// unaligned (checkpointing.unaligned: true), plus the in-flight bytes
// persisted per checkpoint in unaligned mode; for the slow sink (prefix
// slowsink_) also the share of the run its spool was full.
func BenchmarkCheckpointBackPressure(b *testing.B) {
	const perMsg, total = 50, 6_000_000
	const measure = 20 * time.Second
	e := newEnv(b, envOptions{managed: 64 << 20, parallelism: 2, checkpoints: true})
	type figs struct {
		start, align, persisted, processed []float64
		readings                           int64
		spoolFull                          float64 // share of samples with the spool full
	}
	run := func(unaligned, slowSink bool, stateDir string) (f figs) {
		// Each run on a log of its own: a job's checkpoints truncate
		// the log's front, so a second job on the first one's log would
		// run out of input part way.
		e.freshLog("ingest-" + filepath.Base(stateDir))
		e.appendSim(replayStream(perMsg, total))
		spec := e.spec(2, demoWindow, &pipeline.CheckpointOptions{
			Interval: 500 * time.Millisecond, Mode: "exactly_once", Timeout: time.Minute, NumRetained: 2,
			Incremental: true, History: 1000, Unaligned: unaligned,
		})
		spec.Sources[0].Parallelism = 2
		if slowSink {
			spec.Sinks[0].Sink = sink.Slow(e.out, 40*time.Millisecond)
			spec.Sinks[0].Spool = &pipeline.SpoolSpec{Dir: stateDir + "-spool", MaxSize: 64 << 10}
		} else {
			spec.BatchCost = 4 * time.Millisecond
		}
		spec.State.Dir = stateDir
		r := e.start(e.newJob(spec))
		// The measured phase: a fixed stretch of back-pressure, the spool
		// sampled on the way.
		var full, samples int
		for end := time.Now().Add(measure); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			for _, st := range r.job.SinkStates() {
				if st.Spool != nil {
					samples++
					if st.Spool.Full {
						full++
					}
				}
			}
		}
		if samples > 0 {
			f.spoolFull = float64(full) / float64(samples)
		}
		f.readings = r.figures().KeyedIn
		for _, t := range r.job.Overview() {
			b.Logf("unaligned=%v slow sink=%v: %s records in %d out %d", unaligned, slowSink, t.Name, t.RecordsIn, t.RecordsOut)
		}
		st := r.job.Stats()
		r.stop()
		for _, h := range st.Overview().History {
			d, ok := st.Details(h.ID)
			if !ok || d.Status != pipeline.StatusCompleted {
				continue
			}
			for _, s := range keyedSubtasks(d) {
				f.start = append(f.start, float64(s.StartDelay))
				f.align = append(f.align, float64(s.Alignment.Duration))
			}
			f.persisted = append(f.persisted, float64(d.PersistedData))
			f.processed = append(f.processed, float64(d.ProcessedData))
		}
		slices.Sort(f.start)
		b.Logf("unaligned=%v slow sink=%v: start delays (ms) %v", unaligned, slowSink, f.start)
		if len(f.start) == 0 {
			b.Fatalf("unaligned=%v slow sink=%v: no checkpoint completed in %v", unaligned, slowSink, measure)
		}
		return f
	}
	report := func(prefix string, f figs, spool bool) {
		b.ReportMetric(quantile(f.start, .5), prefix+"start_p50_ms")
		b.ReportMetric(quantile(f.start, .99), prefix+"start_p99_ms")
		b.ReportMetric(slices.Max(f.start), prefix+"start_max_ms")
		b.ReportMetric(float64(len(f.start)), prefix+"start_samples")
		b.ReportMetric(quantile(f.align, .99), prefix+"alignment_p99_ms")
		b.ReportMetric(float64(len(f.processed)), prefix+"checkpoints")
		b.ReportMetric(quantile(f.processed, .5), prefix+"processed_p50_bytes")
		b.ReportMetric(quantile(f.persisted, .5), prefix+"persisted_p50_bytes")
		b.ReportMetric(float64(f.readings)/measure.Seconds(), prefix+"readings/s")
		if spool {
			b.ReportMetric(f.spoolFull, prefix+"spool_full_share")
		}
	}
	b.ResetTimer()
	al := run(false, false, e.dir+"/state-aligned")
	un := run(true, false, e.dir+"/state-unaligned")
	sal := run(false, true, e.dir+"/state-slowsink-aligned")
	sun := run(true, true, e.dir+"/state-slowsink-unaligned")
	b.StopTimer()
	report("aligned_", al, false)
	report("unaligned_", un, false)
	report("slowsink_aligned_", sal, true)
	report("slowsink_unaligned_", sun, true)
	reportLoad(b)
}
