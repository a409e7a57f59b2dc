package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/storage/state"
)

// A reload whose file changes the pipeline or sinks section rebuilds the
// job, Flink's way: the new configuration's state schemas are checked
// against the running job's (pipeline.Compare, the check a restore makes),
// the running job stops with a savepoint (stop-with-savepoint: the sources
// stop at its barrier, everything staged up to it is published or spooled),
// and the supervisor builds the job of the new configuration restored from
// that savepoint (at any parallelism). The reload waits for that and
// answers with the outcome; if the new job does not build or restore, the
// supervisor restarts the previous configuration from the same savepoint
// and the reload fails. Either way nothing is lost or published twice: the
// savepoint is where the old job stopped and the next one starts.

// ErrReloadFailed is returned by Reload when a pipeline change passed the
// checks but the new job did not start; eddy runs the previous pipeline
// again, restored from the reload's savepoint.
var ErrReloadFailed = errors.New("daemon: pipeline reload failed")

// LastReload is the outcome of the last reload (GET /api/v1/overview,
// last_reload).
type LastReload struct {
	Time time.Time `json:"time"`
	// Outcome is applied (every change applied, or nothing changed: Keys
	// is empty), refused (some changes need a restart or do not fit the
	// running state, or the file does not load: nothing of those changed)
	// or failed (a pipeline change passed the checks, but the new job did
	// not start: the previous pipeline runs again).
	Outcome string `json:"outcome"`
	// Keys are the keys that changed.
	Keys []string `json:"keys"`
	// Reason says why a change was refused or failed.
	Reason string `json:"reason,omitempty"`
	// Savepoint is the savepoint a pipeline reload took.
	Savepoint string `json:"savepoint,omitempty"`
}

// reloadJobState is the handover of a pipeline reload to the supervisor.
type reloadJobState struct {
	signal chan struct{} // buffered 1: wakes runJob when a swap is pending

	mu         sync.Mutex
	pending    *swapRequest
	last       *LastReload
	supervised <-chan struct{} // the supervisor has returned (set by Run)
}

// swapRequest asks the supervisor to end the job (stopped with a savepoint)
// and build the next one on next, restored from the savepoint.
type swapRequest struct {
	savepoint string         // its directory
	old, next *config.Config // the running configuration and the new one
	done      chan swapResult
}

type swapResult struct {
	err      error // the new job did not start (nil: it runs)
	fallback error // the previous configuration did not start again either
}

// jobKey reports whether key k is applied by rebuilding the job: the
// pipeline and sinks sections (and allow_non_restored_state, which only
// the restore reads).
func jobKey(k string) bool {
	for _, p := range []string{"pipeline", "sinks"} {
		if k == p || strings.HasPrefix(k, p+".") || strings.HasPrefix(k, p+"[") {
			return true
		}
	}
	return k == "checkpointing.allow_non_restored_state"
}

// splitJobKeys splits refused into the keys a job rebuild applies and the
// others.
func splitJobKeys(refused []string) (job, others []string) {
	for _, k := range refused {
		if jobKey(k) {
			job = append(job, k)
		} else {
			others = append(others, k)
		}
	}
	return job, others
}

// pipelineReload applies keys, the pipeline/sinks changes of next, to the
// running job (see the comment at the top). old is the running
// configuration. It returns the savepoint taken, and the reasons when the
// change is refused; err wraps ErrReloadFailed when the change passed the
// checks but did not start. The caller holds reloadMu.
func (d *Daemon) pipelineReload(old, next *config.Config, keys []string) (savepoint string, reasons []string, err error) {
	if !slices.ContainsFunc(keys, func(k string) bool { return k != "checkpointing.allow_non_restored_state" }) {
		// Only the restore reads it: the next restore uses the new value.
		d.mu.Lock()
		live := d.live.Clone()
		live.Checkpointing.AllowNonRestoredState = next.Checkpointing.AllowNonRestoredState
		d.live = live
		d.mu.Unlock()
		return "", nil, nil
	}
	if d.store == nil {
		r := "checkpointing is off (checkpointing.interval: 0): a pipeline change is applied through a savepoint, " +
			"which needs checkpointing; restart eddy to apply it (systemctl restart eddy)"
		d.log.Error("reload refused: "+r, "keys", strings.Join(keys, ", "))
		return "", []string{r}, nil
	}
	if reasons := d.checkPipelineChange(old, next); len(reasons) > 0 {
		d.log.Error("reload refused: the pipeline change does not fit the running state; the running job is kept",
			"keys", strings.Join(keys, ", "), "reasons", strings.Join(reasons, "; "), "file", d.configPath)
		return "", reasons, nil
	}
	job := d.currentJob()
	if job == nil {
		r := "no job is running (" + d.statusPhase() + "): a pipeline change is applied to a running job; reload again once it runs"
		d.log.Error("reload refused: "+r, "keys", strings.Join(keys, ", "))
		return "", []string{r}, nil
	}

	name := "reload-" + time.Now().UTC().Format("20060102T150405.000Z")
	d.log.Info("reload: the pipeline changed and fits the running state; stopping the job with a savepoint",
		"keys", strings.Join(keys, ", "), "savepoint", name)
	ctx, cancel := context.WithTimeout(context.Background(), old.Checkpointing.Timeout+d.stopTimeout)
	defer cancel()
	res, err := job.TriggerSavepoint(ctx, name, true)
	if err != nil {
		d.log.Error("reload failed: the savepoint was not taken; the running job goes on with the running configuration",
			"savepoint", name, "err", err)
		return "", nil, fmt.Errorf("%w: the savepoint was not taken (the running job goes on): %w", ErrReloadFailed, err)
	}
	_, _ = d.uploadSavepoint(ctx, res) // logged; the savepoint is local

	// The supervisor clears d.job before it looks for a pending swap: a job
	// that ended on its own in the meantime restarts as after any failure
	// (from the savepoint's checkpoint, on the running configuration).
	sw := &swapRequest{savepoint: res.Path, old: old, next: next, done: make(chan swapResult, 1)}
	d.mu.Lock()
	running := d.job == job
	d.rj.mu.Lock()
	if running {
		d.rj.pending = sw
	}
	supervised := d.rj.supervised
	d.rj.mu.Unlock()
	d.mu.Unlock()
	if !running {
		d.log.Error("reload failed: the job ended before the new one could take over; it restarts on the running configuration", "savepoint", name)
		return name, nil, fmt.Errorf("%w: the job ended during the reload; eddy restarts it on the running configuration", ErrReloadFailed)
	}
	select {
	case d.rj.signal <- struct{}{}:
	default:
	}
	var r swapResult
	select {
	case r = <-sw.done:
	case <-d.stop:
		r = d.withdrawSwap(sw, "eddy is stopping")
	case <-supervised:
		r = d.withdrawSwap(sw, "the job supervisor has ended")
	}
	if r.err != nil {
		msg := fmt.Sprintf("the new pipeline did not start: %s; eddy runs the previous pipeline again, restored from savepoint %s", r.err, name)
		if r.fallback != nil {
			msg = fmt.Sprintf("the new pipeline did not start: %s; the previous pipeline did not start again either (%s): eddy restarts it from the last checkpoint", r.err, r.fallback)
		}
		return name, nil, fmt.Errorf("%w: %s", ErrReloadFailed, msg)
	}
	d.log.Info("reload: the job runs on the new pipeline, restored from the savepoint",
		"keys", strings.Join(keys, ", "), "savepoint", name, "path", res.Path, "checkpoint", res.Checkpoint)
	return name, nil, nil
}

// withdrawSwap takes back sw if the supervisor has not taken it; else it
// waits for the supervisor's answer.
func (d *Daemon) withdrawSwap(sw *swapRequest, why string) swapResult {
	d.rj.mu.Lock()
	mine := d.rj.pending == sw
	if mine {
		d.rj.pending = nil
	}
	d.rj.mu.Unlock()
	if !mine {
		return <-sw.done
	}
	return swapResult{err: errors.New(why)}
}

// checkPipelineChange checks next's job against the running one: the
// state schema of every keyed stage (pipeline.Compare, with the words of a
// refused restore, one reason per stage) and max_parallelism.
func (d *Daemon) checkPipelineChange(old, next *config.Config) []string {
	ospec, nspec := d.jobSpecFor(old), d.jobSpecFor(next)
	var reasons []string
	if ospec.MaxParallelism != nspec.MaxParallelism {
		reasons = append(reasons, fmt.Sprintf("pipeline.max_parallelism changed from %d to %d: "+
			"max_parallelism is fixed for the life of the state", ospec.MaxParallelism, nspec.MaxParallelism))
	}
	allow := next.Checkpointing.AllowNonRestoredState || d.allowNonRestored
	for _, o := range pipeline.Compare(pipeline.Schemas(&ospec), pipeline.Schemas(&nspec), allow) {
		if o.Outcome == pipeline.OutcomeRefuse {
			reasons = append(reasons, o.Reason)
		}
	}
	return reasons
}

// swapPending reports whether a pipeline reload waits for the supervisor.
func (d *Daemon) swapPending() bool {
	d.rj.mu.Lock()
	defer d.rj.mu.Unlock()
	return d.rj.pending != nil
}

// takeSwap returns the pending swap, if any, and clears it (and a signal
// that runJob did not see).
func (d *Daemon) takeSwap() *swapRequest {
	d.rj.mu.Lock()
	defer d.rj.mu.Unlock()
	sw := d.rj.pending
	d.rj.pending = nil
	select {
	case <-d.rj.signal:
	default:
	}
	return sw
}

// swapJob builds the job of sw.next restored from sw.savepoint, once the
// job that took it is closed; if that fails, the job of sw.old from the
// same savepoint. It answers sw and returns the job that runs (nil and the
// error when neither started). runErr is what the old job ended with.
// The reload that asked holds reloadMu for the supervisor meanwhile.
func (d *Daemon) swapJob(sw *swapRequest, runErr error) (*pipeline.Job, error) {
	if runErr != nil {
		d.log.Warn("the job ended with an error after the reload's savepoint; the next job starts from the savepoint", "err", runErr)
	}
	job, err := d.swapTo(sw.old, sw.next, sw.savepoint)
	if err == nil {
		sw.done <- swapResult{}
		return job, nil
	}
	d.log.Error("reload failed: the job of the new configuration did not start; restarting the previous one from the savepoint",
		"savepoint", sw.savepoint, "err", err)
	prev, ferr := d.swapTo(sw.next, sw.old, sw.savepoint)
	if ferr != nil {
		d.log.Error("the previous configuration did not start again from the savepoint", "savepoint", sw.savepoint, "err", ferr)
	}
	sw.done <- swapResult{err: err, fallback: ferr}
	return prev, ferr
}

// swapTo makes to the running configuration, with its sinks, and builds
// its job restored from the savepoint at dir.
func (d *Daemon) swapTo(from, to *config.Config, dir string) (*pipeline.Job, error) {
	var mem *state.Memory
	if numDBs(to) != numDBs(from) {
		// state.memory is split over the RocksDB instances of the job: a
		// job with another number of them gets its own split.
		var err error
		if mem, err = newMemory(to); err != nil {
			return nil, err
		}
	}
	d.mu.Lock()
	d.live = to
	if mem != nil {
		d.memory, mem = mem, d.memory
	}
	d.mu.Unlock()
	if mem != nil {
		mem.Close() // the previous job, its only user, is closed
	}
	if err := d.swapSinks(from, to); err != nil {
		return nil, err
	}
	d.SetFromSavepoint(dir)
	return d.launchJob()
}

// swapSinks closes the sinks of from that to does not have, or has with
// another definition, and opens those of to that are not open. A removed
// sink's spool stays on disk (logged): what it holds was not published.
func (d *Daemon) swapSinks(from, to *config.Config) error {
	keep := map[string]bool{}
	for _, s := range to.Sinks {
		i := slices.IndexFunc(from.Sinks, func(o config.Sink) bool { return o.Name == s.Name })
		keep[s.Name] = i >= 0 && reflect.DeepEqual(from.Sinks[i].File, s.File) && reflect.DeepEqual(from.Sinks[i].MQTT, s.MQTT)
	}
	var errs []error
	for _, s := range from.Sinks {
		if keep[s.Name] {
			continue
		}
		if snk := d.sinks[s.Name]; snk != nil {
			errs = append(errs, snk.Close())
			delete(d.sinks, s.Name)
		}
		if _, ok := keep[s.Name]; !ok {
			dir := d.layout.Spool(s.Name)
			if es, err := os.ReadDir(dir); err == nil && len(es) > 0 {
				d.log.Warn("sink removed from the configuration: its spool is kept on disk, with what it had not published; delete it if the sink is gone for good",
					"sink", s.Name, "spool", dir)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, s := range to.Sinks {
		if d.sinks[s.Name] != nil || (s.File == nil && s.MQTT == nil) {
			continue
		}
		var err error
		if s.File != nil {
			d.sinks[s.Name], err = d.openFileSink(s)
		} else {
			d.sinks[s.Name], err = d.openMQTTSink(i, s)
		}
		if err != nil {
			delete(d.sinks, s.Name)
			return err
		}
	}
	return nil
}

// recordReload keeps the outcome of the last reload for the overview.
func (d *Daemon) recordReload(r LastReload) {
	r.Time = time.Now().UTC()
	if r.Keys == nil {
		r.Keys = []string{}
	}
	d.rj.mu.Lock()
	d.rj.last = &r
	d.rj.mu.Unlock()
}

// lastReload is the outcome of the last reload; nil before the first.
func (d *Daemon) lastReload() *LastReload {
	d.rj.mu.Lock()
	defer d.rj.mu.Unlock()
	if d.rj.last == nil {
		return nil
	}
	r := *d.rj.last
	return &r
}

// statusPhase is what the supervisor does while no job runs.
func (d *Daemon) statusPhase() string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.phase
}
