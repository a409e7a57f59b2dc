package bench

import (
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline"
)

// BenchmarkCheckpointBackPressure (j): checkpoints under sustained
// back-pressure. The demo pipeline (two source subtasks, two keyed
// subtasks, so every keyed subtask aligns two inputs) replays a pre-filled
// log into a keyed stage made slow on purpose (pipeline.JobSpec.BatchCost
// per batch), so the channels into it stay full, while checkpoints are
// taken every 500 ms. Figures over every keyed subtask of every completed
// checkpoint: time to first barrier (start_delay) and alignment duration,
// aligned against unaligned (checkpointing.unaligned: true), plus the
// in-flight bytes persisted per checkpoint in unaligned mode.
func BenchmarkCheckpointBackPressure(b *testing.B) {
	const perMsg, total = 50, 6_000_000
	const measure = 20 * time.Second
	e := newEnv(b, envOptions{managed: 64 << 20, parallelism: 2, checkpoints: true})
	e.appendSim(replayStream(perMsg, total))
	type figs struct{ start, align, persisted, processed []float64 }
	run := func(unaligned bool, stateDir string) (f figs, readings int64) {
		spec := e.spec(2, demoWindow, &pipeline.CheckpointOptions{
			Interval: 500 * time.Millisecond, Mode: "exactly_once", Timeout: time.Minute, NumRetained: 2,
			Incremental: true, History: 1000, Unaligned: unaligned,
		})
		spec.Sources[0].Parallelism = 2
		spec.BatchCost = 4 * time.Millisecond
		spec.State.Dir = stateDir
		r := e.start(e.newJob(spec))
		time.Sleep(measure) // the measured phase: a fixed stretch of back-pressure
		readings = r.figures().KeyedIn
		for _, t := range r.job.Overview() {
			b.Logf("unaligned=%v: %s records in %d out %d", unaligned, t.Name, t.RecordsIn, t.RecordsOut)
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
		if len(f.start) == 0 {
			b.Fatalf("unaligned=%v: no checkpoint completed in %v", unaligned, measure)
		}
		return f, readings
	}
	b.ResetTimer()
	al, alN := run(false, e.dir+"/state-aligned")
	un, unN := run(true, e.dir+"/state-unaligned")
	b.StopTimer()
	b.ReportMetric(quantile(al.start, .5), "aligned_start_p50_ms")
	b.ReportMetric(quantile(al.start, .99), "aligned_start_p99_ms")
	b.ReportMetric(quantile(al.align, .99), "aligned_alignment_p99_ms")
	b.ReportMetric(float64(len(al.processed)), "aligned_checkpoints")
	b.ReportMetric(quantile(al.processed, .5), "aligned_processed_p50_bytes")
	b.ReportMetric(float64(alN)/measure.Seconds(), "aligned_readings/s")
	b.ReportMetric(quantile(un.start, .5), "unaligned_start_p50_ms")
	b.ReportMetric(quantile(un.start, .99), "unaligned_start_p99_ms")
	b.ReportMetric(quantile(un.align, .99), "unaligned_alignment_p99_ms")
	b.ReportMetric(float64(len(un.persisted)), "unaligned_checkpoints")
	b.ReportMetric(quantile(un.persisted, .5), "unaligned_persisted_p50_bytes")
	b.ReportMetric(float64(unN)/measure.Seconds(), "unaligned_readings/s")
	reportLoad(b)
}
