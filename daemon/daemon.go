package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/ingestlog"
	"github.com/eddy-stream/eddy/storage/state"
)

// Daemon is one running eddy: every long-lived component and the job
// supervisor. Build it with New, run it with Run.
type Daemon struct {
	cfg   *config.Config
	log   *slog.Logger
	level *slog.LevelVar
	start time.Time

	broker    *mqttio.Embedded
	brokerURL string
	logs      map[string]*ingestlog.Log
	ingests   map[string]*pipeline.Ingest
	publisher *mqttio.Publisher
	sinks     map[string]pipeline.Sink
	memory    *state.Memory
	store     *checkpoint.Store
	http      *httpServer

	mu       sync.RWMutex
	job      *pipeline.Job // the running job; nil between jobs
	live     *config.Config
	restarts int
	lastErr  string
	phase    string // what the supervisor does when no job runs (STATUS=)
	ready    chan struct{}
	readyOne sync.Once

	// configPath is re-read on Reload; reloadMu orders a reload against
	// building the next job, so a job always starts on the running values.
	configPath string
	reloadMu   sync.Mutex
	token      string // http.token or the content of http.token_file

	stop        chan struct{} // closed by Stop: graceful stop requested
	stopOnce    sync.Once
	stopTimeout time.Duration // bound of the final checkpoint on Stop

	sd *systemd
	uploadHooks
	upl *uploadState // daemon/upload.go
}

// Dirs under data_dir (DESIGN.md "Disk layout").
const (
	dirIngest      = "ingest"
	dirState       = "state"
	dirCheckpoints = "checkpoints"
)

// New prepares the data directory and opens every component but the job.
// On error everything opened so far is closed.
func New(cfg *config.Config, log *slog.Logger, level *slog.LevelVar) (d *Daemon, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d = &Daemon{
		cfg: cfg, live: cfg, log: log, level: level, start: time.Now(),
		logs: map[string]*ingestlog.Log{}, ingests: map[string]*pipeline.Ingest{},
		sinks: map[string]pipeline.Sink{}, ready: make(chan struct{}),
		stop: make(chan struct{}), stopTimeout: DefaultStopTimeout, phase: "starting",
	}
	d.sd = newSystemd(d)
	defer func() {
		if err != nil {
			err = errors.Join(err, d.Close())
		}
	}()
	if d.token, err = loadToken(cfg.HTTP); err != nil {
		return nil, err
	}
	if err := d.prepareDataDir(); err != nil {
		return nil, err
	}
	if cfg.MQTT.IsEmbedded() {
		if d.broker, err = mqttio.StartEmbedded(cfg.MQTT.Embedded.Listen, log.With("component", "broker")); err != nil {
			return nil, fmt.Errorf("start embedded broker on %s: %w", cfg.MQTT.Embedded.Listen, err)
		}
		d.brokerURL = d.broker.URL()
		log.Info("embedded MQTT broker listening", "url", d.brokerURL)
	}
	for _, s := range cfg.Sources {
		l, err := ingestlog.Open(ingestlog.Options{
			Dir:          filepath.Join(cfg.DataDir, dirIngest, s.Name),
			SegmentSize:  int64(cfg.IngestLog.SegmentSize),
			MaxSize:      int64(cfg.IngestLog.MaxSize),
			SyncInterval: cfg.IngestLog.SyncInterval,
			Logger:       log.With("component", "ingestlog", "source", s.Name),
		})
		if err != nil {
			return nil, fmt.Errorf("open ingest log of source %s: %w", s.Name, err)
		}
		d.logs[s.Name] = l
	}
	if err := d.openSinks(); err != nil {
		return nil, err
	}
	numDBs := 0
	for i := range cfg.Pipeline.Stages {
		if cfg.Pipeline.Stages[i].Kind() == config.KindWindow {
			numDBs += cfg.Pipeline.EffectiveParallelism()
		}
	}
	if d.memory, err = state.NewMemory(state.MemoryOptions{
		Managed:           int64(cfg.State.Memory.Managed),
		WriteBufferRatio:  cfg.State.Memory.WriteBufferRatio,
		HighPrioPoolRatio: cfg.State.Memory.HighPrioPoolRatio,
		NumDBs:            max(numDBs, 1),
	}); err != nil {
		return nil, err
	}
	if cfg.Checkpointing.Interval > 0 {
		if d.store, err = checkpoint.Open(filepath.Join(cfg.DataDir, dirCheckpoints), fileutil.OSFS{}, log.With("component", "checkpoints")); err != nil {
			return nil, err
		}
	}
	if err := d.openUpload(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Daemon) prepareDataDir() error {
	dd := d.cfg.DataDir
	for _, sub := range []string{"", dirIngest, dirState, dirCheckpoints} {
		if err := fileutil.CreateDirAll(filepath.Join(dd, sub)); err != nil {
			return fmt.Errorf("data_dir %s: %w", dd, err)
		}
	}
	removed, err := fileutil.RemoveTmp(dd)
	if err != nil {
		return fmt.Errorf("data_dir %s: remove leftovers: %w", dd, err)
	}
	for _, r := range removed {
		d.log.Info("removed leftover temporary file", "path", r)
	}
	same, err := fileutil.SameFilesystem(filepath.Join(dd, dirState), filepath.Join(dd, dirCheckpoints))
	if err != nil {
		return err
	}
	if !same {
		return fmt.Errorf("data_dir %s: %s and %s are on different filesystems; checkpoints are hard links "+
			"to the working state and need one filesystem (do not mount either separately)",
			dd, filepath.Join(dd, dirState), filepath.Join(dd, dirCheckpoints))
	}
	return nil
}

func (d *Daemon) clientOptions(suffix string) (mqttio.ClientOptions, error) {
	m := d.cfg.MQTT
	o := mqttio.ClientOptions{
		Broker: m.Broker, ClientID: m.ClientID + suffix, Username: m.Username, Password: m.Password,
		CAFile: m.TLS.CAFile, CertFile: m.TLS.CertFile, KeyFile: m.TLS.KeyFile,
		InsecureSkipVerify: m.TLS.InsecureSkipVerify, CleanSession: m.CleanSession,
		KeepAlive: m.KeepAlive, ConnectTimeout: m.ConnectTimeout, ReconnectMaxInterval: m.ReconnectMaxInterval,
		Logger: d.log.With("component", "mqtt", "client", m.ClientID+suffix),
	}
	if d.brokerURL != "" {
		o.Broker = d.brokerURL
	}
	if m.PasswordFile != "" {
		b, err := os.ReadFile(m.PasswordFile)
		if err != nil {
			return o, fmt.Errorf("mqtt.password_file: %w", err)
		}
		o.Password = strings.TrimSpace(string(b))
	}
	return o, nil
}

func (d *Daemon) openSinks() error {
	for _, s := range d.cfg.Sinks {
		switch {
		case s.MQTT != nil:
			if d.publisher == nil {
				o, err := d.clientOptions("-pub")
				if err != nil {
					return err
				}
				// No paho file store: staged output stays in the checkpoints
				// until the broker confirms it (a file per message costs more
				// than the whole pipeline).
				d.publisher = mqttio.NewPublisher(o)
				if err := d.publisher.Start(context.Background()); err != nil {
					return fmt.Errorf("sink %s: %w", s.Name, err)
				}
			}
			d.sinks[s.Name] = pipeline.NewMQTTSink(d.publisher, byte(*s.MQTT.QoS), s.MQTT.Retain)
		case s.File != nil:
			fs, err := pipeline.NewFileSink(d.cfg.Path(s.File.Path), int64(s.File.MaxSize), s.File.MaxFiles)
			if err != nil {
				return fmt.Errorf("sink %s: %w", s.Name, err)
			}
			d.sinks[s.Name] = fs
		}
	}
	return nil
}

// startIngest connects every source to the broker. Messages go to the
// ingest logs whether or not a job is running.
func (d *Daemon) startIngest(ctx context.Context) error {
	for _, s := range d.cfg.Sources {
		o, err := d.clientOptions("-" + s.Name)
		if err != nil {
			return err
		}
		// No paho file store: what is not acknowledged is held by the
		// broker's persistent session, what is acknowledged is in the
		// ingest log. A file per message would cap ingest at a few
		// thousand messages per second.
		in := pipeline.NewIngest(s.Name, d.logs[s.Name], o,
			[]mqttio.Subscription{{Filter: s.Topic, QoS: byte(*s.QoS)}}, d.log.With("component", "ingest"))
		d.mu.Lock()
		d.ingests[s.Name] = in
		d.mu.Unlock()
		if err := in.Start(ctx); err != nil {
			return fmt.Errorf("source %s: %w", s.Name, err)
		}
	}
	return nil
}

// receiving reports whether source name takes messages (connected, its log
// not full): only then may a quiet source advance the watermark.
func (d *Daemon) receiving(name string) func() bool {
	return func() bool {
		d.mu.Lock()
		in := d.ingests[name]
		d.mu.Unlock()
		return in != nil && in.Connected() && !in.Full()
	}
}

// jobSpec translates the configuration into a pipeline.JobSpec.
// Checkpoint timing comes from the running configuration, so that values
// applied by a reload survive a job restart.
func (d *Daemon) jobSpec() pipeline.JobSpec {
	c := d.running()
	spec := pipeline.JobSpec{
		Name: c.ApplianceID, Parallelism: c.Pipeline.EffectiveParallelism(), MaxParallelism: c.Pipeline.MaxParallelism,
		State: pipeline.StateSpec{
			Dir: filepath.Join(c.DataDir, dirState), Memory: d.memory, Timers: c.State.Timers,
			WriteCacheEntries: c.State.WriteCacheEntries, MaxBackgroundJobs: c.State.MaxBackgroundJobs,
			ColumnFamilies: map[string]state.CFOptions{},
		},
		Checkpointing: pipeline.CheckpointOptions{
			Interval: c.Checkpointing.Interval, Mode: c.Checkpointing.Mode, Timeout: c.Checkpointing.Timeout,
			MinPause: c.Checkpointing.MinPause, MaxConcurrent: c.Checkpointing.MaxConcurrent,
			TolerableFailures: c.Checkpointing.TolerableFailures, NumRetained: c.Checkpointing.NumRetained,
			Incremental: c.Checkpointing.Incremental, Compression: c.Checkpointing.Compression,
			LocalRecovery: c.Checkpointing.LocalRecovery, History: c.Checkpointing.History,
		},
		Checkpoints: d.store,
	}
	for name, cf := range c.State.ColumnFamilies {
		spec.State.ColumnFamilies[name] = state.CFOptions{
			WriteBufferSize: int64(cf.WriteBufferSize), MaxWriteBufferNumber: cf.MaxWriteBufferNumber,
			ArenaBlockSize: int64(cf.ArenaBlockSize), Compression: cf.Compression,
		}
	}
	for _, s := range c.Sources {
		spec.Sources = append(spec.Sources, pipeline.SourceSpec{
			Name: s.Name, Parallelism: s.EffectiveParallelism(), Log: d.logs[s.Name], TopicFields: s.TopicFields,
			EventTime: pipeline.EventTimeSpec{
				Field: s.EventTime.Field, Format: s.EventTime.Format, MaxOutOfOrderness: s.EventTime.MaxOutOfOrderness,
				IdleTimeout: s.EventTime.IdleTimeout, IdleAdvance: s.EventTime.IdleAdvance, MaxFuture: s.EventTime.MaxFuture,
			},
			Receiving: d.receiving(s.Name),
		})
	}
	for _, st := range c.Pipeline.Stages {
		ps := pipeline.StageSpec{Name: st.Name, From: st.From, Filter: st.Filter, Map: st.Map,
			KeyBy: st.KeyBy, Aggregates: st.Aggregate}
		if w := st.Window; w != nil {
			ps.Window = &pipeline.WindowSpec{Type: w.Type, Size: w.Size, Slide: w.Slide, Gap: w.Gap, AllowedLateness: w.AllowedLateness}
		}
		spec.Stages = append(spec.Stages, ps)
	}
	for _, s := range c.Sinks {
		ss := pipeline.SinkSpec{Name: s.Name, From: s.From, DeadLetters: s.DeadLetters, Sink: d.sinks[s.Name]}
		if s.MQTT != nil {
			ss.Topic = s.MQTT.Topic
		}
		spec.Sinks = append(spec.Sinks, ss)
	}
	return spec
}

// buildJob restores the newest checkpoint that verifies (renaming broken
// ones) and builds the job on it.
func (d *Daemon) buildJob() (*pipeline.Job, error) {
	spec := d.jobSpec()
	d.wireUpload(&spec)
	if err := os.RemoveAll(spec.State.Dir); err != nil {
		return nil, fmt.Errorf("clear working state: %w", err)
	}
	if err := fileutil.CreateDirAll(spec.State.Dir); err != nil {
		return nil, err
	}
	if d.store != nil {
		t0 := time.Now()
		md, broken, err := d.store.Latest(false)
		if err != nil {
			return nil, fmt.Errorf("find checkpoint to restore: %w", err)
		}
		for _, b := range broken {
			d.log.Error("checkpoint failed verification and was set aside", "checkpoint", b.ID, "path", b.Path, "reason", b.Reason)
			brokenCheckpoints.Inc()
		}
		if md, err = d.remoteRestore(&spec, md); err != nil {
			return nil, err
		}
		if md != nil {
			verified := make(chan error, 1)
			go func() { verified <- d.store.Verify(md, true) }()
			spec.Restore, spec.RestoreVerified = md, verified
			d.log.Info("restoring from checkpoint", "checkpoint", md.ID, "source", spec.RestoreSource,
				"age", time.Since(time.UnixMilli(md.CompletedTimestamp)).Round(time.Second))
		}
		job, err := pipeline.NewJob(spec, nil, d.log.With("component", "pipeline"))
		if err != nil {
			return nil, err
		}
		restoreSeconds.Set(time.Since(t0).Seconds())
		return job, nil
	}
	return pipeline.NewJob(spec, nil, d.log.With("component", "pipeline"))
}

// DefaultStopTimeout bounds the final checkpoint of a graceful stop. It is
// below the unit's TimeoutStopSec=60s, leaving time to close RocksDB.
const DefaultStopTimeout = 45 * time.Second

// Run starts everything and supervises the job: a job that fails is rebuilt
// from the newest good checkpoint, with backoff. It returns nil after Stop
// (a graceful stop: final checkpoint, its output published) or once ctx is
// done (a hard stop: the job drains without a final checkpoint; the next
// start replays from the last checkpoint).
//
// Under systemd (NOTIFY_SOCKET) it sends READY=1 once recovery is done,
// STATUS= lines, and WATCHDOG=1 while the pipeline is not stalled (see
// stalled).
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sdDone := make(chan struct{})
	go func() {
		defer close(sdDone)
		d.sd.run(ctx)
	}()
	defer func() {
		cancel()
		<-sdDone
	}()
	if err := d.startHTTP(); err != nil {
		return err
	}
	go d.http.serve()
	if err := d.startIngest(ctx); err != nil {
		return err
	}
	stopRetention := d.startRetention(ctx)
	defer stopRetention()
	backoff := time.Second
	for {
		if d.stopping() {
			return nil
		}
		job, err := d.startJob()
		if err != nil {
			return err
		}
		err = d.runJob(ctx, job)
		d.mu.Lock()
		d.job = nil
		d.mu.Unlock()
		if cerr := job.Close(); cerr != nil {
			d.log.Warn("closing job", "err", cerr)
		}
		if ctx.Err() != nil || d.stopping() {
			return nil
		}
		if err == nil {
			err = errors.New("job ended without error")
		}
		d.mu.Lock()
		d.restarts++
		d.lastErr = err.Error()
		d.mu.Unlock()
		jobRestarts.Inc()
		var corrupt *pipeline.ErrCorruptRestore
		if errors.As(err, &corrupt) {
			path, merr := d.store.MarkBroken(corrupt.ID, corrupt.Err)
			d.log.Error("restored checkpoint is corrupt; set aside, restarting from the previous one",
				"checkpoint", corrupt.ID, "path", path, "err", corrupt.Err, "rename_err", merr)
			brokenCheckpoints.Inc()
			continue
		}
		d.log.Error("job failed; restarting from the last completed checkpoint", "err", err, "in", backoff)
		d.setPhase(fmt.Sprintf("restarting in %s after failure: %s", backoff, err))
		select {
		case <-ctx.Done():
			return nil
		case <-d.stop:
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Minute)
	}
}

// startJob recovers and builds the next job and makes it the running one.
// A reload waits for it, so the job starts on the running configuration.
func (d *Daemon) startJob() (*pipeline.Job, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.setPhase("recovering")
	job, err := d.buildJob()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.job = job
	d.mu.Unlock()
	d.startUpload()
	d.log.Info("pipeline running", "tasks", len(job.Overview()))
	// Recovery is done: tell systemd (READY=1) after saying so in the log.
	d.readyOne.Do(func() {
		close(d.ready)
		d.sd.ready()
	})
	return job, nil
}

// runJob runs job until it ends, ctx is done, or Stop asks for a graceful
// stop: then the sources stop reading, a final checkpoint is taken within
// stopTimeout, its output is published, and the job drains.
func (d *Daemon) runJob(ctx context.Context, job *pipeline.Job) error {
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- job.Run(jctx) }()
	select {
	case err := <-done:
		return err
	case <-d.stop:
	}
	if job.Stats() != nil {
		fctx, cancelF := context.WithTimeout(ctx, d.stopTimeout)
		t0 := time.Now()
		id, err := job.StopWithCheckpoint(fctx)
		cancelF()
		if err != nil {
			d.log.Error("final checkpoint failed; the next start replays from the last completed checkpoint",
				"checkpoint", id, "err", err, "timeout", d.stopTimeout)
		} else {
			d.log.Info("final checkpoint completed", "checkpoint", id, "duration", time.Since(t0).Round(time.Millisecond))
		}
	}
	cancel()
	return <-done
}

// startRetention drops consumed ingest-log segments when checkpointing is
// off (with checkpoints, the coordinator truncates to the oldest retained
// checkpoint).
func (d *Daemon) startRetention(ctx context.Context) func() {
	if d.store != nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if job := d.currentJob(); job != nil {
				for name, off := range job.SourceOffsets() {
					if err := d.logs[name].TruncateFront(off); err != nil {
						d.log.Warn("ingest log retention", "source", name, "err", err)
					}
				}
			}
		}
	}()
	return cancel
}

// running returns the running configuration: the one eddy started with,
// plus what reloads applied. Treat it as read-only.
func (d *Daemon) running() *config.Config {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.live
}

func (d *Daemon) setPhase(p string) {
	d.mu.Lock()
	d.phase = p
	d.mu.Unlock()
	d.sd.statusNow()
}

func (d *Daemon) currentJob() *pipeline.Job {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.job
}

// Ready is closed once recovery is done and the first job runs.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// HTTPAddr is the address the HTTP server listens on.
func (d *Daemon) HTTPAddr() string {
	if d.http == nil {
		return ""
	}
	return d.http.Addr()
}

// Close stops and closes every component. It is idempotent.
func (d *Daemon) Close() error {
	errs := []error{d.closeUpload()}
	if d.http != nil {
		d.http.close()
		d.http = nil
	}
	for name, in := range d.ingests {
		errs = append(errs, in.Close())
		delete(d.ingests, name)
	}
	for name, l := range d.logs {
		errs = append(errs, l.Close())
		delete(d.logs, name)
	}
	for name, s := range d.sinks {
		errs = append(errs, s.Close())
		delete(d.sinks, name)
	}
	if d.publisher != nil {
		errs = append(errs, d.publisher.Close())
		d.publisher = nil
	}
	if d.memory != nil {
		d.memory.Close()
		d.memory = nil
	}
	if d.broker != nil {
		errs = append(errs, d.broker.Close())
		d.broker = nil
	}
	return errors.Join(errs...)
}
