package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/upload"
)

// RecoveryOverview says where the running job's state came from and what
// could not be replayed (GET /api/v1/overview "recovery").
type RecoveryOverview struct {
	Source     string             `json:"source,omitempty"` // local | remote; "" while Waiting
	Checkpoint int64              `json:"checkpoint,omitempty"`
	LostLogs   []pipeline.LostLog `json:"lost_logs,omitempty"`
	// Waiting is set while a start waits for a remote that does not answer
	// (upload.restore).
	Waiting *RemoteWaitOverview `json:"waiting,omitempty"`
}

// RemoteWaitOverview is the link state of a start that waits for its
// remote.
type RemoteWaitOverview struct {
	Remote    string `json:"remote"`
	Since     int64  `json:"since"` // unix ms
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error"`
}

// While a start waits for the remote or downloads from it,
// EXTEND_TIMEOUT_USEC=extendBy is sent every extendEvery, so that
// TimeoutStartSec does not kill it.
const (
	extendBy    = 90 * time.Second
	extendEvery = 30 * time.Second
)

// uploadState is the daemon's side of upload and remote recovery.
type uploadState struct {
	store upload.Store
	up    *upload.Uploader
	// fresh are the sources whose ingest log had never been written when
	// the daemon opened it (before ingest started).
	fresh     map[string]bool
	startOnce sync.Once
	// recover is remote recovery: upload.Recovery decides local or
	// remote, downloads and keeps the restored marker.
	recover upload.Recovery

	mu       sync.Mutex
	recovery *RecoveryOverview
	dlBytes  atomic.Int64 // bytes read by remote recoveries
}

// openUpload notes which ingest logs are new and, with upload.remote set,
// opens the remote store and the uploader and installs the uploadHooks.
// Called by New after the logs and the checkpoint store are open.
func (d *Daemon) openUpload() error {
	layout := datadir.New(d.cfg.DataDir)
	u := &uploadState{fresh: map[string]bool{}}
	u.recover = upload.Recovery{Appliance: d.cfg.ApplianceID, DataDir: layout, Local: d.store, FS: d.fs,
		Parallelism: d.cfg.Upload.Parallelism, Logger: d.log.With("component", "upload"), BytesRead: &u.dlBytes}
	d.upl = u
	for name, l := range d.logs {
		if l.NextOffset() == 0 {
			u.fresh[name] = true
		}
	}
	c := d.cfg.Upload
	if c.Remote == "" {
		return nil
	}
	store, err := openRemote(c, d.fs)
	if err != nil {
		return err
	}
	u.store = store
	u.recover.Store = store
	if d.store == nil {
		d.log.Warn("upload.remote is set but checkpointing is off (checkpointing.interval: 0): nothing to upload")
		return nil
	}
	u.up, err = upload.New(upload.Options{
		Store: store, Appliance: d.cfg.ApplianceID, Local: d.store, DataDir: layout, FS: d.fs,
		Parallelism: c.Parallelism, Bandwidth: int64(c.Bandwidth), Compression: c.Compression,
		NumRetained: c.NumRetained, Probe: c.Probe, MaxRetryInterval: c.RetryMaxInterval,
		OrphanGrace: c.OrphanGrace, SweepInterval: c.OrphanGrace,
		Logger: d.log.With("component", "upload"),
	})
	if err != nil {
		return err
	}
	d.setUploadBandwidth = u.up.SetBandwidth
	d.remoteStatus = u.remoteStatus
	d.uploadCollector = u.up.Collector()
	return nil
}

// openRemote opens the store upload.remote names.
func openRemote(c config.Upload, fsys fileutil.FS) (upload.Store, error) {
	s, err := upload.OpenStore(upload.RemoteOptions{FS: fsys,
		Remote: c.Remote, Endpoint: c.Endpoint, Region: c.Region, PathStyle: c.PathStyle,
		AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, CredentialsFile: c.CredentialsFile,
	})
	if err != nil {
		return nil, fmt.Errorf("upload.remote: %w", err)
	}
	return s, nil
}

// startUpload starts the uploader once the first job is built: after a
// remote recovery, so that it reconciles against the restored checkpoint.
func (d *Daemon) startUpload() {
	if u := d.upl; u != nil && u.up != nil {
		u.startOnce.Do(u.up.Start)
	}
}

func (d *Daemon) closeUpload() error {
	if u := d.upl; u != nil && u.up != nil {
		return u.up.Close()
	}
	return nil
}

// wireUpload connects a job to the uploader: completed checkpoints are
// offered, and those being uploaded are not pruned.
func (d *Daemon) wireUpload(spec *pipeline.JobSpec) {
	if u := d.upl; u != nil && u.up != nil {
		spec.OnCheckpoint = u.up.Offer
		spec.ProtectCheckpoint = u.up.Protect
	}
}

// remoteRestore picks what buildJob restores (upload.Recovery.Recover):
// md, the newest local checkpoint that verifies (nil: none), or, when
// there is none or checkpointing.local_recovery is false and upload.remote
// is set, the newest remote checkpoint, downloaded into the local store.
// A graceful stop ends a download. It sets spec.RestoreSource and
// spec.LostLogs.
func (d *Daemon) remoteRestore(spec *pipeline.JobSpec, md *checkpoint.Metadata) (*checkpoint.Metadata, error) {
	u := d.upl
	if u == nil {
		return md, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	logStart := map[string]uint64{}
	for name, l := range d.logs {
		logStart[name] = l.FirstOffset()
	}
	c := d.cfg.Upload
	var wait *RemoteWaitOverview
	defer func() {
		if wait != nil {
			u.mu.Lock()
			u.recovery = nil
			u.mu.Unlock()
		}
	}()
	plan, err := u.recover.Recover(ctx, upload.StartOptions{
		Local: md, LocalRecovery: d.cfg.Checkpointing.LocalRecovery, Fresh: u.fresh, LogStart: logStart,
		Restore: c.Restore, Wait: c.RestoreTimeout, MaxBackoff: min(15*time.Second, c.RetryMaxInterval),
		OnDownload: func() {
			if !d.isReady() {
				go d.extendStartTimeout(ctx)
			}
			d.setPhase("downloading the newest remote checkpoint")
		},
		OnWait: func(err error, _ time.Duration) {
			if wait == nil {
				wait = &RemoteWaitOverview{Remote: u.store.String(), Since: time.Now().UnixMilli()}
			}
			wait.Attempts++
			wait.LastError = err.Error()
			w := *wait
			u.mu.Lock()
			u.recovery = &RecoveryOverview{Waiting: &w}
			u.mu.Unlock()
			d.setPhase(fmt.Sprintf("waiting for remote %s: %s", w.Remote, w.LastError))
		},
	})
	cancel() // ends extendStartTimeout
	if errors.Is(err, context.Canceled) {
		return nil, errStopped
	}
	if err != nil {
		return nil, err
	}
	if plan.Downloaded > 0 {
		remoteRestoreSeconds.Set(plan.Downloaded.Seconds())
	}
	if plan.Unverified && u.up != nil {
		if err := u.up.MarkUnverifiedStart(); err != nil {
			return nil, err
		}
	}
	if wait != nil {
		d.log.Info("the remote answered after a wait", "remote", wait.Remote, "attempts", wait.Attempts,
			"waited", time.Since(time.UnixMilli(wait.Since)).Round(time.Second))
		d.setPhase("recovering")
	}
	if plan.Checkpoint == nil {
		return nil, nil
	}
	wait = nil // keep the recovery overview set below
	spec.RestoreSource = plan.Source
	if len(plan.LostLogs) > 0 {
		spec.LostLogs = map[string]bool{}
		for _, name := range plan.LostLogs {
			spec.LostLogs[name] = true
		}
	}
	u.mu.Lock()
	u.recovery = &RecoveryOverview{Source: plan.Source, Checkpoint: plan.Checkpoint.ID}
	u.mu.Unlock()
	return plan.Checkpoint, nil
}

// extendStartTimeout sends EXTEND_TIMEOUT_USEC every extendEvery until ctx
// ends (the wait for the remote and the download are over).
func (d *Daemon) extendStartTimeout(ctx context.Context) {
	t := time.NewTicker(extendEvery)
	defer t.Stop()
	for {
		d.notify.extendTimeout(extendBy)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Daemon) isReady() bool {
	select {
	case <-d.ready:
		return true
	default:
		return false
	}
}

// recoveryOverview is the "recovery" field of the overview, with what the
// running job reports as lost.
func (d *Daemon) recoveryOverview() *RecoveryOverview {
	u := d.upl
	if u == nil {
		return nil
	}
	u.mu.Lock()
	r := u.recovery
	u.mu.Unlock()
	if r == nil {
		return nil
	}
	c := *r
	if job := d.currentJob(); job != nil {
		c.LostLogs = job.LostLogs()
	}
	return &c
}

// remoteStatus is GET /api/v1/upload: the uploader's figures.
func (u *uploadState) remoteStatus() RemoteStatus {
	s := u.up.Stats()
	rs := RemoteStatus{
		Remote: s.Remote, LinkUp: s.LinkUp, LinkKnown: s.LinkKnown, NewestCheckpoint: s.NewestRemote,
		LagMs: int64(s.LagSeconds * 1000), BytesPending: s.BytesPending, BytesSent: s.BytesSent, LastError: s.LastError,
	}
	if s.Conflict != "" {
		rs.LastError = s.Conflict
	}
	if s.NewestRemote > 0 {
		rs.NewestTimestamp = time.Now().Add(-time.Duration(s.NewestRemoteAgeSeconds * float64(time.Second))).UnixMilli()
	}
	// Every figure of upload.Stats, under its JSON name.
	if data, err := json.Marshal(s); err == nil {
		_ = json.Unmarshal(data, &rs.Details)
	}
	return rs
}

// decorateRemote fills in the remote status of checkpoints.
func (d *Daemon) decorateRemote(cs ...*pipeline.CheckpointStats) {
	u := d.upl
	if u == nil || u.up == nil {
		return
	}
	for _, c := range cs {
		if c != nil && c.Status == pipeline.StatusCompleted {
			c.Remote = u.up.RemoteStatus(c.ID)
		}
	}
}

// lostLogCollector exposes what a remote recovery could not replay.
type lostLogCollector struct{ d *Daemon }

var (
	descLostLog = prometheus.NewDesc("eddy_recovery_lost_log",
		"1 for a source whose ingest log was lost with the data dir: messages it received after the restored checkpoint cannot be replayed.",
		[]string{"source"}, nil)
	descLostSince = prometheus.NewDesc("eddy_recovery_lost_log_since_timestamp_seconds",
		"Completion time of the restored checkpoint: what the source received after it (until the disk was lost) is lost.",
		[]string{"source"}, nil)
	descRemoteRestored = prometheus.NewDesc("eddy_recovery_from_remote",
		"1 when the running state was recovered from a remote checkpoint.", nil, nil)
	remoteRestoreSeconds = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "eddy_recovery_remote_download_seconds", Help: "Time the last download of a remote checkpoint took."})
	descDownloaded = prometheus.NewDesc("eddy_recovery_remote_download_bytes_total",
		"Bytes read from the remote by recoveries since start.", nil, nil)
)

func (c lostLogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLostLog
	ch <- descLostSince
	ch <- descRemoteRestored
	ch <- descDownloaded
	remoteRestoreSeconds.Describe(ch)
}

func (c lostLogCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.d.recoveryOverview()
	remote := 0.0
	if r != nil && r.Source == "remote" {
		remote = 1
	}
	ch <- prometheus.MustNewConstMetric(descRemoteRestored, prometheus.GaugeValue, remote)
	if u := c.d.upl; u != nil {
		ch <- prometheus.MustNewConstMetric(descDownloaded, prometheus.CounterValue, float64(u.dlBytes.Load()))
	}
	remoteRestoreSeconds.Collect(ch)
	if r == nil {
		return
	}
	for _, ll := range r.LostLogs {
		ch <- prometheus.MustNewConstMetric(descLostLog, prometheus.GaugeValue, 1, ll.Source)
		ch <- prometheus.MustNewConstMetric(descLostSince, prometheus.GaugeValue, float64(ll.CheckpointTime)/1000, ll.Source)
	}
}

// registerUpload adds the recovery metrics to r (the uploader's own
// collector comes through uploadHooks).
func (d *Daemon) registerUpload(r *prometheus.Registry) {
	r.MustRegister(lostLogCollector{d})
}
