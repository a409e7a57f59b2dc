package plan

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/pipeline/sink"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/storage/diskspace"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/ingestlog"
	"github.com/eddy-stream/eddy/storage/state"
	"github.com/eddy-stream/eddy/upload"
)

// Options are what Measure replays and how long.
type Options struct {
	Config *config.Config
	// Scratch is the directory measured in (created; removed after unless
	// Keep). Empty: a new directory under the system's temp dir.
	Scratch string
	Keep    bool
	// Input is a file of recorded messages, one per line, "topic payload"
	// (the output of mosquitto_sub -v). Simulate, if set, replays the
	// simulator's stream instead. With neither, the most recent segments
	// of the first source's ingest log in data_dir, up to MaxBytes.
	Input    string
	Simulate *simulate.Options
	MaxBytes int64 // default 256 MiB
	// Duration bounds the replay: two thirds for the maximum, one third
	// for the replay after the restore. Default 20 s.
	Duration time.Duration
	// LiveRate is the live input in messages/s, overriding what the
	// ingest log's timestamps say (0: from the log).
	LiveRate float64
	// LiveReadings is the live input in readings/s as the running eddy
	// reports it (GET /api/v1/overview), used when LiveRate is 0.
	LiveReadings float64
	// Remote is the store upload.remote names (nil: none): the newest
	// checkpoint of the appliance there is downloaded into the scratch
	// directory and restored, timed.
	Remote upload.Store
	Log    *slog.Logger
}

// Nice lowers the priority of every thread of this process to nice 10:
// on Linux setpriority(PRIO_PROCESS) applies to one thread, and threads
// the runtime starts later inherit it from the thread that starts them.
func Nice() error {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return syscall.Setpriority(syscall.PRIO_PROCESS, 0, 10)
	}
	var errs []error
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, 10); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PlanCheckpointInterval is the longest checkpoint interval the plan's
// replays run with: a replay at the box's maximum lasts a few seconds (3M
// readings take about 1.5 s on 2 cores), shorter than a typical
// checkpointing.interval, so at the configured interval no checkpoint
// would complete in it and "checkpointing on" would cost nothing. At most
// this interval (and min_pause at most PlanCheckpointMinPause) several
// complete; checkpointing more often than configured costs more, so the
// maximum errs on the safe side. The catch-up figures use the configured
// interval.
const (
	PlanCheckpointInterval = 250 * time.Millisecond
	PlanCheckpointMinPause = 50 * time.Millisecond
)

// planCaps are the caps planCheckpointTiming applies: the constants above,
// shorter in tests that must see checkpoints complete in a short replay.
var planCaps = struct{ interval, minPause time.Duration }{PlanCheckpointInterval, PlanCheckpointMinPause}

// planCheckpointTiming is the interval and minimum pause the plan runs
// the job of cfg with.
func planCheckpointTiming(cfg *config.Config) (interval, minPause time.Duration) {
	interval, minPause = cfg.Checkpointing.Interval, cfg.Checkpointing.MinPause
	if interval > planCaps.interval {
		interval = planCaps.interval
	}
	if minPause > planCaps.minPause {
		minPause = planCaps.minPause
	}
	return interval, minPause
}

// recordOverhead is what a record held in memory takes beyond its topic
// and payload bytes: the Record struct and the allocations' rounding.
const recordOverhead = 96

// heldBytes is about the Go memory rs take.
func heldBytes(rs []ingestlog.Record) int64 {
	var n int64
	for _, r := range rs {
		n += int64(len(r.Topic)+len(r.Payload)) + recordOverhead
	}
	return n
}

// setGoMemoryLimit sets the Go soft memory limit the daemon runs the job
// with (state.SetGoMemoryLimit for mem) raised by held, the planner's own
// copy of its input, which the daemon does not hold: under the bare limit
// that copy alone exceeds it and the collector runs flat out, and the
// plan measured the collector (a quarter of the replay's rate in `make
// bench` (m)). GOMEMLIMIT in the environment wins, as in the daemon. It
// returns a function that restores the previous limit.
func setGoMemoryLimit(mem *state.Memory, held int64) (limit int64, restore func()) {
	prev := debug.SetMemoryLimit(-1)
	if os.Getenv("GOMEMLIMIT") != "" {
		return prev, func() {}
	}
	limit = mem.GoMemoryLimit() + held
	debug.SetMemoryLimit(limit)
	return limit, func() { debug.SetMemoryLimit(prev) }
}

// resultSink counts what a sink is given: results and their arrival in
// 100 ms buckets, and, for a sink of a keyed stage, results by key group.
type resultSink struct {
	mu      sync.Mutex
	n       int64
	bytes   int64           // topics and payloads
	buckets map[int64]int64 // unix 100 ms → results
	windows map[string]int64
	keyBy   []string
	maxP    int
	kgs     map[uint16]int64
}

func (s *resultSink) Write(_ context.Context, outs []sink.Output) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n += int64(len(outs))
	for _, o := range outs {
		s.bytes += int64(len(o.Topic) + len(o.Payload))
	}
	s.buckets[time.Now().UnixMilli()/100] += int64(len(outs))
	for _, o := range outs {
		if len(s.keyBy) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(o.Payload, &m); err != nil {
			continue
		}
		if kg, ok := pipeline.KeyGroup(m, s.keyBy, s.maxP); ok {
			s.kgs[kg]++
		}
		if w, ok := m["window_end"].(float64); ok {
			s.windows[strconv.FormatFloat(w, 'f', -1, 64)]++
		}
	}
	return nil
}
func (s *resultSink) Flush(context.Context) error { return nil }
func (s *resultSink) Close() error                { return nil }

// Measure replays the configured pipeline in a scratch directory and
// reports what the box can take. It only reads data_dir.
func Measure(ctx context.Context, o Options) (*Report, error) {
	cfg := o.Config
	if len(cfg.Sources) == 0 {
		return nil, errors.New("plan: the configuration has no source")
	}
	if o.Duration <= 0 {
		o.Duration = 20 * time.Second
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 256 << 20
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	scratch := o.Scratch
	if scratch == "" {
		d, err := os.MkdirTemp("", "eddy-plan-")
		if err != nil {
			return nil, err
		}
		scratch = d
	} else if err := fileutil.CreateDirAll(scratch); err != nil {
		return nil, err
	}
	if !o.Keep {
		defer os.RemoveAll(scratch)
	}
	rep := &Report{Version: 1, Time: time.Now().UTC(), Cores: runtime.NumCPU()}
	src := cfg.Sources[0]
	rec, err := loadInput(o, cfg, scratch, rep)
	if err != nil {
		return nil, err
	}
	if len(rec) == 0 {
		return nil, errors.New("plan: nothing to replay (the ingest log is empty; use --input or --simulate)")
	}
	liveFromLog(rep, rec, o.LiveRate, o.LiveReadings)

	layout := datadir.New(filepath.Join(scratch, "data"))
	lg, err := ingestlog.Open(ingestlog.Options{Dir: layout.Ingest(src.Name), SegmentSize: 64 << 20, MaxSize: 1 << 40,
		SyncInterval: 10 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	defer lg.Close()
	numDBs := 0
	for i := range cfg.Pipeline.Stages {
		if cfg.Pipeline.Stages[i].Kind() == config.KindWindow {
			numDBs += cfg.Pipeline.EffectiveParallelism()
		}
	}
	mem, err := state.NewMemory(state.MemoryOptions{
		Managed: int64(cfg.State.Memory.Managed), WriteBufferRatio: cfg.State.Memory.WriteBufferRatio,
		HighPrioPoolRatio: cfg.State.Memory.HighPrioPoolRatio, WriteCacheRatio: cfg.State.Memory.WriteCacheRatio,
		NumDBs: max(numDBs, 1),
	})
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	// Only the last third stays held for phase 2; the first two thirds
	// are in the scratch ingest log once appended.
	split := len(rec) * 2 / 3
	first, rest := rec[:split], append([]ingestlog.Record(nil), rec[split:]...)
	rec = nil
	heldRest := heldBytes(rest)
	_, restoreLimit := setGoMemoryLimit(mem, heldBytes(first)+heldRest)
	defer restoreLimit() // the limit before Measure
	var store *checkpoint.Store
	if cfg.Checkpointing.Interval > 0 {
		if err := fileutil.CreateDirAll(layout.Checkpoints()); err != nil {
			return nil, err
		}
		if store, err = checkpoint.Open(layout.Checkpoints(), fileutil.OSFS{}, nil); err != nil {
			return nil, err
		}
	}
	sinks := map[string]sink.Sink{}
	bySink := map[string]*resultSink{}
	var results []*resultSink
	keyed := map[string][]string{}
	for _, st := range cfg.Pipeline.Stages {
		if len(st.KeyBy) > 0 {
			keyed[st.Name] = st.KeyBy
		}
	}
	for _, s := range cfg.Sinks {
		rs := &resultSink{buckets: map[int64]int64{}, windows: map[string]int64{}, kgs: map[uint16]int64{},
			maxP: cfg.Pipeline.MaxParallelism}
		if !s.DeadLetters {
			from := s.From
			if from == "" && len(cfg.Pipeline.Stages) > 0 {
				from = cfg.Pipeline.Stages[len(cfg.Pipeline.Stages)-1].Name
			}
			rs.keyBy = keyed[from]
			results = append(results, rs)
		}
		sinks[s.Name], bySink[s.Name] = rs, rs
	}
	build := func(md *checkpoint.Metadata, store *checkpoint.Store) (*pipeline.Job, time.Duration, error) {
		dir := filepath.Join(scratch, "data", "state")
		os.RemoveAll(dir)
		if err := fileutil.CreateDirAll(dir); err != nil {
			return nil, 0, err
		}
		spec := JobSpec(cfg, Resources{StateDir: dir, Memory: mem, Store: store, FS: fileutil.OSFS{},
			Logs: map[string]*ingestlog.Log{src.Name: lg}, Sinks: sinks})
		spec.Sources = spec.Sources[:1] // the replayed source; the others have no input here
		spec.Checkpointing.Interval, spec.Checkpointing.MinPause = planCheckpointTiming(cfg)
		if md != nil {
			spec.Restore, spec.RestoreSource = md, "local"
		}
		t0 := time.Now()
		job, err := pipeline.NewJob(spec, nil, o.Log)
		return job, time.Since(t0), err
	}

	// Phase 1: the first two thirds of the input, flat out, checkpointing
	// as configured.
	if err := appendAll(lg, first); err != nil {
		return nil, err
	}
	first = nil
	setGoMemoryLimit(mem, heldRest) // lowered: the first two thirds are in the log
	job, _, err := build(nil, store)
	if err != nil {
		return nil, err
	}
	r := StartReplay(job)
	el, f, err := drain(ctx, r, lg, o.Duration*2/3)
	tasks := job.Overview()
	if err != nil {
		r.Stop()
		return nil, err
	}
	rep.Max = maxFigures(el, f, tasks)
	if st := job.Stats(); st != nil {
		rep.Checkpointing.Completed = st.Overview().Counts.Completed
	}
	if store != nil {
		// A checkpoint of everything replayed, for phase 2; in exactly-once
		// mode it also releases the last results to the sinks.
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		id, cerr := job.TriggerCheckpoint(sctx)
		cancel()
		if cerr != nil {
			o.Log.Warn("plan: checkpoint failed", "err", cerr)
		} else {
			t := time.NewTicker(20 * time.Millisecond)
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); <-t.C {
				done := true
				for _, ss := range job.SinkStates() {
					done = done && ss.PublishedUpTo >= id
				}
				if done {
					break
				}
			}
			t.Stop()
		}
	}
	rep.Windows = windows(results)
	spoolOutput := map[string]int64{} // bytes each sink took in phase 1
	for name, rs := range bySink {
		rs.mu.Lock()
		spoolOutput[name] = rs.bytes
		rs.mu.Unlock()
	}
	rep.Skew = skew(cfg, tasks, results)
	var md *checkpoint.Metadata
	if err := r.Stop(); err != nil {
		return nil, err
	}

	// Phase 2: restore the newest checkpoint into empty working state, then
	// replay the rest of the input from its offsets (cold cache).
	if store != nil {
		if md, _, err = store.Latest(false); err != nil {
			return nil, err
		}
	}
	if md != nil {
		if err := appendAll(lg, rest); err != nil {
			return nil, err
		}
		job, took, err := build(md, store)
		if err != nil {
			return nil, fmt.Errorf("plan: restore checkpoint %d: %w", md.ID, err)
		}
		rep.Recovery.Checkpoint = md.ID
		rep.Recovery.CheckpointBytes = md.StateSize()
		rep.Recovery.RestoreSeconds = took.Seconds()
		r := StartReplay(job)
		el, f2, err := drain(ctx, r, lg, o.Duration/3)
		r.Stop()
		if err != nil {
			return nil, err
		}
		rep.Recovery.ReplayReadings = f2.Processed()
		if el > 0 {
			rep.Recovery.ReplayReadingsPerSecond = float64(f2.Processed()) / el.Seconds()
		}
	}
	rep.Recovery.Remote = "not measured: no upload.remote"
	if o.Remote != nil {
		measureRemote(ctx, o, scratch, rep, build)
	}
	rep.Checkpointing.IntervalSeconds = cfg.Checkpointing.Interval.Seconds()
	rep.Checkpointing.Mode = cfg.Checkpointing.Mode
	rep.Checkpointing.Incremental = cfg.Checkpointing.Incremental
	rep.Checkpointing.MinPauseSeconds = cfg.Checkpointing.MinPause.Seconds()
	pi, pp := planCheckpointTiming(cfg)
	rep.Checkpointing.PlanIntervalSeconds, rep.Checkpointing.PlanMinPauseSeconds = pi.Seconds(), pp.Seconds()

	live := datadir.New(cfg.DataDir)
	rep.IngestLog.MaxSize = int64(cfg.IngestLog.MaxSize)
	rep.IngestLog.Used = DirBytes(live.Ingest(src.Name))
	if u, err := diskspace.Statfs(cfg.DataDir); err == nil {
		rep.Disk.Free = int64(u.Free)
	}
	if cfg.Checkpointing.Mode != "at_least_once" {
		// Exactly-once: every sink has a spool (data_dir/spool/<sink>).
		for _, s := range cfg.Sinks {
			rep.Spools = append(rep.Spools, SpoolFigures{Sink: s.Name, MaxSize: int64(s.Spool.MaxSize),
				Used: DirBytes(live.Spool(s.Name)), OutputBytesPerReading: float64(spoolOutput[s.Name]) / float64(max(rep.Max.Readings, 1))})
		}
	}
	rep.derive()
	return rep, nil
}

// measureRemote times the recovery of a replacement box: download the
// newest remote checkpoint of the appliance into an empty store in the
// scratch directory, then restore it (open every subtask's state, as a
// start does). The running eddy's remote checkpoints are read, never
// changed.
func measureRemote(ctx context.Context, o Options, scratch string, rep *Report,
	build func(*checkpoint.Metadata, *checkpoint.Store) (*pipeline.Job, time.Duration, error)) {
	cfg := o.Config
	where := fmt.Sprintf("appliance %s on %s", cfg.ApplianceID, o.Remote)
	dir := filepath.Join(scratch, "remote", "checkpoints")
	if err := fileutil.CreateDirAll(dir); err != nil {
		rep.Recovery.Remote = "not measured: " + err.Error()
		return
	}
	store, err := checkpoint.Open(dir, fileutil.OSFS{}, nil)
	if err != nil {
		rep.Recovery.Remote = "not measured: " + err.Error()
		return
	}
	var read atomic.Int64
	t0 := time.Now()
	md, err := upload.Download(ctx, o.Remote, cfg.ApplianceID, upload.Latest, store, upload.DownloadOptions{
		Parallelism: cfg.Upload.Parallelism, BytesRead: &read, Logger: o.Log,
	})
	took := time.Since(t0)
	switch {
	case errors.Is(err, upload.ErrNoRemoteCheckpoint):
		rep.Recovery.Remote = "not measured: no checkpoint of " + where
		return
	case err != nil:
		rep.Recovery.Remote = fmt.Sprintf("not measured: download from %s failed: %v", where, err)
		return
	}
	rep.Recovery.RemoteCheckpoint, rep.Recovery.RemoteBytes = md.ID, read.Load()
	rep.Recovery.RemoteDownloadSeconds = took.Seconds()
	job, restore, err := build(md, store)
	if err != nil {
		rep.Recovery.Remote = fmt.Sprintf("checkpoint %d of %s downloaded in %s; its restore failed: %v", md.ID, where, took.Round(time.Millisecond), err)
		return
	}
	if err := job.Close(); err != nil {
		o.Log.Warn("plan: close the job restored from the remote", "err", err)
	}
	rep.Recovery.RemoteRestoreSeconds = restore.Seconds()
	rep.Recovery.Remote = fmt.Sprintf("checkpoint %d of %s: download %s (%d bytes), restore %s", md.ID, where,
		took.Round(time.Millisecond), read.Load(), restore.Round(time.Millisecond))
}

// drain waits until the sources have read the whole log and the keyed
// tasks' counts stand still, or until d passed; it returns the time from
// start to the last progress and the figures then.
func drain(ctx context.Context, r *Replay, lg *ingestlog.Log, d time.Duration) (time.Duration, Figures, error) {
	end := lg.NextOffset()
	var last Figures
	lastAt := time.Now()
	still := 0
	_, err := r.Wait(d, 20*time.Millisecond, func(f Figures) bool {
		if ctx.Err() != nil {
			return true
		}
		if f != last {
			last, lastAt, still = f, time.Now(), 0
			return false
		}
		still++
		for _, off := range r.Job.SourceOffsets() {
			if off < end {
				return false
			}
		}
		return still >= 5
	})
	if errors.Is(err, ErrDeadline) {
		err = nil
	}
	if ctx.Err() != nil {
		return 0, last, ctx.Err()
	}
	return lastAt.Sub(r.Start), last, err
}

// loadInput returns the records to replay.
func loadInput(o Options, cfg *config.Config, scratch string, rep *Report) ([]ingestlog.Record, error) {
	// Recorded and simulated messages arrive now (event_time.max_future
	// is checked against the arrival time).
	now := time.Now().UnixMilli()
	switch {
	case o.Simulate != nil:
		rep.Input = "simulator"
		var out []ingestlog.Record
		err := simulate.GenerateMessages(*o.Simulate, func(m simulate.Message) error {
			out = append(out, ingestlog.Record{Timestamp: now, Topic: m.Topic, Payload: m.Payload, QoS: 1})
			return nil
		})
		return out, err
	case o.Input != "":
		rep.Input = "file " + o.Input
		f, err := os.Open(o.Input)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		var out []ingestlog.Record
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 256<<20)
		for sc.Scan() {
			topic, payload, ok := strings.Cut(sc.Text(), " ")
			if !ok {
				continue
			}
			out = append(out, ingestlog.Record{Timestamp: now, Topic: topic, Payload: []byte(payload), QoS: 1})
		}
		return out, sc.Err()
	}
	rep.Input = "ingest_log"
	return copyLog(datadir.New(cfg.DataDir).Ingest(cfg.Sources[0].Name), filepath.Join(scratch, "copy"), o.MaxBytes)
}

// copyLog hard-links the most recent sealed segments of the ingest log in
// dir (up to maxBytes) into to, copies the active one (which the running
// eddy still appends to: opening the copy may cut a torn tail, of the
// copy), and reads their records.
func copyLog(dir, to string, maxBytes int64) ([]ingestlog.Record, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var segs []os.DirEntry
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".seg") {
			segs = append(segs, e)
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].Name() < segs[j].Name() })
	if err := fileutil.CreateDirAll(to); err != nil {
		return nil, err
	}
	var total int64
	for i := len(segs) - 1; i >= 0; i-- {
		fi, err := segs[i].Info()
		if err != nil {
			return nil, err
		}
		if total > 0 && total+fi.Size() > maxBytes {
			break
		}
		total += fi.Size()
		src, dst := filepath.Join(dir, segs[i].Name()), filepath.Join(to, segs[i].Name())
		if i == len(segs)-1 || os.Link(src, dst) != nil {
			if err := fileutil.CopyFile(src, dst, 0o644); err != nil {
				return nil, err
			}
		}
	}
	l, err := ingestlog.Open(ingestlog.Options{Dir: to, SegmentSize: 64 << 20, MaxSize: 1 << 40, SyncInterval: 10 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	rd, err := l.NewReader(l.FirstOffset())
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var out []ingestlog.Record
	for off := l.FirstOffset(); off < l.NextOffset(); off++ {
		var r ingestlog.Record
		if err := rd.Next(&r); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
		r.Payload = append([]byte(nil), r.Payload...)
		out = append(out, r)
	}
	return out, nil
}

func appendAll(lg *ingestlog.Log, rs []ingestlog.Record) error {
	for len(rs) > 0 {
		n := min(len(rs), 1024)
		if _, err := lg.AppendBatch(rs[:n]); err != nil {
			return err
		}
		rs = rs[n:]
	}
	return lg.Sync()
}

// liveFromLog sets the live input rate from the arrival timestamps of the
// recorded messages (or from override, in messages/s).
func liveFromLog(rep *Report, rec []ingestlog.Record, override, readings float64) {
	var bytes int64
	for _, r := range rec {
		bytes += int64(len(r.Topic) + len(r.Payload) + 16)
	}
	rep.bytesPerMsg = float64(bytes) / float64(len(rec))
	if override <= 0 && readings > 0 {
		rep.Live.Source = "running eddy (GET /api/v1/overview)"
		rep.Live.ReadingsPerSecond = readings
		return // messages/s and bytes/s follow in derive
	}
	if override > 0 {
		rep.Live.Source = "--live-rate"
		rep.Live.MessagesPerSecond = override
		rep.Live.BytesPerSecond = override * float64(bytes) / float64(len(rec))
		return
	}
	first, last := rec[0].Timestamp, rec[len(rec)-1].Timestamp
	if first <= 0 || last <= first {
		return
	}
	span := float64(last-first) / 1000
	rep.Live.Source = "ingest log timestamps"
	rep.Live.MessagesPerSecond = float64(len(rec)-1) / span
	rep.Live.BytesPerSecond = float64(bytes) / span
}

// DirBytes is the total size of the regular files under dir.
func DirBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// stageOf is a task's stage: its name without the subtask suffix "-<i>".
func stageOf(task string) string {
	if i := strings.LastIndexByte(task, '-'); i > 0 {
		if _, err := strconv.Atoi(task[i+1:]); err == nil {
			return task[:i]
		}
	}
	return task
}

func maxFigures(el time.Duration, f Figures, tasks []pipeline.TaskOverview) Max {
	m := Max{Readings: f.Processed(), Messages: f.SourceMsgs, Seconds: el.Seconds()}
	if el > 0 {
		m.ReadingsPerSecond = float64(f.Processed()) / el.Seconds()
		m.MessagesPerSecond = float64(f.SourceMsgs) / el.Seconds()
	}
	// The bottleneck is the first task, in pipeline order, that is not
	// back-pressured itself while a task before it is: it is what the
	// others wait on. With none back-pressured the sources are the limit.
	prevBP := 0.0
	for _, t := range tasks {
		bp := 0.0
		if el > 0 {
			bp = math.Min(1, float64(t.BackPressuredMs)/float64(el.Milliseconds()+1))
		}
		m.Tasks = append(m.Tasks, TaskLoad{Name: t.Name, Kind: t.Kind, RecordsIn: t.RecordsIn, BackPressure: bp})
		if m.Bottleneck == "" && prevBP >= 0.5 && bp < 0.5 {
			m.Bottleneck, m.UpstreamBackPressure = t.Name, prevBP
		}
		prevBP = math.Max(prevBP, bp)
	}
	if m.Bottleneck == "" && len(tasks) > 0 {
		m.Bottleneck = tasks[0].Name
	}
	return m
}

func skew(cfg *config.Config, tasks []pipeline.TaskOverview, results []*resultSink) Skew {
	s := Skew{MaxParallelism: cfg.Pipeline.MaxParallelism, Parallelism: cfg.Pipeline.EffectiveParallelism(),
		ScaleTarget: runtime.NumCPU() * 4}
	s.RoomToScale = s.MaxParallelism >= s.ScaleTarget
	var total int64
	for _, t := range tasks {
		if t.Kind != "keyed" {
			continue
		}
		total += t.RecordsIn
		if s.BusiestSubtask == "" || t.RecordsIn > s.busiest {
			s.BusiestSubtask, s.busiest, s.Stage = t.Name, t.RecordsIn, stageOf(t.Name)
		}
		s.Subtasks++
	}
	if total > 0 {
		s.SubtaskShare = float64(s.busiest) / float64(total)
	}
	var kgTotal, kgMax int64
	for _, r := range results {
		r.mu.Lock()
		for kg, n := range r.kgs {
			kgTotal += n
			if n > kgMax {
				kgMax, s.BusiestKeyGroup = n, int(kg)
			}
		}
		s.KeyGroups = max(s.KeyGroups, len(r.kgs))
		r.mu.Unlock()
	}
	if kgTotal > 0 {
		s.KeyGroupShare = float64(kgMax) / float64(kgTotal)
	}
	return s
}

func windows(results []*resultSink) Windows {
	var w Windows
	for _, r := range results {
		r.mu.Lock()
		var n int64
		for _, c := range r.windows {
			n += c
			w.MaxResultsPerFiring = max(w.MaxResultsPerFiring, c)
		}
		w.Firings = max(w.Firings, len(r.windows))
		if len(r.windows) > 0 {
			w.ResultsPerFiring = math.Max(w.ResultsPerFiring, float64(n)/float64(len(r.windows)))
		}
		for _, c := range r.buckets {
			w.PeakOutputPerSecond = math.Max(w.PeakOutputPerSecond, float64(c)*10)
		}
		r.mu.Unlock()
	}
	if w.PeakOutputPerSecond > 0 {
		w.BurstSeconds = float64(w.MaxResultsPerFiring) / w.PeakOutputPerSecond
	}
	return w
}
