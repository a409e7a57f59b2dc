package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/daemon/plan"
	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/pipeline/ingest"
	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/pipeline/sink"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/ingestlog"
	"github.com/eddy-stream/eddy/storage/state"
)

// Daemon is one running eddy: every long-lived component and the job
// supervisor. Build it with New, run it with Run.
type Daemon struct {
	allowNonRestored bool // eddy run --allow-non-restored-state
	// afterSupervised, set only by tests, runs after the supervisor has
	// returned and before its actor does; interrupted is closed by the
	// actor's interrupt (another actor has returned first).
	afterSupervised func(interrupted <-chan struct{})
	cfg             *config.Config
	log             *slog.Logger
	level           *slog.LevelVar
	start           time.Time

	layout datadir.Layout
	fs     fileutil.OSFS // every store writes through it (slow-fsync log, fsync histogram)
	lock   *fileutil.Lock

	// Opened by New, closed by Close.
	logs       map[string]*ingestlog.Log
	sinks      map[string]sink.Sink // file sinks; MQTT sinks are added by Run
	memory     *state.Memory        // replaced (under mu) by a pipeline reload that changes the number of RocksDB instances
	store      *checkpoint.Store
	http       *httpServer // listening; served by Run
	httpRemote bool        // the access policy admits remote clients

	// Started by Run (run.go) once the broker is up, stopped by it.
	broker     *mqttio.Embedded
	brokerURL  string
	publishers []*mqttio.Publisher          // one per distinct sink connection, see startPublisher; guarded by mu
	pubByConn  map[string]*mqttio.Publisher // publishers by connection ("" the default), see openMQTTSink
	pubCtx     context.Context              // the publishers' context, set by startPublisher; guarded by mu
	ingests    map[string]*ingest.Bridge    // guarded by mu

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

	reloads chan struct{}      // SIGHUP → the reload actor (run.go)
	verify  chan verifyRequest // buildJob → the verification actor (run.go)

	// runMu orders Run against Close: Close interrupts a running group
	// and waits for Run to return before it closes anything.
	runMu     sync.Mutex
	runCancel context.CancelFunc // cancels the group; nil until Run
	runDone   chan struct{}      // closed when Run returns
	closed    bool
	closeOnce sync.Once
	closeErr  error

	notify      *notifier
	disk        diskState    // daemon/disk.go
	reserve     reserveState // daemon/reserve.go
	spool       spoolState   // daemon/spool.go
	brokerDrops brokerDrops  // the broker's own drop counter (broker.go)
	uploadHooks
	upl *uploadState // daemon/upload.go

	history history        // the charts' last hour (history.go)
	sp      savepointState // daemon/savepoints.go
	rj      reloadJobState // a reload of pipeline/sinks (reloadjob.go)
	spf     spForward      // savepoint upload retries (spforward.go)
}

// New locks data_dir (data_dir/LOCK; a second eddy on the same directory
// gets a *fileutil.LockedError naming the holder's PID), prepares it and
// opens every component: ingest logs, file sinks, the checkpoint store, the
// state memory, the uploader, the HTTP listener. It starts no broker, no
// MQTT client, no server and no loop of its own; Run does. (Every ingest
// log runs its background goroutine — group commit, and retrying recovery
// after a failed write or fsync — from Open until its Close: that goroutine
// belongs to the log.) On error everything opened
// so far is closed.
func New(cfg *config.Config, log *slog.Logger, level *slog.LevelVar) (*Daemon, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{
		cfg: cfg, live: cfg, log: log, level: level, start: time.Now(),
		layout: datadir.New(cfg.DataDir),
		fs:     fileutil.OSFS{Logger: log.With("component", "fsync"), OnSync: observeFsync},
		logs:   map[string]*ingestlog.Log{}, ingests: map[string]*ingest.Bridge{},
		sinks: map[string]sink.Sink{}, ready: make(chan struct{}),
		stop: make(chan struct{}), stopTimeout: DefaultStopTimeout, phase: "starting",
		reloads: make(chan struct{}, 1), verify: make(chan verifyRequest),
	}
	d.rj.signal = make(chan struct{}, 1)
	d.spf.init()
	d.notify = newNotifier(d)
	if err := d.open(); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

// open is New's work; on error New closes what it opened.
func (d *Daemon) open() (err error) {
	cfg, log := d.cfg, d.log
	if err := d.lockDataDir(); err != nil {
		return err
	}
	if d.token, err = loadToken(cfg.HTTP); err != nil {
		return err
	}
	if err := d.prepareDataDir(); err != nil {
		return err
	}
	if _, err := d.clientOptions(""); err != nil { // mqtt.password_file, before anything connects
		return err
	}
	for _, s := range cfg.Sources {
		l, err := ingestlog.Open(ingestlog.Options{
			Dir:          d.layout.Ingest(s.Name),
			SegmentSize:  int64(cfg.IngestLog.SegmentSize),
			MaxSize:      int64(cfg.IngestLog.MaxSize),
			SyncInterval: cfg.IngestLog.SyncInterval,
			FS:           d.fs,
			Logger:       log.With("component", "ingestlog", "source", s.Name),
		})
		if err != nil {
			return fmt.Errorf("open ingest log of source %s: %w", s.Name, err)
		}
		d.logs[s.Name] = l
	}
	if err := d.openSinks(); err != nil {
		return err
	}
	if d.memory, err = newMemory(cfg); err != nil {
		return err
	}
	if cfg.Checkpointing.Interval > 0 {
		if d.store, err = checkpoint.Open(d.layout.Checkpoints(), d.fs, log.With("component", "checkpoints")); err != nil {
			return err
		}
	}
	if err := d.openReserve(); err != nil {
		return err
	}
	if err := d.openUpload(); err != nil {
		return err
	}
	if err := d.openHTTP(); err != nil {
		return err
	}
	return nil
}

// numDBs is how many RocksDB instances the job of cfg opens.
func numDBs(cfg *config.Config) int {
	n := 0
	for i := range cfg.Pipeline.Stages {
		if cfg.Pipeline.Stages[i].Kind() == config.KindWindow {
			n += cfg.Pipeline.EffectiveParallelism()
		}
	}
	return max(n, 1)
}

// newMemory is the managed memory of the job of cfg: state.memory split
// over its RocksDB instances. It sets the Go runtime's soft memory limit
// from it (state.SetGoMemoryLimit; GOMEMLIMIT in the environment wins).
func newMemory(cfg *config.Config) (*state.Memory, error) {
	m, err := state.NewMemory(state.MemoryOptions{
		Managed:           int64(cfg.State.Memory.Managed),
		WriteBufferRatio:  cfg.State.Memory.WriteBufferRatio,
		HighPrioPoolRatio: cfg.State.Memory.HighPrioPoolRatio,
		WriteCacheRatio:   cfg.State.Memory.WriteCacheRatio,
		NumDBs:            numDBs(cfg),
	})
	if err != nil {
		return nil, err
	}
	state.SetGoMemoryLimit(m)
	return m, nil
}

// lockDataDir takes data_dir/LOCK before anything else in data_dir is
// opened; Close releases it (and the kernel does when the process dies).
func (d *Daemon) lockDataDir() error {
	if err := fileutil.CreateDirAllFS(d.fs, d.layout.Root); err != nil {
		return fmt.Errorf("data_dir %s: %w", d.layout.Root, err)
	}
	l, err := fileutil.Flock(d.layout.Lock())
	if err != nil {
		return err // *fileutil.LockedError names the holder
	}
	d.lock = l
	return nil
}

func (d *Daemon) prepareDataDir() error {
	dd := d.layout.Root
	for _, dir := range []string{d.layout.IngestRoot(), d.layout.State(), d.layout.Checkpoints()} {
		if err := fileutil.CreateDirAllFS(d.fs, dir); err != nil {
			return fmt.Errorf("data_dir %s: %w", dd, err)
		}
	}
	removed, err := fileutil.RemoveTmpFS(d.fs, dd)
	if err != nil {
		return fmt.Errorf("data_dir %s: remove leftovers: %w", dd, err)
	}
	for _, r := range removed {
		d.log.Info("removed leftover temporary file", "path", r)
	}
	same, err := fileutil.SameFilesystem(d.layout.State(), d.layout.Checkpoints())
	if err != nil {
		return err
	}
	if !same {
		return fmt.Errorf("data_dir %s: %s and %s are on different filesystems; checkpoints are hard links "+
			"to the working state and need one filesystem (do not mount either separately)",
			dd, d.layout.State(), d.layout.Checkpoints())
	}
	return nil
}

func (d *Daemon) clientOptions(suffix string) (mqttio.ClientOptions, error) {
	o, err := connOptions(d.cfg.MQTT, suffix, "mqtt", d.log)
	if d.brokerURL != "" {
		o.Broker = d.brokerURL
	}
	return o, err
}

// connOptions are the client options of connection m, configured under
// key k (mqtt, or sinks[i].mqtt.connection).
func connOptions(m config.MQTT, suffix, k string, log *slog.Logger) (mqttio.ClientOptions, error) {
	o := mqttio.ClientOptions{
		Broker: m.Broker, ClientID: m.ClientID + suffix, Username: m.Username, Password: m.Password,
		CAFile: m.TLS.CAFile, CertFile: m.TLS.CertFile, KeyFile: m.TLS.KeyFile,
		InsecureSkipVerify: m.TLS.InsecureSkipVerify, CleanSession: m.CleanSession,
		KeepAlive: m.KeepAlive, ConnectTimeout: m.ConnectTimeout, ReconnectMaxInterval: m.ReconnectMaxInterval,
		Logger: log.With("component", "mqtt", "client", m.ClientID+suffix),
	}
	if m.PasswordFile != "" {
		b, err := os.ReadFile(m.PasswordFile)
		if err != nil {
			return o, fmt.Errorf("%s.password_file: %w", k, err)
		}
		o.Password = strings.TrimSpace(string(b))
	}
	return o, nil
}

// openSinks opens the file sinks. The MQTT sinks need the broker's
// address, known once Run has started the embedded broker (startPublisher).
func (d *Daemon) openSinks() error {
	for _, s := range d.cfg.Sinks {
		if s.File != nil {
			fs, err := d.openFileSink(s)
			if err != nil {
				return err
			}
			d.sinks[s.Name] = fs
		}
	}
	return nil
}

// receiving reports whether source name takes messages (connected, its log
// not paused: not full, the disk not below disk.min_free): only then may a
// quiet source advance the watermark.
func (d *Daemon) receiving(name string) func() bool {
	return func() bool {
		d.mu.RLock()
		in := d.ingests[name]
		d.mu.RUnlock()
		l := d.logs[name]
		return in != nil && in.Connected() && l != nil && len(l.Paused()) == 0
	}
}

// jobSpec translates the configuration into a pipeline.JobSpec
// (plan.JobSpec, shared with `eddy plan`). Checkpoint timing comes from the
// running configuration, so that values applied by a reload survive a job
// restart.
func (d *Daemon) jobSpec() pipeline.JobSpec { return d.jobSpecFor(d.running()) }

// jobSpecFor is jobSpec on configuration c (a reload checks and builds the
// job of the new file with it).
func (d *Daemon) jobSpecFor(c *config.Config) pipeline.JobSpec {
	spec := plan.JobSpec(c, plan.Resources{
		StateDir: d.layout.State(), Memory: d.memory, Store: d.store, FS: d.fs,
		Logs: d.logs, Sinks: d.sinks, Receiving: d.receiving,
	})
	spec.OnSpoolFull = d.setSpoolFull
	spec.OnNoSpace = d.reserveOnNoSpace
	spec.BatchCost = testBatchCost()
	spec.Savepoints = d.savepointStore()
	spec.AllowNonRestoredState = c.Checkpointing.AllowNonRestoredState || d.allowNonRestored
	for i, s := range c.Sinks {
		spec.Sinks[i].Spool = d.spoolSpec(s.Name, int64(s.Spool.MaxSize))
	}
	return spec
}

// buildJob restores the newest checkpoint that verifies (renaming broken
// ones) and builds the job on it.
func (d *Daemon) buildJob() (*pipeline.Job, error) {
	spec := d.jobSpec()
	d.wireUpload(&spec)
	if prev := spec.OnCheckpoint; d.reserve.r != nil {
		spec.OnCheckpoint = func(md *checkpoint.Metadata) {
			d.reserve.noteCheckpoint(md)
			if prev != nil {
				prev(md)
			}
		}
	}
	if err := d.fs.RemoveAll(spec.State.Dir); err != nil {
		return nil, fmt.Errorf("clear working state: %w", err)
	}
	if err := fileutil.CreateDirAllFS(d.fs, spec.State.Dir); err != nil {
		return nil, err
	}
	if d.store != nil {
		t0 := time.Now()
		if ok, err := d.savepointRestore(&spec); err != nil || ok {
			if err != nil {
				return nil, err
			}
			return pipeline.NewJob(spec, nil, d.log.With("component", "pipeline"))
		}
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
			verified, err := d.requestVerify(md)
			if err != nil {
				return nil, err
			}
			spec.Restore, spec.RestoreVerified = md, verified
			d.reserve.noteCheckpoint(md)
			d.log.Info("restoring from checkpoint", "checkpoint", md.ID, "source", spec.RestoreSource,
				"age", time.Since(time.UnixMilli(md.CompletedTimestamp)).Round(time.Second))
		}
		job, err := pipeline.NewJob(spec, nil, d.log.With("component", "pipeline"))
		if err != nil {
			return nil, err
		}
		observeRestore(time.Since(t0))
		return job, nil
	}
	return pipeline.NewJob(spec, nil, d.log.With("component", "pipeline"))
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
	d.notify.statusNow()
}

func (d *Daemon) currentJob() *pipeline.Job {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.job
}

// Ready is closed once recovery is done and the first job runs.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// HTTPAddr is the address the HTTP server listens on (set by New).
func (d *Daemon) HTTPAddr() string {
	if d.http == nil {
		return ""
	}
	return d.http.Addr()
}

// Close interrupts Run, if it runs, and waits for it to return; then it
// closes what New opened, in the group's interrupt order: the HTTP
// listener, the uploader, ingest, the publisher and the embedded broker
// (each already stopped by Run if it ran), then the ingest logs, the sinks,
// the state memory, and last the lock on data_dir. It is idempotent and
// safe to call from any goroutine, also while Run is returning.
func (d *Daemon) Close() error {
	d.runMu.Lock()
	d.closed = true
	cancel, done := d.runCancel, d.runDone
	d.runMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	d.closeOnce.Do(func() { d.closeErr = d.closeAll() })
	return d.closeErr
}

func (d *Daemon) closeAll() error {
	var errs []error
	if d.http != nil {
		d.http.close()
	}
	errs = append(errs, d.closeUpload())
	d.mu.Lock()
	ingests := d.ingests
	d.ingests = map[string]*ingest.Bridge{}
	d.mu.Unlock()
	for _, in := range ingests {
		errs = append(errs, in.Close())
	}
	for _, p := range d.publishers {
		errs = append(errs, p.Close())
	}
	if d.broker != nil {
		errs = append(errs, d.broker.Close())
	}
	for name, l := range d.logs {
		errs = append(errs, l.Close())
		delete(d.logs, name)
	}
	for name, s := range d.sinks {
		errs = append(errs, s.Close())
		delete(d.sinks, name)
	}
	if d.memory != nil {
		d.memory.Close()
		d.memory = nil
	}
	errs = append(errs, d.lock.Release())
	return errors.Join(errs...)
}
