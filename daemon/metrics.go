package daemon

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Process-wide counters that are not read off a component.
var (
	jobRestarts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "eddy_job_restarts_total", Help: "Times the pipeline was restarted after a failure."})
	brokenCheckpoints = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "eddy_checkpoints_broken_total", Help: "Checkpoints that failed verification and were renamed .broken."})
	restoreSeconds = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "eddy_restore_duration_seconds", Help: "Time the last restore took, from finding the checkpoint to a built job."})
	// fsyncSeconds is fed by the daemon's one fileutil.OSFS: every fsync of
	// a file or directory by the stores it opened.
	fsyncSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "eddy_fsync_duration_seconds",
		Help: "Duration of every fsync (file or directory) eddy's stores performed through the data_dir file system.",
		// 100 µs … 6.6 s; fileutil.SlowSync (logged) lies inside.
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
	})
)

// observeFsync is the OnSync of the daemon's file system.
func observeFsync(d time.Duration) { fsyncSeconds.Observe(d.Seconds()) }

// registry collects eddy's metrics, read from the running components at
// scrape time. The uploader adds its own collector (uploadHooks).
func (d *Daemon) registry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.MustRegister(jobRestarts, brokenCheckpoints, restoreSeconds, fsyncSeconds, savepointsNotUploaded)
	r.MustRegister(&collector{d: d})
	r.MustRegister(brokerCollector{d: d}, headroomCollector{d: d})
	if d.uploadCollector != nil {
		r.MustRegister(d.uploadCollector)
	}
	d.registerUpload(r)
	return r
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descInfo    = desc("eddy_build_info", "Always 1; the version is a label.", "version", "appliance")
	descReady   = desc("eddy_ready", "1 once recovery is done (READY=1 sent to systemd).")
	descRunning = desc("eddy_job_running", "1 while a job runs; 0 while the supervisor restarts a failed one.")
	descStalled = desc("eddy_pipeline_stalled", "1 while no task makes progress although input waits; the systemd watchdog pings stop.")

	// Tasks.
	descRecordsIn   = desc("eddy_task_records_in_total", "Records a task received.", "task")
	descRecordsOut  = desc("eddy_task_records_out_total", "Records a task emitted.", "task")
	descBackPress   = desc("eddy_task_back_pressured_seconds_total", "Time a task waited on a full output channel.", "task")
	descWatermark   = desc("eddy_task_watermark_milliseconds", "Current event-time watermark of a task.", "task")
	descWMLag       = desc("eddy_task_watermark_lag_seconds", "Wall-clock time minus the task's event-time watermark.", "task")
	descDeadLetters = desc("eddy_task_dead_letters_total", "Readings a task could not process.", "task")
	descLate        = desc("eddy_task_late_events_total", "Events dropped as later than the allowed lateness.", "task")
	descMessagesIn  = desc("eddy_source_messages_read_total", "Ingest-log messages a source task read.", "task")

	// Ingest.
	descLogSize     = desc("eddy_ingest_log_size_bytes", "Bytes held by a source's ingest log.", "source")
	descLogLag      = desc("eddy_ingest_log_lag_messages", "Messages in the ingest log not yet read by the pipeline.", "source")
	descLogFull     = desc("eddy_ingest_log_full", "1 while the ingest log is full and messages wait at the broker.", "source")
	descConnected   = desc("eddy_mqtt_connected", "1 while the source's MQTT client is connected.", "source")
	descReceived    = desc("eddy_ingest_messages_received_total", "MQTT messages a source received.", "source")
	descAcked       = desc("eddy_ingest_messages_acknowledged_total", "MQTT messages acknowledged after they were durable in the ingest log.", "source")
	descFirstOffset = desc("eddy_ingest_log_first_offset", "Oldest offset the ingest log retains.", "source")
	descNextOffset  = desc("eddy_ingest_log_next_offset", "Offset the next appended message gets.", "source")
	descSpoolBytes  = desc("eddy_sink_spool_bytes", "Bytes of the sink's on-disk spool: output of completed checkpoints waiting for the sink (exactly_once).", "sink")
	descSpoolFull   = desc("eddy_sink_spool_full", "1 while the sink's spool has reached sinks[].spool.max_size: sources stop reading and intake is paused (reason sink_spool_full).", "sink")
	descPaused      = desc("eddy_intake_paused", "1 while some source does not acknowledge input for this reason: disk_full (below disk.min_free), ingest_log_full, ingest_log_error (recovering from a failed write or fsync), sink_spool_full (a sink's spool reached sinks[].spool.max_size).", "reason")
	descDiskFree    = desc("eddy_disk_free_bytes", "Free bytes (available to eddy) on the file system of a watched path: data_dir and each file sink's directory.", "path")
	descDiskMinFree = desc("eddy_disk_min_free_bytes", "disk.min_free in bytes for the file system of a watched path, plus on data_dir the part of the disk reserve not held now.", "path")
	descReserve     = desc("eddy_disk_reserve_bytes", "Bytes held by the disk reserve data_dir/_reserve (disk.reserve); 0 while it is released for a checkpoint or a restore on a full disk.")

	// Checkpoints: counts of the running job (they start again when the
	// supervisor restarts the job).
	descCPTotal      = desc("eddy_checkpoints_triggered_total", "Checkpoints triggered by the running job.")
	descCPCompleted  = desc("eddy_checkpoints_completed_total", "Checkpoints completed by the running job.")
	descCPFailed     = desc("eddy_checkpoints_failed_total", "Checkpoints of the running job that failed or expired.")
	descCPInProgress = desc("eddy_checkpoints_in_progress", "Checkpoints in progress.")
	descCPRestored   = desc("eddy_checkpoints_restored_total", "Restores of the running job (0 or 1).")
	descCPRestoredID = desc("eddy_checkpoint_restored_id", "Id of the checkpoint the job was restored from.")
	descCPRestoreDur = desc("eddy_checkpoint_restore_duration_seconds", "Time the restore of the running job took.")

	// Latest completed checkpoint.
	descLastID       = desc("eddy_last_checkpoint_id", "Id of the newest completed checkpoint.")
	descLastTime     = desc("eddy_last_checkpoint_completed_timestamp_seconds", "When the newest completed checkpoint completed (unix time).")
	descLastDuration = desc("eddy_last_checkpoint_duration_seconds", "End-to-end duration of the newest completed checkpoint.")
	descLastState    = desc("eddy_last_checkpoint_state_size_bytes", "Full state size of the newest completed checkpoint.")
	descLastCkpt     = desc("eddy_last_checkpoint_checkpointed_size_bytes", "Bytes new in the newest completed checkpoint (incremental size).")
	descLastDelay    = desc("eddy_last_checkpoint_start_delay_seconds", "Per subtask: time from trigger to the first barrier, newest completed checkpoint.", "task")
	descLastAlign    = desc("eddy_last_checkpoint_alignment_seconds", "Per subtask: barrier alignment, newest completed checkpoint.", "task")
	descLastSync     = desc("eddy_last_checkpoint_sync_seconds", "Per subtask: synchronous phase, newest completed checkpoint.", "task")
	descLastAsync    = desc("eddy_last_checkpoint_async_seconds", "Per subtask: asynchronous phase, newest completed checkpoint.", "task")
	descLastTaskSize = desc("eddy_last_checkpoint_task_state_size_bytes", "Per subtask: state size in the newest completed checkpoint.", "task")

	// RocksDB.
	descCacheUsage  = desc("eddy_rocksdb_block_cache_usage_bytes", "Bytes held by the shared block cache.")
	descCachePinned = desc("eddy_rocksdb_block_cache_pinned_usage_bytes", "Bytes of block cache entries in use (pinned).")
	descCacheCap    = desc("eddy_rocksdb_block_cache_capacity_bytes", "Capacity of the shared block cache (state.memory.managed × (1 − write_buffer_ratio − write_cache_ratio)).")
	descWBSize      = desc("eddy_rocksdb_db_write_buffer_size_bytes", "db_write_buffer_size of each RocksDB instance.")
	descMemtable    = desc("eddy_rocksdb_memtable_bytes", "Bytes in active and unflushed memtables.", "task")
	descLiveSST     = desc("eddy_rocksdb_live_sst_bytes", "Bytes of live SST files.", "task")
	descNumKeys     = desc("eddy_rocksdb_estimated_keys", "RocksDB's estimate of the number of keys.", "task")
)

type collector struct{ d *Daemon }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descReady, descRunning, descStalled,
		descRecordsIn, descRecordsOut, descBackPress, descWatermark, descWMLag, descDeadLetters, descLate, descMessagesIn,
		descLogSize, descLogLag, descLogFull, descConnected, descReceived, descAcked, descFirstOffset, descNextOffset,
		descPaused, descDiskFree, descDiskMinFree, descReserve, descSpoolBytes, descSpoolFull,
		descCPTotal, descCPCompleted, descCPFailed, descCPInProgress, descCPRestored, descCPRestoredID, descCPRestoreDur,
		descLastID, descLastTime, descLastDuration, descLastState, descLastCkpt,
		descLastDelay, descLastAlign, descLastSync, descLastAsync, descLastTaskSize,
		descCacheUsage, descCachePinned, descCacheCap, descWBSize, descMemtable, descLiveSST, descNumKeys} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	now := time.Now()
	gauge(ch, descInfo, 1, Version, d.cfg.ApplianceID)
	select {
	case <-d.ready:
		gauge(ch, descReady, 1)
	default:
		gauge(ch, descReady, 0)
	}
	gauge(ch, descStalled, b2f(d.notify.health().Stalled))

	o := d.overview()
	gauge(ch, descRunning, b2f(o.Running))
	for _, t := range o.Tasks {
		counter(ch, descRecordsIn, float64(t.RecordsIn), t.Name)
		counter(ch, descRecordsOut, float64(t.RecordsOut), t.Name)
		counter(ch, descBackPress, float64(t.BackPressuredMs)/1000, t.Name)
		if t.Watermark != nil {
			gauge(ch, descWatermark, float64(*t.Watermark), t.Name)
			gauge(ch, descWMLag, now.Sub(time.UnixMilli(*t.Watermark)).Seconds(), t.Name)
		}
		counter(ch, descDeadLetters, float64(t.DeadLetters), t.Name)
		counter(ch, descLate, float64(t.LateEvents), t.Name)
		if t.Kind == "source" {
			counter(ch, descMessagesIn, float64(t.MessagesIn), t.Name)
		}
	}
	for _, in := range o.Ingest {
		gauge(ch, descLogSize, float64(in.SizeBytes), in.Source)
		gauge(ch, descLogLag, float64(in.Lag), in.Source)
		gauge(ch, descLogFull, b2f(in.Full), in.Source)
		gauge(ch, descConnected, b2f(in.Connected), in.Source)
		counter(ch, descReceived, float64(in.Received), in.Source)
		counter(ch, descAcked, float64(in.Acked), in.Source)
		gauge(ch, descFirstOffset, float64(in.FirstOffset), in.Source)
		gauge(ch, descNextOffset, float64(in.NextOffset), in.Source)
	}
	for _, r := range pauseReasons {
		gauge(ch, descPaused, b2f(slices.Contains(o.IntakePaused, r)), r)
	}
	for _, s := range o.Sinks {
		if sp := s.Spool; sp != nil {
			gauge(ch, descSpoolBytes, float64(sp.Bytes), s.Name)
			gauge(ch, descSpoolFull, b2f(sp.Full), s.Name)
		}
	}
	for _, p := range o.Disk {
		gauge(ch, descDiskFree, float64(p.Free), p.Path)
		gauge(ch, descDiskMinFree, float64(p.MinFree), p.Path)
	}
	if r := o.DiskReserve; r != nil {
		gauge(ch, descReserve, float64(r.Bytes))
	}

	d.mu.RLock() // a pipeline reload may replace d.memory (reloadjob.go)
	if m := d.memory; m != nil {
		gauge(ch, descCacheUsage, float64(m.BlockCacheUsage()))
		gauge(ch, descCachePinned, float64(m.BlockCachePinnedUsage()))
		gauge(ch, descCacheCap, float64(m.BlockCacheCapacity()))
		gauge(ch, descWBSize, float64(m.DBWriteBufferSize()))
	}
	d.mu.RUnlock()

	job := d.currentJob()
	if job == nil {
		return
	}
	for _, f := range job.StateFigures() {
		gauge(ch, descMemtable, float64(f.MemtableBytes), f.Task)
		gauge(ch, descLiveSST, float64(f.LiveSSTBytes), f.Task)
		gauge(ch, descNumKeys, float64(f.EstimatedKeys), f.Task)
	}
	st := job.Stats()
	if st == nil {
		return
	}
	ov := st.Overview()
	counter(ch, descCPTotal, float64(ov.Counts.Total))
	counter(ch, descCPCompleted, float64(ov.Counts.Completed))
	counter(ch, descCPFailed, float64(ov.Counts.Failed))
	gauge(ch, descCPInProgress, float64(ov.Counts.InProgress))
	counter(ch, descCPRestored, float64(ov.Counts.Restored))
	if r := ov.Latest.Restored; r != nil {
		gauge(ch, descCPRestoredID, float64(r.ID))
		gauge(ch, descCPRestoreDur, float64(r.DurationMs)/1000)
	}
	last := ov.Latest.Completed
	if last == nil {
		return
	}
	gauge(ch, descLastID, float64(last.ID))
	gauge(ch, descLastTime, float64(last.LatestAckTimestamp)/1000)
	gauge(ch, descLastDuration, float64(last.EndToEndDuration)/1000)
	gauge(ch, descLastState, float64(last.StateSize))
	gauge(ch, descLastCkpt, float64(last.CheckpointedSize))
	details, ok := st.Details(last.ID)
	if !ok {
		return
	}
	for _, t := range details.Tasks {
		for _, s := range t.Subtasks {
			gauge(ch, descLastDelay, float64(s.StartDelay)/1000, s.Task)
			gauge(ch, descLastAlign, float64(s.Alignment.Duration)/1000, s.Task)
			gauge(ch, descLastSync, float64(s.Checkpoint.Sync)/1000, s.Task)
			gauge(ch, descLastAsync, float64(s.Checkpoint.Async)/1000, s.Task)
			gauge(ch, descLastTaskSize, float64(s.StateSize), s.Task)
		}
	}
}
