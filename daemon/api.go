package daemon

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/daemon/web"
	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/storage/diskspace"
	"github.com/eddy-stream/eddy/storage/ingestlog"
)

// openHTTP opens the HTTP listener; Run serves it.
func (d *Daemon) openHTTP() error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", d.handleHealth)
	mux.HandleFunc("GET /api/v1/overview", d.handleOverview)
	mux.HandleFunc("GET /api/v1/checkpoints", d.handleCheckpoints)
	mux.HandleFunc("POST /api/v1/checkpoints", d.handleTrigger)
	mux.HandleFunc("GET /api/v1/savepoints", d.handleSavepoints)
	mux.HandleFunc("POST /api/v1/savepoints", d.handleTriggerSavepoint)
	mux.HandleFunc("GET /api/v1/checkpoints/config", d.handleCheckpointConfig)
	mux.HandleFunc("GET /api/v1/checkpoints/details/{id}", d.handleCheckpointDetails)
	mux.HandleFunc("GET /api/v1/config", d.handleConfig)
	mux.HandleFunc("GET /api/v1/upload", d.handleUpload)
	mux.HandleFunc("POST /api/v1/reload", d.handleReload)
	mux.HandleFunc("GET /api/v1/history", d.handleHistory)
	mux.HandleFunc("GET /api/v1/plan", d.handlePlan)
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.registry(), promhttp.HandlerOpts{}))
	mux.Handle("GET /", web.Handler())
	policy := newAccessPolicy(d.cfg.HTTP.Listen, d.token)
	s, err := newHTTPServer(d.cfg.HTTP.Listen, policy.wrap(mux), d.log)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", d.cfg.HTTP.Listen, err)
	}
	d.http = s
	d.httpRemote = policy.remote
	return nil
}

// handleHealth is GET /healthz: 200 {"status":"ok"} once recovery is
// done; 503 {"status":"starting"} before; 503 {"status":"degraded"} with
// the reasons while intake is paused (a disk below disk.min_free, a full
// ingest log, an ingest log recovering from a failed write or fsync).
func (d *Daemon) handleHealth(w http.ResponseWriter, _ *http.Request) {
	select {
	case <-d.ready:
	default:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting"})
		return
	}
	if reasons, detail := d.intakePaused(); len(reasons) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"status": "degraded", "intake_paused": reasons, "reason": "intake paused: " + detail})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// IngestOverview describes one source's ingest log and MQTT connection.
type IngestOverview struct {
	Source      string `json:"source"`
	Connected   bool   `json:"connected"`
	Full        bool   `json:"full"`
	Received    int64  `json:"messages_received"`
	Acked       int64  `json:"messages_acknowledged"`
	SizeBytes   int64  `json:"size_bytes"`
	FirstOffset uint64 `json:"first_offset"`
	NextOffset  uint64 `json:"next_offset"`
	ReadOffset  uint64 `json:"read_offset"`
	// Lag is the messages in the log the running job has not read yet
	// (NextOffset - ReadOffset); 0 while no job runs.
	Lag   int64  `json:"lag"`
	Error string `json:"error,omitempty"`
}

// Overview is GET /api/v1/overview.
type Overview struct {
	ApplianceID   string                  `json:"appliance_id"`
	Version       string                  `json:"version"`
	UptimeSeconds int64                   `json:"uptime_seconds"`
	Running       bool                    `json:"running"`
	JobRestarts   int                     `json:"job_restarts"`
	LastError     string                  `json:"last_error,omitempty"`
	Tasks         []pipeline.TaskOverview `json:"tasks"`
	Ingest        []IngestOverview        `json:"ingest"`
	// Sinks is the release state of every sink in exactly_once mode: the
	// newest checkpoint it confirmed, the checkpoints it still holds staged
	// output of, and its last error while it retries.
	Sinks []pipeline.SinkState `json:"sinks,omitempty"`
	// IntakePaused lists why input is not acknowledged now (disk_full,
	// ingest_log_full, ingest_log_error); IntakePausedReason says where.
	IntakePaused       []string `json:"intake_paused,omitempty"`
	IntakePausedReason string   `json:"intake_paused_reason,omitempty"`
	// Disk is the last free-space sample of every watched path.
	Disk []diskspace.PathStatus `json:"disk,omitempty"`
	// DiskReserve is data_dir/_reserve (disk.reserve); nil: none.
	DiskReserve *ReserveStatus `json:"disk_reserve,omitempty"`
	DeadLetters int64          `json:"dead_letters"`
	LateEvents  int64          `json:"late_events"`
	// Ready is true once recovery is done (READY=1).
	Ready bool `json:"ready"`
	// Stalled is the watchdog's view: no progress while input waits.
	Stalled bool `json:"stalled"`
	// Status is the STATUS= line systemd shows.
	Status string `json:"status"`
	// RecordsPerSecond is what the sources read, averaged over 5 s;
	// BackPressure is the largest share of time a task spent waiting on a
	// full output channel over the same span (0..1).
	RecordsPerSecond float64 `json:"records_per_second"`
	BackPressure     float64 `json:"back_pressure"`
	// TaskRates are per task, over the same 5 s.
	TaskRates map[string]TaskRate `json:"task_rates"`
	// Recovery says where the state came from and what a remote recovery
	// could not replay (daemon/upload.go).
	Recovery *RecoveryOverview `json:"recovery,omitempty"`
	// Broker is the MQTT broker's own count of dropped messages
	// (daemon/broker.go); absent until Run watches it.
	Broker *BrokerOverview `json:"broker,omitempty"`
	// Headroom is the latest `eddy plan` against the live input
	// (daemon/headroom.go); absent before the first plan.
	Headroom *HeadroomOverview `json:"headroom,omitempty"`
	// LastReload is the outcome of the last reload (reloadjob.go); absent
	// before the first.
	LastReload *LastReload `json:"last_reload,omitempty"`
}

func (d *Daemon) overview() Overview {
	o := Overview{ApplianceID: d.cfg.ApplianceID, Version: Version, UptimeSeconds: int64(time.Since(d.start).Seconds())}
	o.Recovery = d.recoveryOverview()
	o.Broker = d.brokerDrops.overview()
	o.LastReload = d.lastReload()
	d.mu.RLock()
	job := d.job
	o.JobRestarts, o.LastError = d.restarts, d.lastErr
	ingests := maps.Clone(d.ingests) // filled in by the ingest actors while this may run
	d.mu.RUnlock()
	var offsets map[string]uint64
	if job != nil {
		o.Running = true
		o.Tasks = job.Overview()
		offsets = job.SourceOffsets()
		o.Sinks = job.SinkStates()
		for _, t := range o.Tasks {
			o.DeadLetters += t.DeadLetters
			o.LateEvents += t.LateEvents
		}
	}
	for _, s := range d.cfg.Sources {
		l := d.logs[s.Name]
		if l == nil {
			continue
		}
		io := IngestOverview{Source: s.Name, SizeBytes: l.Size(), FirstOffset: l.FirstOffset(), NextOffset: l.NextOffset(),
			ReadOffset: offsets[s.Name]}
		if job != nil { // between jobs no read position is known
			io.Lag = max(int64(io.NextOffset)-int64(io.ReadOffset), 0)
		}
		io.Full = slices.Contains(l.Paused(), ingestlog.PauseFull)
		if in := ingests[s.Name]; in != nil {
			io.Connected = in.Connected()
			io.Received, io.Acked = in.Received.Load(), in.Acked.Load()
			if err := in.Err(); err != nil {
				io.Error = err.Error()
			}
		}
		o.Ingest = append(o.Ingest, io)
	}
	o.IntakePaused, o.IntakePausedReason = d.intakePaused()
	o.Disk = d.diskStatus()
	o.DiskReserve = d.reserveStatus()
	return o
}

func (d *Daemon) handleOverview(w http.ResponseWriter, _ *http.Request) {
	o := d.overview()
	select {
	case <-d.ready:
		o.Ready = true
	default:
	}
	h := d.notify.health()
	o.Stalled, o.RecordsPerSecond, o.BackPressure, o.TaskRates = h.Stalled, h.Rate, h.BackPressure, h.Tasks
	o.Status = d.notify.statusLine()
	o.Headroom = d.headroom()
	writeJSON(w, http.StatusOK, o)
}

// handleConfig is GET /api/v1/config: the running configuration (after
// reloads) with secrets replaced by "***".
func (d *Daemon) handleConfig(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"file":       d.configPath,
		"reloadable": append(config.ReloadableKeys(), "pipeline", "sinks", "checkpointing.allow_non_restored_state"), // the last three through a savepoint (reloadjob.go)
		"config":     d.running().Redacted().AsMap(),
	})
}

// handleUpload is GET /api/v1/upload: the uploader's state, 404 without one.
func (d *Daemon) handleUpload(w http.ResponseWriter, _ *http.Request) {
	if d.remoteStatus == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "upload is off (upload.remote is empty)"})
		return
	}
	writeJSON(w, http.StatusOK, d.remoteStatus())
}

func (d *Daemon) stats() *pipeline.StatsTracker {
	if job := d.currentJob(); job != nil {
		return job.Stats()
	}
	return nil
}

func (d *Daemon) handleCheckpoints(w http.ResponseWriter, _ *http.Request) {
	st := d.stats()
	if st == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "checkpointing is off (checkpointing.interval: 0)"})
		return
	}
	o := st.Overview()
	d.decorateRemote(append(o.History, o.Latest.Completed)...)
	writeJSON(w, http.StatusOK, o)
}

func (d *Daemon) handleCheckpointDetails(w http.ResponseWriter, r *http.Request) {
	st := d.stats()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if st == nil || err != nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such checkpoint"})
		return
	}
	c, ok := st.Details(id)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "checkpoint " + r.PathValue("id") + " is not in the history"})
		return
	}
	d.decorateRemote(c)
	writeJSON(w, http.StatusOK, c)
}

// CheckpointConfig is GET /api/v1/checkpoints/config, shaped like Flink's.
type CheckpointConfig struct {
	Mode                       string `json:"mode"`
	Interval                   int64  `json:"interval"`
	Timeout                    int64  `json:"timeout"`
	MinPause                   int64  `json:"min_pause"`
	MaxConcurrent              int    `json:"max_concurrent"`
	Externalization            any    `json:"externalization"`
	StateBackend               string `json:"state_backend"`
	CheckpointStorage          string `json:"checkpoint_storage"`
	UnalignedCheckpoints       bool   `json:"unaligned_checkpoints"`
	TolerableFailedCheckpoints int    `json:"tolerable_failed_checkpoints"`
	AlignedCheckpointTimeout   int64  `json:"aligned_checkpoint_timeout"`
	Incremental                bool   `json:"incremental"`
	LocalRecovery              bool   `json:"local_recovery"`
	Compression                string `json:"compression"`
	NumRetained                int    `json:"num_retained"`
}

func (d *Daemon) handleCheckpointConfig(w http.ResponseWriter, _ *http.Request) {
	c := d.running().Checkpointing
	mode := "exactly_once"
	if c.Mode == "at_least_once" {
		mode = "at_least_once"
	}
	writeJSON(w, http.StatusOK, CheckpointConfig{
		Mode: mode, Interval: c.Interval.Milliseconds(), Timeout: c.Timeout.Milliseconds(),
		MinPause: c.MinPause.Milliseconds(), MaxConcurrent: c.MaxConcurrent,
		Externalization:            map[string]bool{"enabled": true, "delete_on_cancellation": false},
		StateBackend:               "EmbeddedRocksDBStateBackend",
		CheckpointStorage:          "FileSystemCheckpointStorage:" + d.layout.Checkpoints(),
		TolerableFailedCheckpoints: c.TolerableFailures, Incremental: c.Incremental,
		LocalRecovery: c.LocalRecovery, Compression: c.Compression, NumRetained: c.NumRetained,
		UnalignedCheckpoints: c.Unaligned, AlignedCheckpointTimeout: c.AlignedTimeout.Milliseconds(),
	})
}

// TriggerResult is the answer to POST /api/v1/checkpoints.
type TriggerResult struct {
	ID     int64  `json:"id"`
	Status string `json:"status"` // COMPLETED | FAILED
	Error  string `json:"error,omitempty"`
}

// handleTrigger takes a checkpoint now and answers when it has completed.
func (d *Daemon) handleTrigger(w http.ResponseWriter, r *http.Request) {
	job := d.currentJob()
	if job == nil || job.Stats() == nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "no running job with checkpointing"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), d.cfg.Checkpointing.Timeout)
	defer cancel()
	id, err := job.TriggerCheckpoint(ctx)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, TriggerResult{ID: id, Status: "FAILED", Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, TriggerResult{ID: id, Status: "COMPLETED"})
}
