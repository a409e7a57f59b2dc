package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/daemon/plan"
	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/pipeline/sink"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/ingestlog"
	"github.com/eddy-stream/eddy/storage/state"
)

// countSink is the in-process sink of the replay benchmarks: it counts what
// it is given (memSink of pipeline/job_test.go without keeping payloads,
// so memory figures are eddy's own).
type countSink struct {
	n, bytes atomic.Int64
}

func (s *countSink) Write(_ context.Context, outs []sink.Output) error {
	s.n.Add(int64(len(outs)))
	for _, o := range outs {
		s.bytes.Add(int64(len(o.Payload)))
	}
	return nil
}
func (s *countSink) Flush(context.Context) error { return nil }
func (s *countSink) Close() error                { return nil }

// env is an in-process eddy: a real ingest log, one RocksDB memory budget,
// optionally a local checkpoint store, and counting sinks.
type env struct {
	b      *testing.B
	dir    string
	log    *ingestlog.Log
	logDir string
	mem    *state.Memory
	store  *checkpoint.Store
	out    *countSink
	dead   *countSink
	times  *logTimes
	// buildMem is the memory at the peak of the last buildState.
	buildMem memSample
	// buildGCPct is the Go collector's share of the process's CPU during
	// the last buildState.
	buildGCPct float64
}

// logTimes collects the "took" durations the state package logs for
// native checkpoints and restores, which split the figures of a
// checkpoint's sync phase and of a recovery.
type logTimes struct {
	mu   sync.Mutex
	took map[string][]time.Duration // by log message
}

const (
	msgCreatedCheckpoint  = "state: created checkpoint"
	msgRestoredCheckpoint = "state: restored checkpoint"
	msgSyncPhase          = "pipeline: sync phase" // a keyed task's; pipeline.msgSyncPhase
)

func (t *logTimes) Enabled(context.Context, slog.Level) bool { return true }
func (t *logTimes) WithAttrs([]slog.Attr) slog.Handler       { return t }
func (t *logTimes) WithGroup(string) slog.Handler            { return t }
func (t *logTimes) Handle(_ context.Context, r slog.Record) error {
	if r.Message != msgCreatedCheckpoint && r.Message != msgRestoredCheckpoint && r.Message != msgSyncPhase {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "write", "wait": // of a sync phase: its parts
			t.mu.Lock()
			t.took[r.Message+" "+a.Key] = append(t.took[r.Message+" "+a.Key], a.Value.Duration())
			t.mu.Unlock()
		case "took":
			t.mu.Lock()
			t.took[r.Message] = append(t.took[r.Message], a.Value.Duration())
			t.mu.Unlock()
		case "flush": // of a checkpoint: the memtable flush part of took
			t.mu.Lock()
			t.took[r.Message+" flush"] = append(t.took[r.Message+" flush"], a.Value.Duration())
			t.mu.Unlock()
		}
		return true
	})
	return nil
}

// take returns and forgets the durations logged with msg, in ms.
func (t *logTimes) take(msg string) []float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	ds := t.took[msg]
	delete(t.took, msg)
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d.Microseconds()) / 1000
	}
	return out
}

type envOptions struct {
	managed     int64 // RocksDB budget (state.memory.managed)
	parallelism int
	checkpoints bool
}

func newEnv(b *testing.B, o envOptions) *env {
	b.Helper()
	e := &env{b: b, dir: b.TempDir(), out: &countSink{}, dead: &countSink{},
		times: &logTimes{took: map[string][]time.Duration{}}}
	e.openLog(filepath.Join(e.dir, "ingest"))
	b.Cleanup(func() { e.log.Close() })
	var err error
	if e.mem, err = state.NewMemory(state.MemoryOptions{
		Managed: o.managed, WriteBufferRatio: .5, HighPrioPoolRatio: .1, NumDBs: max(o.parallelism, 1),
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.mem.Close)
	// As the daemon does (newMemory); GOMEMLIMIT=off in the environment
	// measures without.
	prev := debug.SetMemoryLimit(-1)
	state.SetGoMemoryLimit(e.mem)
	b.Cleanup(func() { debug.SetMemoryLimit(prev) })
	if o.checkpoints {
		if e.store, err = checkpoint.Open(filepath.Join(e.dir, "checkpoints"), fileutil.OSFS{}, nil); err != nil {
			b.Fatal(err)
		}
	}
	return e
}

// demoStages are the stages of configs/demo.yaml: filter, map, and a keyed
// tumbling window with four aggregates.
func demoStages(w pipeline.WindowSpec) []pipeline.StageSpec {
	return []pipeline.StageSpec{
		{Name: "valid", Filter: "temperature > -50 && temperature < 150"},
		{Name: "converted", Map: map[string]string{"temp_f": "temperature * 1.8 + 32"}},
		{Name: "per_device", KeyBy: []string{"site", "device"}, Window: &w, Aggregates: map[string]string{
			"count": "count()", "avg_temp": "avg(temperature)", "max_temp": "max(temperature)", "avg_temp_f": "avg(temp_f)",
		}},
	}
}

var demoWindow = pipeline.WindowSpec{Type: "tumbling", Size: 10 * time.Second, AllowedLateness: 5 * time.Second}

// spec is the demo job over e's log; cp.Interval > 0 or a manual trigger
// needs envOptions.checkpoints.
func (e *env) spec(p int, w pipeline.WindowSpec, cp *pipeline.CheckpointOptions) pipeline.JobSpec {
	s := pipeline.JobSpec{
		Name: "bench", Parallelism: p, MaxParallelism: 128,
		Sources: []pipeline.SourceSpec{{
			Name: "readings", Log: e.log, TopicFields: []string{"", "site", "device", ""},
			EventTime: pipeline.EventTimeSpec{Field: "ts", Format: "auto", MaxOutOfOrderness: 2 * time.Second},
		}},
		Stages: demoStages(w),
		Sinks: []pipeline.SinkSpec{
			{Name: "archive", From: "per_device", Sink: e.out},
			{Name: "dead", DeadLetters: true, Sink: e.dead},
		},
		State: pipeline.StateSpec{Dir: filepath.Join(e.dir, "state"), Memory: e.mem},
	}
	if cp != nil {
		s.Checkpoints = e.store
		s.Checkpointing = *cp
	}
	return s
}

// appendSim appends the simulator's stream for o to the log and returns
// the number of messages and good readings appended.
func (e *env) openLog(dir string) {
	e.b.Helper()
	var err error
	e.logDir = dir
	if e.log, err = ingestlog.Open(ingestlog.Options{
		Dir: dir, SegmentSize: 64 << 20, MaxSize: 64 << 30, SyncInterval: 2 * time.Millisecond,
	}); err != nil {
		e.b.Fatal(err)
	}
}

// freshLog replaces e's ingest log, whose jobs have stopped, by an empty
// one: a job's checkpoints truncate the log's front, so a job that follows
// another on the same log would start where that one stopped.
func (e *env) freshLog(name string) {
	e.b.Helper()
	old := e.logDir
	if err := e.log.Close(); err != nil {
		e.b.Fatal(err)
	}
	if err := os.RemoveAll(old); err != nil {
		e.b.Fatal(err)
	}
	e.openLog(filepath.Join(e.dir, name))
}

func (e *env) appendSim(o simulate.Options) (msgs, readings int64) {
	e.b.Helper()
	batch := make([]ingestlog.Record, 0, 1024)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if _, err := e.log.AppendBatch(batch); err != nil {
			e.b.Fatal(err)
		}
		batch = batch[:0]
	}
	err := simulate.GenerateMessages(o, func(m simulate.Message) error {
		batch = append(batch, ingestlog.Record{Timestamp: 1, Topic: m.Topic, Payload: m.Payload, QoS: 1})
		msgs++
		readings += int64(len(m.Readings))
		if len(batch) == cap(batch) {
			flush()
		}
		return nil
	})
	if err != nil {
		e.b.Fatal(err)
	}
	flush()
	if err := e.log.Sync(); err != nil {
		e.b.Fatal(err)
	}
	return msgs, readings
}

// appendRaw appends messages with the given topic and payloads.
func (e *env) appendRaw(topic string, payloads [][]byte) {
	e.b.Helper()
	batch := make([]ingestlog.Record, 0, len(payloads))
	for _, p := range payloads {
		batch = append(batch, ingestlog.Record{Timestamp: 1, Topic: topic, Payload: p, QoS: 1})
	}
	for len(batch) > 0 {
		n := min(len(batch), 1024)
		if _, err := e.log.AppendBatch(batch[:n]); err != nil {
			e.b.Fatal(err)
		}
		batch = batch[n:]
	}
	if err := e.log.Sync(); err != nil {
		e.b.Fatal(err)
	}
}

// running is a started job: the pipeline replay of daemon/plan, which
// `eddy plan` measures with.
type running struct {
	e *env
	*plan.Replay
	job *pipeline.Job
}

func (e *env) newJob(spec pipeline.JobSpec) *pipeline.Job {
	e.b.Helper()
	job, err := pipeline.NewJob(spec, nil, slog.New(e.times))
	if err != nil {
		e.b.Fatal(err)
	}
	return job
}

func (e *env) start(job *pipeline.Job) *running {
	r := &running{e: e, Replay: plan.StartReplay(job), job: job}
	e.b.Cleanup(r.stopQuiet)
	return r
}

func (r *running) figures() plan.Figures { return r.Figures() }

// waitKeyed waits until the keyed tasks have taken in want readings (late
// and dead-lettered ones count as taken) and returns the time since start.
func (r *running) waitKeyed(want int64, timeout time.Duration) time.Duration {
	r.e.b.Helper()
	el, err := r.Wait(timeout, 2*time.Millisecond, func(f plan.Figures) bool { return f.Processed() >= want })
	if err != nil {
		r.e.b.Fatalf("keyed tasks took in %+v of %d readings: %v", r.figures(), want, err)
	}
	return el
}

// stop cancels the job, waits for it to drain, and closes it.
func (r *running) stop() {
	r.e.b.Helper()
	if err := r.Stop(); err != nil {
		r.e.b.Fatalf("job: %v", err)
	}
}

func (r *running) stopQuiet() { r.Stop() }

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) int64 { return plan.DirBytes(dir) }

// phaseProfile writes a CPU profile of the measured phase of a benchmark
// to $EDDY_BENCH_PROFILE/<benchmark>.cpu.prof when that variable names a
// directory (go test -cpuprofile covers set-up and data generation too),
// and a heap profile at its end to <benchmark>.heap.prof.
func phaseProfile(b *testing.B) (stop func()) {
	dir := os.Getenv("EDDY_BENCH_PROFILE")
	if dir == "" {
		return func() {}
	}
	path := benchFile(dir, b, ".cpu.prof")
	f, err := os.Create(path)
	if err != nil {
		b.Logf("profile: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Logf("profile: %v", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		b.Logf("CPU profile of the measured phase: %s", path)
		heap := benchFile(dir, b, ".heap.prof")
		if err := writeHeapProfile(heap); err == nil {
			b.Logf("heap profile at the end of the measured phase: %s", heap)
		}
	}
}

// benchFile is the file in dir for benchmark b's profile: its name, with
// "/" and "=" replaced, and suffix.
func benchFile(dir string, b *testing.B, suffix string) string {
	return filepath.Join(dir, strings.NewReplacer("/", "_", "=", "-").Replace(b.Name())+suffix)
}

// quantile is the R-7 quantile of vs (the definition the checkpoint
// statistics use).
func quantile(vs []float64, p float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	h := p * float64(len(s)-1)
	lo := int(h)
	if lo+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[lo] + (h-float64(lo))*(s[lo+1]-s[lo])
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// deviceID is a device name shaped like a real one (a UUID-sized id), so
// keys are as long as in the field.
func deviceID(i int) string {
	return fmt.Sprintf("dev-%08x-4b1e-9c3a-%012d", i*2654435761%(1<<32), i)
}

// bulkPayloads makes messages of per readings each, reading j of the whole
// run going to device keys[j % len(keys)] with event time ts(j).
func bulkPayloads(keys []int, total, per int, ts func(j int) int64, seed uint64) [][]byte {
	out := make([][]byte, 0, (total+per-1)/per)
	var buf []byte
	x := seed | 1
	for j := 0; j < total; j++ {
		if j%per == 0 {
			if buf != nil {
				out = append(out, append(buf, ']'))
			}
			buf = make([]byte, 0, per*110)
			buf = append(buf, '[')
		} else {
			buf = append(buf, ',')
		}
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		k := keys[j%len(keys)]
		buf = append(buf, `{"site":"site-`...)
		buf = strconv.AppendInt(buf, int64(k%16), 10)
		buf = append(buf, `","device":"`...)
		buf = append(buf, deviceID(k)...)
		buf = append(buf, `","ts":`...)
		buf = strconv.AppendInt(buf, ts(j), 10)
		buf = append(buf, `,"temperature":`...)
		buf = strconv.AppendFloat(buf, 15+float64(x%2000)/100, 'f', 2, 64)
		buf = append(buf, `,"humidity":`...)
		buf = strconv.AppendFloat(buf, 30+float64((x>>16)%4000)/100, 'f', 2, 64)
		buf = append(buf, '}')
	}
	if buf != nil {
		out = append(out, append(buf, ']'))
	}
	return out
}

func joinInts(xs []int64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatInt(x, 10)
	}
	return strings.Join(s, ",")
}
