package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/oklog/run"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/pipeline/ingest"
	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/state"
)

// DefaultStopTimeout bounds the final checkpoint of a graceful stop. It is
// below the unit's TimeoutStopSec=60s, leaving time to close RocksDB.
const DefaultStopTimeout = 45 * time.Second

// ErrClosed is returned by Run after Close, or when Run is called twice.
var ErrClosed = errors.New("daemon: closed or already run")

// Run starts every long-lived goroutine in one run group
// (github.com/oklog/run) and returns when the group has ended, with the
// error of the actor that ended it. The actors, in interrupt order:
//
//   - signals: SIGTERM/SIGINT stop gracefully (Stop), a second one stops
//     at once (cancels the group), SIGHUP asks the reload actor to reload;
//   - HTTP: serves the listener New opened; a failed Serve ends the group
//     with its error;
//   - the job supervisor: recovers, runs the job, rebuilds a failed one
//     with backoff. After Stop it takes a final checkpoint and returns nil,
//     which ends the group; interrupted by another actor it stops the same
//     graceful way;
//   - one ingest per source: MQTT → ingest log, from when the broker is up;
//   - verification: the full check of a restored checkpoint, while the job
//     already runs; it serves until the supervisor has returned;
//   - the uploader, started once the first job runs (after a remote
//     recovery it reconciles against the restored checkpoint);
//   - retention of the ingest logs (only with checkpointing off);
//   - the disk watcher (disk.go): pauses intake while a watched file
//     system is below disk.min_free;
//   - reload (SIGHUP);
//   - the systemd notifier (READY=1, STATUS=, WATCHDOG=1): it runs until
//     the supervisor has returned, so the watchdog is fed through the final
//     checkpoint;
//   - the MQTT publisher of the MQTT sinks: it starts once the broker is up
//     and closes after the supervisor has returned (the final checkpoint
//     publishes through it);
//   - the broker watch: the broker's own count of dropped messages
//     (broker.go), from when the broker is up;
//   - the embedded broker (mqtt.broker: embedded): started first, closed
//     after every client of it has disconnected.
//
// Run returns nil after a graceful stop (Stop: final checkpoint, its output
// published) or once ctx is done or Close is called (a hard stop: the job
// drains without a final checkpoint; the next start replays from the last
// checkpoint). Run may be called once.
func (d *Daemon) Run(ctx context.Context) error {
	d.runMu.Lock()
	if d.closed || d.runDone != nil {
		d.runMu.Unlock()
		return ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	d.runCancel, d.runDone = cancel, make(chan struct{})
	done := d.runDone
	d.runMu.Unlock()
	defer close(done)
	defer cancel()

	r := &runState{ctx: ctx, hardStop: cancel, brokerUp: make(chan struct{}), sinksUp: make(chan struct{}),
		supervised: make(chan struct{})}
	d.rj.mu.Lock()
	d.rj.supervised = r.supervised // a pipeline reload waits on the supervisor (reloadjob.go)
	d.rj.mu.Unlock()
	var g run.Group
	d.addSignals(&g, r)
	d.addHTTP(&g, r)
	d.addSupervisor(&g, r)
	for _, s := range d.cfg.Sources {
		d.addIngest(&g, r, s)
	}
	d.addVerification(&g, r)
	d.addUploader(&g, r)
	d.addSavepointUploads(&g, r)
	d.addRetention(&g, r)
	d.addDisk(&g, r)
	d.addReload(&g, r)
	d.addNotifier(&g, r)
	d.addHistory(&g, r)
	d.addPublisher(&g, r)
	d.addBrokerWatch(&g, r)
	d.addBroker(&g, r)
	err := g.Run()
	if r.supErr != nil {
		// The group returns the first actor's result; actors that end
		// when the supervisor has returned can come first with nil.
		return r.supErr
	}
	return err
}

// runState is what the actors of one Run share.
type runState struct {
	ctx      context.Context // cancelled by a hard stop, Close, or Run's ctx
	hardStop context.CancelFunc

	brokerUp   chan struct{}  // closed once the broker is up (or is not embedded)
	sinksUp    chan struct{}  // closed once the MQTT sinks exist and their publisher started
	supervised chan struct{}  // closed when the supervisor has returned
	supErr     error          // what the supervisor returned; set before supervised is closed
	clients    sync.WaitGroup // ingests and the publisher: the broker closes after them
}

// awaitBroker waits until the broker is up (the actors that connect to
// it start then); false when ctx ended first.
func (r *runState) awaitBroker(ctx context.Context) bool {
	select {
	case <-r.brokerUp:
		return true
	case <-ctx.Done():
		return false
	}
}

// actorContext returns a context that the actor's interrupt cancels.
func (r *runState) actorContext() (context.Context, func(error)) {
	ctx, cancel := context.WithCancel(r.ctx)
	return ctx, func(error) { cancel() }
}

// addSignals wires SIGHUP, SIGTERM and SIGINT to the daemon.
func (d *Daemon) addSignals(g *run.Group, r *runState) {
	ctx, interrupt := r.actorContext()
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	g.Add(func() error {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return nil
			case sig := <-ch:
				switch sig {
				case syscall.SIGHUP:
					select {
					case d.reloads <- struct{}{}:
					default: // a reload is pending; it reads the newest file
					}
				default:
					if d.stopping() {
						d.log.Warn("second stop signal: stopping now, without waiting for the final checkpoint", "signal", sig.String())
						r.hardStop()
						continue
					}
					d.log.Info("signal received", "signal", sig.String())
					d.Stop()
				}
			}
		}
	}, interrupt)
}

// addHTTP serves the listener New opened, once the broker is up: the line
// "HTTP API listening" comes after the broker's address, so whoever waits
// for it knows where to publish.
func (d *Daemon) addHTTP(g *run.Group, r *runState) {
	if d.http == nil {
		return
	}
	ctx, cancel := context.WithCancel(r.ctx)
	g.Add(func() error {
		if !r.awaitBroker(ctx) {
			return nil
		}
		d.log.Info("HTTP API listening", "url", "http://"+d.http.Addr(), "token", d.token != "", "remote", d.httpRemote)
		if err := d.http.serve(); err != nil {
			return fmt.Errorf("http.listen %s: %w", d.cfg.HTTP.Listen, err)
		}
		return nil
	}, func(error) {
		cancel()
		d.http.close()
	})
}

// setAsideCorrupt moves the checkpoint a job found corrupt while restoring
// it (at open, or by the full verification in the background) out of the
// way, so the next start restores the one before; it reports whether err
// was such a find.
func (d *Daemon) setAsideCorrupt(err error) bool {
	var corrupt *pipeline.ErrCorruptRestore
	if !errors.As(err, &corrupt) {
		return false
	}
	path, merr := d.store.MarkBroken(corrupt.ID, corrupt.Err)
	d.log.Error("restored checkpoint is corrupt; set aside, restarting from the previous one",
		"checkpoint", corrupt.ID, "path", path, "err", corrupt.Err, "rename_err", merr)
	brokenCheckpoints.Inc()
	return true
}

// addSupervisor runs the job supervisor. An interrupt from another actor
// stops it gracefully, like Stop.
func (d *Daemon) addSupervisor(g *run.Group, r *runState) {
	interrupted := make(chan struct{})
	g.Add(func() error {
		err := d.supervise(r)
		r.supErr = err // before close: the actors that end on supervised race its return
		close(r.supervised)
		if d.afterSupervised != nil {
			d.afterSupervised(interrupted)
		}
		return err
	}, func(error) {
		close(interrupted)
		select {
		case <-r.supervised:
		default:
			d.Stop()
		}
	})
}

// addIngest connects source s to the broker once it is up. Messages go to
// the ingest log whether or not a job is running.
func (d *Daemon) addIngest(g *run.Group, r *runState, s config.Source) {
	ctx, interrupt := r.actorContext()
	r.clients.Add(1)
	g.Add(func() error {
		defer r.clients.Done()
		if !r.awaitBroker(ctx) {
			return nil
		}
		o, err := d.clientOptions("-" + s.Name)
		if err != nil {
			return err
		}
		// No paho file store: what is not acknowledged is held by the
		// broker's persistent session, what is acknowledged is in the
		// ingest log. A file per message would cap ingest at a few
		// thousand messages per second.
		in := ingest.New(s.Name, d.logs[s.Name], o,
			[]mqttio.Subscription{{Filter: s.Topic, QoS: byte(*s.QoS)}}, d.log.With("component", "ingest"))
		d.mu.Lock()
		d.ingests[s.Name] = in
		d.mu.Unlock()
		defer in.Close()
		if err := in.Start(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("source %s: %w", s.Name, err)
		}
		<-ctx.Done()
		return nil
	}, interrupt)
}

// verifyRequest asks the verification actor for the full check of md.
type verifyRequest struct {
	md     *checkpoint.Metadata
	result chan error // buffered 1
}

// requestVerify hands md to the verification actor and returns the channel
// its result arrives on (pipeline.JobSpec.RestoreVerified).
func (d *Daemon) requestVerify(md *checkpoint.Metadata) (<-chan error, error) {
	req := verifyRequest{md: md, result: make(chan error, 1)}
	select {
	case d.verify <- req:
		return req.result, nil
	case <-d.stop:
		return nil, errStopped
	}
}

// errStopped ends a recovery that a graceful stop interrupted.
var errStopped = errors.New("daemon: stopped during recovery")

// addVerification checks restored checkpoints in full (SST checksums).
// It serves until the supervisor has returned: a job waiting on a result
// gets it, also while it takes its final checkpoint. A verification in
// progress is not cancelled.
func (d *Daemon) addVerification(g *run.Group, r *runState) {
	g.Add(func() error {
		for {
			select {
			case req := <-d.verify:
				req.result <- d.store.Verify(req.md, true)
			case <-r.supervised:
				return nil
			}
		}
	}, func(error) {})
}

// addUploader starts the uploader once the first job runs and closes it on
// interrupt.
func (d *Daemon) addUploader(g *run.Group, r *runState) {
	u := d.upl
	if u == nil || u.up == nil {
		return
	}
	ctx, interrupt := r.actorContext()
	g.Add(func() error {
		select {
		case <-d.ready:
		case <-ctx.Done():
			return nil
		}
		d.startUpload()
		<-ctx.Done()
		return d.closeUpload()
	}, interrupt)
}

// addRetention drops consumed ingest-log segments when checkpointing is
// off (with checkpoints, the coordinator truncates to the oldest retained
// checkpoint).
func (d *Daemon) addRetention(g *run.Group, r *runState) {
	if d.store != nil {
		return
	}
	ctx, interrupt := r.actorContext()
	g.Add(func() error {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
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
	}, interrupt)
}

// addReload reloads the configuration on SIGHUP. Reload waits while a job
// is being built, so it runs here and never blocks the signal actor.
func (d *Daemon) addReload(g *run.Group, r *runState) {
	ctx, interrupt := r.actorContext()
	g.Add(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-d.reloads:
				_, _ = d.Reload() // logs what it did or refused
			}
		}
	}, interrupt)
}

// addNotifier runs the systemd notifier until the supervisor has returned
// (or a hard stop).
func (d *Daemon) addNotifier(g *run.Group, r *runState) {
	g.Add(func() error {
		d.notify.run(r.ctx, r.supervised)
		return nil
	}, func(error) {})
}

// addPublisher creates the MQTT sinks' publisher once the broker is up,
// starts it, and closes it once the supervisor has returned.
func (d *Daemon) addPublisher(g *run.Group, r *runState) {
	r.clients.Add(1)
	g.Add(func() error {
		defer r.clients.Done()
		select {
		case <-r.brokerUp:
		case <-r.supervised:
			return nil
		}
		if err := d.startPublisher(r.ctx); err != nil {
			return err
		}
		close(r.sinksUp)
		<-r.supervised
		var errs []error
		d.mu.Lock()
		pubs := d.publishers // a pipeline reload may have added some (openMQTTSink)
		d.mu.Unlock()
		for _, p := range pubs {
			errs = append(errs, p.Close())
		}
		return errors.Join(errs...)
	}, func(error) {})
}

// startPublisher creates the MQTT sinks and their publishers: one for the
// sinks on the default connection (mqtt:), one per distinct
// sinks[].mqtt.connection (openMQTTSink). Each publisher reconnects on its
// own, so a sink whose broker is down holds no other.
func (d *Daemon) startPublisher(ctx context.Context) error {
	d.mu.Lock()
	d.pubCtx = ctx
	d.mu.Unlock()
	for i, s := range d.cfg.Sinks {
		if s.MQTT == nil {
			continue
		}
		snk, err := d.openMQTTSink(i, s)
		if err != nil {
			return err
		}
		d.sinks[s.Name] = snk
	}
	return nil
}

// addBroker starts the embedded broker (mqtt.broker: embedded) and closes
// it, on interrupt, once every ingest and the publisher have disconnected.
func (d *Daemon) addBroker(g *run.Group, r *runState) {
	if !d.cfg.MQTT.IsEmbedded() {
		close(r.brokerUp)
		return
	}
	ctx, interrupt := r.actorContext()
	g.Add(func() error {
		listen := d.cfg.MQTT.Embedded.Listen
		b, err := mqttio.StartEmbedded(listen, d.log.With("component", "broker"))
		if err != nil {
			return fmt.Errorf("start embedded broker on %s: %w", listen, err)
		}
		d.broker, d.brokerURL = b, b.URL()
		d.log.Info("embedded MQTT broker listening", "url", d.brokerURL)
		close(r.brokerUp)
		<-ctx.Done()
		r.clients.Wait()
		return b.Close()
	}, interrupt)
}

// supervise waits for the sinks, then runs the job until a graceful stop
// or a hard one: a job that fails is rebuilt from the newest good
// checkpoint, with backoff.
func (d *Daemon) supervise(r *runState) error {
	ctx := r.ctx
	select {
	case <-r.sinksUp:
	case <-d.stop:
		return nil
	case <-ctx.Done():
		return nil
	}
	backoff := time.Second
	var next *pipeline.Job // built by a pipeline reload (reloadjob.go)
	for {
		if d.stopping() && next == nil { // a job a reload built runs into the graceful stop
			return nil
		}
		job, err := next, error(nil)
		if next == nil {
			job, err = d.startJob()
		}
		next = nil
		if err != nil {
			if errors.Is(err, errStopped) {
				return nil
			}
			if d.setAsideCorrupt(err) {
				continue
			}
			if !d.disk.isLow() && !noSpace(err) {
				return err
			}
			if d.releaseReserve("the restore", err) {
				continue
			}
			// A restore on a full disk: wait for room, then try again,
			// rather than exit into a restart loop.
			d.log.Error("starting the job failed on a full disk; retrying when it has room", "err", err, "in", backoff)
			d.setPhase(fmt.Sprintf("recovery failed: %s; retrying when the disk has room", err))
			if !d.disk.waitRoom(ctx.Done(), d.stop) || !d.sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, time.Minute)
			continue
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
		if sw := d.takeSwap(); sw != nil {
			if next, err = d.swapJob(sw, err); next != nil {
				continue
			}
		}
		if err == nil {
			err = errors.New("job ended without error")
		}
		d.mu.Lock()
		d.restarts++
		d.lastErr = err.Error()
		d.mu.Unlock()
		jobRestarts.Inc()
		if d.setAsideCorrupt(err) {
			continue
		}
		if errors.Is(err, state.ErrFailed) {
			// A RocksDB instance that returned an error is never used
			// again (storage/state): the job is rebuilt from the last
			// completed checkpoint, once the disk has room again.
			from := "the start"
			if ids, lerr := d.store.Completed(); lerr == nil && len(ids) > 0 {
				from = fmt.Sprintf("checkpoint %d", ids[len(ids)-1])
			}
			// With the disk reserve released the rebuild has room now.
			released := (d.disk.isLow() || noSpace(err)) && d.releaseReserve("the state store rebuild", err)
			if !released && d.disk.isLow() {
				d.log.Error("state store failed; restarting when the disk has room", "err", err, "from", from)
				d.setPhase(fmt.Sprintf("state store failed: %s; restarting from %s when the disk has room", err, from))
				ok := d.disk.waitRoom(ctx.Done(), d.stop)
				if !ok {
					return nil
				}
			}
			d.log.Error("state store failed; restarting from "+from, "err", err, "in", backoff)
			d.setPhase(fmt.Sprintf("state store failed: %s; restarting from %s in %s", err, from, backoff))
		} else {
			d.log.Error("job failed; restarting from the last completed checkpoint", "err", err, "in", backoff)
			d.setPhase(fmt.Sprintf("restarting in %s after failure: %s", backoff, err))
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-d.stop:
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, time.Minute)
	}
}

// sleep waits for d, false if ctx is done or Stop is called first.
func (d *Daemon) sleep(ctx context.Context, dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-d.stop:
		return false
	case <-t.C:
		return true
	}
}

// startJob recovers and builds the next job and makes it the running one.
// A reload waits for it, so the job starts on the running configuration.
func (d *Daemon) startJob() (*pipeline.Job, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	return d.launchJob()
}

// launchJob is startJob's work; the caller holds reloadMu (a pipeline
// reload holds it for the supervisor while it waits, reloadjob.go).
func (d *Daemon) launchJob() (*pipeline.Job, error) {
	d.setPhase("recovering")
	job, err := d.buildJob()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.job = job
	d.mu.Unlock()
	d.log.Info("pipeline running", "tasks", len(job.Overview()))
	// Recovery is done: tell systemd (READY=1) after saying so in the log.
	// The uploader actor starts on Ready.
	d.readyOne.Do(func() {
		close(d.ready)
		d.notify.ready()
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
	for stop := false; !stop; {
		select {
		case err := <-done:
			return err
		case <-d.rj.signal:
			if d.swapPending() {
				// A pipeline reload stopped the job with a savepoint: its
				// output is published, it has nothing left to do
				// (reloadjob.go).
				cancel()
				return <-done
			}
		case <-d.stop:
			stop = true
		}
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
