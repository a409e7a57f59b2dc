package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eddy-stream/eddy/pipeline/sink"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/ingestlog"
	"github.com/eddy-stream/eddy/storage/state"
	"github.com/eddy-stream/eddy/test/oracle"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memSink collects outputs in memory.
type memSink struct {
	mu   sync.Mutex
	outs []sink.Output
}

func (s *memSink) Write(_ context.Context, outs []sink.Output) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range outs {
		o.Payload = append([]byte(nil), o.Payload...)
		s.outs = append(s.outs, o)
	}
	return nil
}
func (s *memSink) Flush(context.Context) error { return nil }
func (s *memSink) Close() error                { return nil }

func (s *memSink) snapshot() []sink.Output {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sink.Output(nil), s.outs...)
}

// reading is a test reading on topic sensors/<site>/<dev>/telemetry.
type reading struct {
	site, dev string
	ts        int64
	temp      float64
}

func (r reading) msg() (string, []byte) {
	b, _ := json.Marshal(map[string]any{"ts": r.ts, "temperature": r.temp})
	return fmt.Sprintf("sensors/%s/%s/telemetry", r.site, r.dev), b
}

type harness struct {
	t     *testing.T
	dir   string
	log   *ingestlog.Log
	mem   *state.Memory
	out   *memSink
	dead  *memSink
	store *checkpoint.Store
}

func newHarness(t *testing.T, checkpoints bool) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), out: &memSink{}, dead: &memSink{}}
	var err error
	if h.log, err = ingestlog.Open(ingestlog.Options{
		Dir: filepath.Join(h.dir, "ingest"), SegmentSize: 1 << 20, MaxSize: 64 << 20, SyncInterval: time.Millisecond,
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.log.Close() })
	if h.mem, err = state.NewMemory(state.MemoryOptions{Managed: 32 << 20, WriteBufferRatio: .5, HighPrioPoolRatio: .1, NumDBs: 4}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.mem.Close)
	if checkpoints {
		if h.store, err = checkpoint.Open(filepath.Join(h.dir, "checkpoints"), fileutil.OSFS{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *harness) appendMsgs(topicPayload ...[2]string) {
	h.t.Helper()
	for _, tp := range topicPayload {
		if _, err := h.log.Append(&ingestlog.Record{Timestamp: 1, Topic: tp[0], Payload: []byte(tp[1]), QoS: 1}); err != nil {
			h.t.Fatal(err)
		}
	}
	if err := h.log.Sync(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) appendReadings(rs []reading) {
	h.t.Helper()
	for _, r := range rs {
		topic, p := r.msg()
		h.appendMsgs([2]string{topic, string(p)})
	}
}

func (h *harness) spec(p int, w WindowSpec) JobSpec {
	s := JobSpec{
		Name: "t", Parallelism: p, MaxParallelism: 128, BatchSize: 7,
		Sources: []SourceSpec{{
			Name: "readings", Log: h.log, TopicFields: []string{"", "site", "device", ""},
			EventTime: EventTimeSpec{Field: "ts", MaxOutOfOrderness: 2 * time.Second},
		}},
		Stages: []StageSpec{
			{Name: "valid", Filter: "temperature > -50 && temperature < 150"},
			{Name: "win", KeyBy: []string{"site", "device"}, Window: &w,
				Aggregates: map[string]string{"n": "count()", "avg": "avg(temperature)", "hi": "max(temperature)", "lo": "min(temperature)", "first": "first(temperature)", "last": "last(temperature)"}},
		},
		Sinks: []SinkSpec{
			{Name: "out", From: "win", Topic: "results/{site}/{device}", Sink: h.out},
			{Name: "dead", DeadLetters: true, Sink: h.dead},
		},
		State: StateSpec{Dir: filepath.Join(h.dir, "state"), Memory: h.mem, WriteCacheEntries: 3},
	}
	if h.store != nil {
		s.Checkpoints = h.store
		s.Checkpointing = CheckpointOptions{Interval: 50 * time.Millisecond, Mode: "exactly_once", NumRetained: 2, Incremental: true, Timeout: 10 * time.Second}
	}
	return s
}

// run runs the job until cond holds for the sink contents, then stops it.
func (h *harness) run(spec JobSpec, cond func() bool) *Job {
	h.t.Helper()
	os.RemoveAll(spec.State.Dir)
	job, err := NewJob(spec, nil, testLogger())
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- job.Run(ctx) }()
	// A bound for liveness only (a loaded machine is slow), never for a result.
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		select {
		case err := <-done: // the job ended by itself: say why
			job.Close()
			h.t.Fatalf("job ended before the condition held: %v; %d outputs, %d dead letters", err, len(h.out.snapshot()), len(h.dead.snapshot()))
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			err := <-done
			job.Close()
			for _, d := range h.dead.snapshot() {
				h.t.Logf("dead letter: %s", d.Payload)
			}
			var counts any = "off"
			if s := job.Stats(); s != nil {
				counts = s.Overview().Counts
			}
			h.t.Fatalf("condition not met in time; %d outputs, %d dead letters; job: %v; checkpoints %+v",
				len(h.out.snapshot()), len(h.dead.snapshot()), err, counts)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		h.t.Fatal(err)
	}
	if err := job.Close(); err != nil {
		h.t.Fatal(err)
	}
	return job
}

type result struct {
	ID          string  `json:"id"`
	Site        string  `json:"site"`
	Device      string  `json:"device"`
	WindowStart int64   `json:"window_start"`
	WindowEnd   int64   `json:"window_end"`
	N           float64 `json:"n"`
	Avg         float64 `json:"avg"`
	Hi          float64 `json:"hi"`
	Lo          float64 `json:"lo"`
	First       float64 `json:"first"`
	Last        float64 `json:"last"`
	Firing      int     `json:"firing"`
}

// finals decodes outputs and keeps the last firing per window, checking
// that outputs with the same id are identical.
func finals(t *testing.T, outs []sink.Output) map[string]result {
	t.Helper()
	byID := map[string]string{}
	last := map[string]result{}
	for _, o := range outs {
		if prev, ok := byID[o.ID]; ok && prev != string(o.Payload) {
			t.Errorf("id %s published with different content:\n%s\n%s", o.ID, prev, o.Payload)
		}
		byID[o.ID] = string(o.Payload)
		var r result
		if err := json.Unmarshal(o.Payload, &r); err != nil {
			t.Fatalf("bad result %s: %v", o.Payload, err)
		}
		k := oracle.ID(r.Site+"|"+r.Device, r.WindowStart, r.WindowEnd)
		if cur, ok := last[k]; !ok || r.Firing > cur.Firing {
			last[k] = r
		}
	}
	return last
}

func compare(t *testing.T, got map[string]result, want map[string]oracle.Result) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d windows, want %d", len(got), len(want))
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w := want[k]
		g, ok := got[k]
		if !ok {
			t.Errorf("missing window %s", k)
			continue
		}
		for name, gv := range map[string]float64{"n": g.N, "avg": g.Avg, "hi": g.Hi, "lo": g.Lo, "first": g.First, "last": g.Last} {
			if !oracle.Close(gv, w.Values[name]) {
				t.Errorf("%s: %s = %v, want %v", k, name, gv, w.Values[name])
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected window %s", k)
		}
	}
}

var testAggs = []oracle.Agg{
	{Name: "n", Fn: "count"}, {Name: "avg", Fn: "avg", Field: "temperature"}, {Name: "hi", Fn: "max", Field: "temperature"},
	{Name: "lo", Fn: "min", Field: "temperature"}, {Name: "first", Fn: "first", Field: "temperature"}, {Name: "last", Fn: "last", Field: "temperature"},
}

// genReadings makes n readings of devs devices, 100 ms apart, with disorder
// up to 1.5 s (below max_out_of_orderness, so none is late).
func genReadings(n, devs int, seed int64) []reading {
	var out []reading
	base := int64(1_700_000_000_000)
	x := uint64(seed)
	for i := range n {
		x = x*6364136223846793005 + 1442695040888963407
		jitter := int64(x>>33) % 1500
		d := i % devs
		out = append(out, reading{
			site: fmt.Sprintf("s%d", d%3), dev: fmt.Sprintf("d%02d", d),
			ts: base + int64(i)*100 - jitter, temp: float64(int64(x>>40)%4000)/100 - 5,
		})
	}
	return out
}

func toOracle(rs []reading) []oracle.Reading {
	out := make([]oracle.Reading, len(rs))
	for i, r := range rs {
		out[i] = oracle.Reading{Key: r.site + "|" + r.dev, TS: r.ts, Vals: map[string]float64{"temperature": r.temp}}
	}
	return out
}

// endMarker pushes the watermark far ahead so every window closes.
func endMarker(ts int64) reading { return reading{site: "zz", dev: "end", ts: ts, temp: 0} }

func TestJobWindows(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    int
		w    WindowSpec
		ow   oracle.Window
		srcP int
	}{
		{"tumbling p1", 1, WindowSpec{Type: "tumbling", Size: 5 * time.Second}, oracle.Window{Type: "tumbling", Size: 5000}, 1},
		{"tumbling p4", 4, WindowSpec{Type: "tumbling", Size: 5 * time.Second}, oracle.Window{Type: "tumbling", Size: 5000}, 1},
		{"tumbling p2 two source subtasks", 2, WindowSpec{Type: "tumbling", Size: 5 * time.Second}, oracle.Window{Type: "tumbling", Size: 5000}, 2},
		{"sliding p2", 2, WindowSpec{Type: "sliding", Size: 6 * time.Second, Slide: 2 * time.Second}, oracle.Window{Type: "sliding", Size: 6000, Slide: 2000}, 1},
		{"session p3 three source subtasks", 3, WindowSpec{Type: "session", Gap: 700 * time.Millisecond}, oracle.Window{Type: "session", Gap: 700}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, false)
			rs := genReadings(3000, 11, 7)
			h.appendReadings(rs)
			last := rs[len(rs)-1].ts
			end := endMarker(last + 3_600_000)
			h.appendReadings([]reading{end})
			want := oracle.Compute(toOracle(rs), tc.ow, testAggs, end.ts-2000)
			spec := h.spec(tc.p, tc.w)
			spec.Sources[0].Parallelism = tc.srcP
			h.run(spec, func() bool { return len(finals(t, h.out.snapshot())) >= len(want) })
			compare(t, finals(t, h.out.snapshot()), want)
			if d := h.dead.snapshot(); len(d) != 0 {
				t.Errorf("%d dead letters, want none: %s", len(d), d[0].Payload)
			}
		})
	}
}

func TestJobLateAndBadInput(t *testing.T) {
	h := newHarness(t, false)
	rs := genReadings(3000, 5, 3)
	h.appendReadings(rs[:2500])
	// Far behind the watermark: late, whatever the batching (the source
	// emits a watermark at least every readBatch messages).
	late := reading{site: "s0", dev: "d00", ts: rs[0].ts - 60_000, temp: 20}
	h.appendReadings([]reading{late})
	cur := rs[2499].ts
	h.appendMsgs(
		[2]string{"sensors/s1/d01/telemetry", fmt.Sprintf(`{"ts": %d, "temperature": "hot"}`, cur)},
		[2]string{"sensors/s1/d01/telemetry", `{not json`},
		[2]string{"sensors/s1/d01/telemetry", `[]`},
		[2]string{"sensors/s1/d01/telemetry", `{"temperature": 20}`},
		[2]string{"sensors/s1/d01/telemetry", fmt.Sprintf(`[{"ts": %d, "temperature": 21, "extra": {"a": 1}}, 5]`, cur)},
		[2]string{"bad", fmt.Sprintf(`{"ts": %d, "temperature": 21}`, cur)},
	)
	h.appendReadings(rs[2500:])
	end := endMarker(rs[len(rs)-1].ts + 3_600_000)
	h.appendReadings([]reading{end})
	good := append(toOracle(rs), oracle.Reading{Key: "s1|d01", TS: cur, Vals: map[string]float64{"temperature": 21}})
	want := oracle.Compute(good, oracle.Window{Type: "tumbling", Size: 5000}, testAggs, end.ts-2000)
	spec := h.spec(2, WindowSpec{Type: "tumbling", Size: 5 * time.Second})
	h.run(spec, func() bool { return len(finals(t, h.out.snapshot())) >= len(want) && len(h.dead.snapshot()) >= 7 })
	compare(t, finals(t, h.out.snapshot()), want)
	reasons := map[string]int{}
	for _, o := range h.dead.snapshot() {
		var m map[string]any
		if err := json.Unmarshal(o.Payload, &m); err != nil {
			t.Fatal(err)
		}
		r := m["reason"].(string)
		switch {
		case len(r) >= 10 && r[:10] == "late event":
			reasons["late"]++
		case len(r) >= 7 && r[:7] == "filter:":
			reasons["filter"]++
		case len(r) >= 12 && r[:12] == "invalid JSON":
			reasons["json"]++
		case len(r) >= 11 && r[:11] == "empty array":
			reasons["empty"]++
		case len(r) >= 18 && r[:18] == "missing event time":
			reasons["no ts"]++
		case len(r) >= 13 && r[:13] == "array element":
			reasons["element"]++
		case len(r) >= 17 && r[:17] == "missing key field":
			reasons["no key"]++
		default:
			t.Errorf("unexpected dead letter %s", o.Payload)
		}
	}
	for _, k := range []string{"late", "filter", "json", "empty", "no ts", "element", "no key"} {
		if reasons[k] != 1 {
			t.Errorf("dead letters %q = %d, want 1 (all: %v)", k, reasons[k], reasons)
		}
	}
}

func TestJobCheckpointRestoreExactlyOnce(t *testing.T) {
	for _, tc := range []struct {
		name, timers string
		incremental  bool
		compression  string
	}{
		{"incremental rocksdb timers", "rocksdb", true, "none"},
		{"incremental heap timers", "heap", true, "none"},
		{"full snappy", "rocksdb", false, "snappy"},
		{"full uncompressed heap timers", "heap", false, "none"},
	} {
		timers := tc.timers
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, true)
			rs := genReadings(6000, 9, 11)
			h.appendReadings(rs[:3000])
			w := WindowSpec{Type: "tumbling", Size: 5 * time.Second, AllowedLateness: time.Second}
			spec := h.spec(3, w)
			spec.State.Timers = timers
			spec.Checkpointing.Incremental, spec.Checkpointing.Compression = tc.incremental, tc.compression
			// First run: stop (as if killed) after a few checkpoints.
			h.run(spec, func() bool {
				ids, _ := h.store.Completed()
				return len(ids) >= 3 && len(h.out.snapshot()) > 0
			})
			first := len(h.out.snapshot())
			h.appendReadings(rs[3000:])
			end := endMarker(rs[len(rs)-1].ts + 3_600_000)
			h.appendReadings([]reading{end})
			md, broken, err := h.store.Latest(true)
			if err != nil || md == nil || len(broken) > 0 {
				t.Fatalf("latest: %v %v %v", md, broken, err)
			}
			spec = h.spec(3, w)
			spec.State.Timers = timers
			spec.Checkpointing.Incremental, spec.Checkpointing.Compression = tc.incremental, tc.compression
			spec.Restore = md
			for name, ts := range md.Tasks {
				want := checkpoint.KindNative
				if !tc.incremental {
					want = checkpoint.KindFull
				}
				if ts.Stage == "win" && ts.Kind != want {
					t.Errorf("task %s kind %s, want %s", name, ts.Kind, want)
				}
			}
			want := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 5000}, testAggs, end.ts-2000)
			job := h.run(spec, func() bool { return len(finals(t, h.out.snapshot())) >= len(want) })
			compare(t, finals(t, h.out.snapshot()), want)
			o := job.Stats().Overview()
			if o.Counts.Restored != 1 || o.Latest.Restored == nil || o.Latest.Restored.ID != md.ID {
				t.Errorf("restored stats: %+v", o.Latest.Restored)
			}
			if o.Counts.Completed == 0 || o.Latest.Completed == nil || o.Latest.Completed.StateSize == 0 {
				t.Errorf("completed stats: %+v", o.Counts)
			}
			t.Logf("first run published %d, total %d outputs for %d windows; checkpoints %+v", first, len(h.out.snapshot()), len(want), o.Counts)
		})
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("EDDY_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestStopWithCheckpointReplaysNothing(t *testing.T) {
	h := newHarness(t, true)
	rs := genReadings(4000, 7, 5)
	h.appendReadings(rs)
	spec := h.spec(2, WindowSpec{Type: "tumbling", Size: 5 * time.Second})
	job, err := NewJob(spec, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- job.Run(ctx) }()
	for job.SourceOffsets()["readings"] < uint64(len(rs)) {
		time.Sleep(5 * time.Millisecond)
	}
	id, err := job.StopWithCheckpoint(context.Background())
	cancel()
	if err != nil || <-done != nil {
		t.Fatalf("stop: %v", err)
	}
	job.Close()
	published := len(h.out.snapshot())
	md, _, err := h.store.Latest(true)
	if err != nil || md.ID != id || md.Sources["readings"].Offset != uint64(len(rs)) {
		t.Fatalf("final checkpoint %d: %+v %v", id, md, err)
	}
	if !h.store.Published(id) {
		t.Error("final checkpoint not marked published")
	}
	spec.Restore = md
	h.run(spec, func() bool { ids, _ := h.store.Completed(); return len(ids) > 0 && ids[len(ids)-1] >= id+2 })
	if got := len(h.out.snapshot()); got != published {
		t.Errorf("restart published %d more outputs; want none", got-published)
	}
}

func TestMinPauseAndTimeout(t *testing.T) {
	t.Cleanup(func() { testHookAsync = nil })
	t.Run("min pause", func(t *testing.T) {
		testHookAsync = func(string, int64) { time.Sleep(60 * time.Millisecond) }
		h := newHarness(t, true)
		h.appendReadings(genReadings(500, 3, 1))
		spec := h.spec(1, WindowSpec{Type: "tumbling", Size: 5 * time.Second})
		spec.Checkpointing.Interval = 10 * time.Millisecond // shorter than a checkpoint takes
		spec.Checkpointing.MinPause = 150 * time.Millisecond
		var job *Job
		job = h.run(spec, func() bool { ids, _ := h.store.Completed(); return len(ids) >= 2 })
		hist := job.Stats().Overview().History
		var done []*CheckpointStats
		for _, c := range hist {
			if c.Status == StatusCompleted {
				done = append([]*CheckpointStats{c}, done...)
			}
		}
		for i := 1; i < len(done); i++ {
			if gap := done[i].TriggerTimestamp - done[i-1].LatestAckTimestamp; gap < 150 {
				t.Errorf("checkpoint %d triggered %d ms after %d completed; min_pause is 150 ms", done[i].ID, gap, done[i-1].ID)
			}
		}
	})
	t.Run("timeout", func(t *testing.T) {
		testHookAsync = func(string, int64) { time.Sleep(300 * time.Millisecond) }
		h := newHarness(t, true)
		h.appendReadings(genReadings(500, 3, 1))
		spec := h.spec(1, WindowSpec{Type: "tumbling", Size: 5 * time.Second})
		spec.Checkpointing.Timeout = 50 * time.Millisecond
		spec.Checkpointing.TolerableFailures = 2
		os.RemoveAll(spec.State.Dir)
		job, err := NewJob(spec, nil, testLogger())
		if err != nil {
			t.Fatal(err)
		}
		err = job.Run(context.Background())
		job.Close()
		if !errors.Is(err, ErrTooManyFailedCheckpoints) {
			t.Fatalf("run: %v, want ErrTooManyFailedCheckpoints", err)
		}
		o := job.Stats().Overview()
		if o.Counts.Failed != 3 || o.Counts.Completed != 0 {
			t.Errorf("counts %+v, want 3 failed", o.Counts)
		}
		if o.Latest.Failed == nil || !strings.Contains(o.Latest.Failed.FailureMessage, "expired") {
			t.Errorf("latest failed: %+v", o.Latest.Failed)
		}
		time.Sleep(400 * time.Millisecond) // late acks arrive and are cleaned up
		entries, _ := os.ReadDir(h.store.Dir())
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "chk-") {
				t.Errorf("aborted checkpoint left behind: %s", e.Name())
			}
		}
	})
}

// Two keyed stages: per device 5 s windows, then per site 15 s sums of the
// per-device counts. Stage-two tasks have one input per stage-one subtask,
// so barriers are aligned over several inputs.
func TestTwoKeyedStages(t *testing.T) {
	h := newHarness(t, true)
	rs := genReadings(5000, 12, 9)
	h.appendReadings(rs)
	end := endMarker(rs[len(rs)-1].ts + 3_600_000)
	h.appendReadings([]reading{end})
	spec := h.spec(3, WindowSpec{Type: "tumbling", Size: 5 * time.Second})
	spec.Stages = append(spec.Stages, StageSpec{
		Name: "per_site", From: "win", KeyBy: []string{"site"},
		Window:     &WindowSpec{Type: "tumbling", Size: 15 * time.Second},
		Aggregates: map[string]string{"total": "sum(n)", "devices": "count()"},
	})
	site := &memSink{}
	spec.Sinks = append(spec.Sinks, SinkSpec{Name: "site", From: "per_site", Sink: site})
	// Expected: the oracle over stage one, then over its results.
	first := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 5000}, testAggs, end.ts-2000)
	var mid []oracle.Reading
	for _, r := range first {
		s, _, _ := strings.Cut(r.Key, "|")
		mid = append(mid, oracle.Reading{Key: s, TS: r.End - 1, Vals: map[string]float64{"n": r.Values["n"]}})
	}
	// The end marker's window closes too in stage one, but its result is
	// only at end.ts, so stage two sees nothing of it before its own end.
	want := oracle.Compute(mid, oracle.Window{Type: "tumbling", Size: 15000},
		[]oracle.Agg{{Name: "total", Fn: "sum", Field: "n"}, {Name: "devices", Fn: "count"}}, end.ts-2000-15000)
	got := func() map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, o := range site.snapshot() {
			var m map[string]any
			json.Unmarshal(o.Payload, &m)
			k := oracle.ID(m["site"].(string), int64(m["window_start"].(float64)), int64(m["window_end"].(float64)))
			out[k] = m
		}
		return out
	}
	job := h.run(spec, func() bool { return len(got()) >= len(want) })
	g := got()
	for k, w := range want {
		m, ok := g[k]
		if !ok {
			t.Errorf("missing %s", k)
			continue
		}
		if m["total"].(float64) != w.Values["total"] || m["devices"].(float64) != w.Values["devices"] {
			t.Errorf("%s: got total %v devices %v, want %v %v", k, m["total"], m["devices"], w.Values["total"], w.Values["devices"])
		}
	}
	if o := job.Stats().Overview(); o.Counts.Completed == 0 {
		t.Errorf("no checkpoint completed: %+v", o.Counts)
	} else if d, ok := job.Stats().Details(o.Latest.Completed.ID); !ok || d.Tasks["per_site"] == nil || d.Tasks["per_site"].NumSubtasks != 3 {
		t.Errorf("details of %d: %+v", o.Latest.Completed.ID, d)
	}
}

// flakySink loses what was written since the last Flush on its first
// three Flushes, as an MQTT sink does when the connection drops before the PUBACKs.
type flakySink struct {
	memSink
	pending []sink.Output
	n       int
}

func (s *flakySink) Write(_ context.Context, outs []sink.Output) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range outs {
		o.Payload = append([]byte(nil), o.Payload...)
		s.pending = append(s.pending, o)
	}
	return nil
}

func (s *flakySink) Flush(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if s.n <= 3 {
		s.pending = nil
		return errors.New("connection lost before the broker acknowledged every message")
	}
	s.outs = append(s.outs, s.pending...)
	s.pending = nil
	return nil
}

func TestReleaseRetriesUnconfirmedOutput(t *testing.T) {
	h := newHarness(t, true)
	rs := genReadings(3000, 5, 2)
	h.appendReadings(rs)
	end := endMarker(rs[len(rs)-1].ts + 3_600_000)
	h.appendReadings([]reading{end})
	spec := h.spec(2, WindowSpec{Type: "tumbling", Size: 5 * time.Second})
	fs := &flakySink{}
	spec.Sinks[0].Sink = fs
	want := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 5000}, testAggs, end.ts-2000)
	h.run(spec, func() bool { return len(finals(t, fs.snapshot())) >= len(want) })
	compare(t, finals(t, fs.snapshot()), want)
}

func TestRescaleOnRestore(t *testing.T) {
	for _, tc := range []struct {
		name           string
		from, to       int
		incremental    bool
		timers         string
		srcFrom, srcTo int
		// limits stops the old source subtasks at these offsets, so
		// they differ by construction, not by timing.
		limits []uint64
	}{
		{"native 3 to 2", 3, 2, true, "rocksdb", 1, 1, nil},
		{"native 2 to 5 heap timers", 2, 5, true, "heap", 1, 1, nil},
		{"full 4 to 3", 4, 3, false, "rocksdb", 1, 1, nil},
		{"sources 2 to 3", 2, 2, true, "rocksdb", 2, 3, []uint64{2999, 1234}},
		{"sources 3 to 1", 2, 2, true, "rocksdb", 3, 1, []uint64{3000, 17, 2001}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, true)
			rs := genReadings(6000, 13, 21)
			h.appendReadings(rs[:3000])
			w := WindowSpec{Type: "tumbling", Size: 5 * time.Second}
			mk := func(p, srcP int) JobSpec {
				s := h.spec(p, w)
				s.Sources[0].Parallelism = srcP
				s.State.Timers = tc.timers
				s.Checkpointing.Incremental = tc.incremental
				return s
			}
			old := mk(tc.from, tc.srcFrom)
			if tc.limits != nil {
				lim := map[string]uint64{}
				for i, l := range tc.limits {
					lim[sourceKey("readings", i, tc.srcFrom)] = l
				}
				old.readLimits = readLimits(lim)
			}
			h.run(old, func() bool {
				md, _, err := h.store.Latest(false)
				if err != nil || md == nil || md.ID < 2 {
					return false
				}
				for k, l := range old.readLimits {
					if md.Sources[k].Offset != l.Load() {
						return false
					}
				}
				return old.readLimits != nil || len(h.out.snapshot()) > 0
			})
			h.appendReadings(rs[3000:])
			end := endMarker(rs[len(rs)-1].ts + 3_600_000)
			h.appendReadings([]reading{end})
			md, _, err := h.store.Latest(true)
			if err != nil || md == nil {
				t.Fatal(md, err)
			}
			for k, l := range old.readLimits {
				if md.Sources[k].Offset != l.Load() {
					t.Fatalf("checkpoint %d: %s at %d, want %d", md.ID, k, md.Sources[k].Offset, l.Load())
				}
			}
			spec := mk(tc.to, tc.srcTo)
			spec.Restore = md
			want := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 5000}, testAggs, end.ts-2000)
			h.run(spec, func() bool { return len(finals(t, h.out.snapshot())) >= len(want) })
			compare(t, finals(t, h.out.snapshot()), want)
		})
	}
}

// refusingSink takes no output (every Write fails), so nothing staged is
// ever published or dropped.
type refusingSink struct{ memSink }

func (*refusingSink) Write(context.Context, []sink.Output) error {
	return errors.New("not connected")
}

// A rescale merges the staged output of several old subtasks into one new
// subtask (4 to 3: old 0 and old 3 into new 0). All of it must be
// published, not only the last old subtask's. The old job's sink never
// takes output, so the restored checkpoint holds every result the old job
// fired, staged, whatever the timing.
func TestRescaleKeepsStagedOutputOfEveryOldSubtask(t *testing.T) {
	for _, incremental := range []bool{false, true} {
		t.Run(fmt.Sprintf("incremental %v", incremental), func(t *testing.T) {
			h := newHarness(t, true)
			rs := genReadings(6000, 13, 21)
			h.appendReadings(rs[:3000])
			read := h.log.NextOffset()
			w := WindowSpec{Type: "tumbling", Size: 5 * time.Second}
			mk := func(p int) JobSpec {
				s := h.spec(p, w)
				s.Checkpointing.Incremental = incremental
				return s
			}
			old := mk(4)
			old.Sinks[0].Sink = &refusingSink{}
			h.run(old, func() bool {
				md, _, err := h.store.Latest(false)
				return err == nil && md != nil && md.Sources["readings"].Offset == read
			})
			md, _, err := h.store.Latest(true)
			if err != nil || md == nil || md.Sources["readings"].Offset != read {
				t.Fatal(md, err)
			}
			// The precondition: old subtasks 0 and 3, both restored into
			// new subtask 0, hold staged results.
			for _, name := range []string{"win-0", "win-3"} {
				if stagedOutputs(t, h.store, md.ID, name, "out") == 0 {
					t.Fatalf("checkpoint %d: %s has no staged results: the test does not exercise the merge", md.ID, name)
				}
			}
			h.appendReadings(rs[3000:])
			end := endMarker(rs[len(rs)-1].ts + 3_600_000)
			h.appendReadings([]reading{end})
			spec := mk(3)
			spec.Restore = md
			want := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 5000}, testAggs, end.ts-2000)
			h.run(spec, func() bool { return len(finals(t, h.out.snapshot())) >= len(want) })
			compare(t, finals(t, h.out.snapshot()), want)
		})
	}
}

// stagedOutputs counts the output staged for sink in task's state in
// checkpoint id.
func stagedOutputs(t *testing.T, store *checkpoint.Store, id int64, task, sink string) int {
	t.Helper()
	data, err := checkpoint.ReadTaskStateFS(fileutil.OSFS{}, filepath.Join(store.TaskDir(id, task), checkpoint.TaskStateFile))
	if err != nil {
		t.Fatal(err)
	}
	var snap taskSnapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, st := range snap.Staged {
		if st.Sink == sink {
			for _, e := range st.Epochs {
				n += len(e.Outputs)
			}
		}
	}
	return n
}
