package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/eddy-stream/eddy/daemon/config"
)

// SetConfigFile names the file Reload reads (the one eddy was started
// with).
func (d *Daemon) SetConfigFile(path string) { d.configPath = path }

// Stop asks Run for a graceful stop: STOPPING=1, the sources stop reading,
// a final checkpoint is taken (bounded by DefaultStopTimeout), its output
// published, and Run returns nil. It returns at once and may be called any
// number of times.
func (d *Daemon) Stop() {
	d.stopOnce.Do(func() {
		close(d.stop)
		d.log.Info("stopping: final checkpoint, then exit")
		d.notify.stopping()
	})
}

func (d *Daemon) stopping() bool {
	select {
	case <-d.stop:
		return true
	default:
		return false
	}
}

// ReloadResult says what a reload did.
type ReloadResult struct {
	// Applied are the keys that changed and now have their new values.
	Applied []string
	// Refused are the keys that changed but keep their running values:
	// they need a restart, or (pipeline and sinks) the change does not fit
	// the running state or did not start.
	Refused []string
	// Reasons say why a pipeline or sinks change was refused: one per
	// stage, in the words of a refused restore.
	Reasons []string
	// Savepoint is the savepoint a pipeline reload stopped the job with
	// and restored the new one from.
	Savepoint string
}

// ErrReloadInvalid is returned by Reload when the file does not load; the
// running configuration is kept.
var ErrReloadInvalid = errors.New("daemon: reloaded configuration is not valid")

// Reload re-reads the configuration file and applies what can change
// while running: log.level, checkpointing.interval and min_pause (kept
// across job restarts), upload.bandwidth, and the pipeline and sinks
// sections (with checkpointing.allow_non_restored_state), which rebuild the
// job from a savepoint (reloadjob.go) when the new stages fit the running
// state. Every other change is refused with a log message naming the keys,
// and those keys keep their running values; a pipeline change together
// with such a change is refused too. A file that does not load changes
// nothing. systemd sees RELOADING=1 before and READY=1 after. The outcome
// is kept for the overview (LastReload).
func (d *Daemon) Reload() (res ReloadResult, err error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	isReady := false
	select {
	case <-d.ready:
		isReady = true
	default:
	}
	if isReady {
		d.notify.reloading()
		defer d.notify.reloaded()
	}
	if d.configPath == "" {
		d.log.Warn("reload: eddy was started without a configuration file; nothing to reload")
		return res, nil
	}
	next, err := config.Load(d.configPath)
	if err != nil {
		d.log.Error("reload refused: the configuration file does not load; the running configuration is kept",
			"file", d.configPath, "err", err)
		d.recordReload(LastReload{Outcome: "refused", Reason: err.Error()})
		return res, fmt.Errorf("%w: %w", ErrReloadInvalid, err)
	}
	var changed []string
	defer func() {
		lr := LastReload{Outcome: "applied", Keys: changed, Savepoint: res.Savepoint}
		switch {
		case err != nil:
			lr.Outcome, lr.Reason = "failed", err.Error()
		case len(res.Refused) > 0:
			lr.Outcome = "refused"
			lr.Reason = strings.Join(res.Reasons, "; ")
			if lr.Reason == "" {
				lr.Reason = strings.Join(res.Refused, ", ") + " need a restart"
			}
		}
		d.recordReload(lr)
	}()
	old := d.running()
	live := old.Clone()
	reloadable, refused := config.ReloadableDiff(old, next)
	changed = append(slices.Clone(reloadable), refused...)
	// Checkpointing on or off changes what the job is made of (the store,
	// staging sinks): that needs a restart.
	if (old.Checkpointing.Interval == 0) != (next.Checkpointing.Interval == 0) {
		if i := slices.Index(reloadable, "checkpointing.interval"); i >= 0 {
			reloadable = slices.Delete(reloadable, i, i+1)
			refused = append(refused, "checkpointing.interval")
		}
	}
	var timing bool
	var changes []any
	for _, k := range reloadable {
		switch k {
		case "log.level":
			live.Log.Level = next.Log.Level
			changes = append(changes, k, old.Log.Level+" → "+next.Log.Level)
		case "checkpointing.interval":
			live.Checkpointing.Interval = next.Checkpointing.Interval
			timing = true
			changes = append(changes, k, old.Checkpointing.Interval.String()+" → "+next.Checkpointing.Interval.String())
		case "checkpointing.min_pause":
			live.Checkpointing.MinPause = next.Checkpointing.MinPause
			timing = true
			changes = append(changes, k, old.Checkpointing.MinPause.String()+" → "+next.Checkpointing.MinPause.String())
		case "upload.bandwidth":
			live.Upload.Bandwidth = next.Upload.Bandwidth
			changes = append(changes, k, old.Upload.Bandwidth.String()+" → "+next.Upload.Bandwidth.String())
		default:
			refused = append(refused, k) // a key ReloadableKeys lists that eddy does not apply yet
			continue
		}
		res.Applied = append(res.Applied, k)
	}
	jobKeys, others := splitJobKeys(refused)
	if len(jobKeys) > 0 && len(others) == 0 {
		refused = others // the pipeline reload below decides on them
	} else if len(jobKeys) > 0 {
		res.Reasons = append(res.Reasons, fmt.Sprintf("the pipeline/sinks change is not applied: %s changed too, which needs a restart",
			strings.Join(others, ", ")))
		jobKeys = nil
	}
	res.Refused = refused
	if len(refused) > 0 {
		d.log.Warn("reload: these settings changed but need a restart (systemctl restart eddy); they keep their running values",
			"keys", strings.Join(refused, ", "), "file", d.configPath,
			"reloadable", strings.Join(config.ReloadableKeys(), ", ")+", pipeline, sinks")
	}
	if len(res.Applied) == 0 && len(jobKeys) == 0 {
		if len(refused) == 0 {
			d.log.Info("reload: configuration unchanged", "file", d.configPath)
		}
		return res, nil
	}

	if len(res.Applied) > 0 {
		d.applyLive(live, res.Applied, timing)
		d.log.Info("configuration reloaded", append([]any{"file", d.configPath}, changes...)...)
	}
	if len(jobKeys) > 0 {
		// next differs from live only in jobKeys now: it is the
		// configuration of the new job.
		sp, reasons, perr := d.pipelineReload(live, next, jobKeys)
		res.Savepoint = sp
		switch {
		case perr != nil:
			res.Refused = append(res.Refused, jobKeys...)
			return res, perr
		case len(reasons) > 0:
			res.Refused = append(res.Refused, jobKeys...)
			res.Reasons = append(res.Reasons, reasons...)
		default:
			res.Applied = append(res.Applied, jobKeys...)
		}
	}
	return res, nil
}

// applyLive makes live the running configuration and applies keys, the
// keys of it that changed.
func (d *Daemon) applyLive(live *config.Config, keys []string, timing bool) {
	d.mu.Lock()
	d.live = live
	d.mu.Unlock()
	if slices.Contains(keys, "log.level") && d.level != nil {
		var l slog.Level
		if err := l.UnmarshalText([]byte(live.Log.Level)); err == nil {
			d.level.Set(l)
		}
	}
	if timing {
		if job := d.currentJob(); job != nil {
			job.SetCheckpointTiming(live.Checkpointing.Interval, live.Checkpointing.MinPause)
		}
	}
	if slices.Contains(keys, "upload.bandwidth") {
		if d.setUploadBandwidth != nil {
			d.setUploadBandwidth(int64(live.Upload.Bandwidth))
		}
	}
}
