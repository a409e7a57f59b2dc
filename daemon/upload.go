package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/upload"
)

// dirUpload holds the uploader's durable record and the restore marker.
const dirUpload = "upload"

// RestoredMarker is written into data_dir/upload/ when a checkpoint is
// downloaded from remote (by the daemon or `eddy restore`). It tells the
// next restore of that checkpoint that it came from remote and, once
// decided, which sources' ingest logs were lost with the old disk: their
// offsets in the checkpoint point into a log that no longer exists.
const RestoredMarker = "restored-from-remote.json"

// Restored is the content of RestoredMarker.
type Restored struct {
	Checkpoint   int64  `json:"checkpoint"`
	Remote       string `json:"remote"`
	DownloadedAt int64  `json:"downloaded_at"` // unix ms
	// LostLogs is nil until the first restore decides it: the sources
	// whose ingest log was empty (never written) when eddy started and
	// whose offset in the checkpoint is above 0.
	LostLogs []string `json:"lost_logs"`
}

// WriteRestoredMarker records that checkpoint id was downloaded from remote.
func WriteRestoredMarker(dataDir string, id int64, remote string) error {
	dir := filepath.Join(dataDir, dirUpload)
	if err := fileutil.CreateDirAll(dir); err != nil {
		return err
	}
	data, _ := json.Marshal(Restored{Checkpoint: id, Remote: remote, DownloadedAt: time.Now().UnixMilli()})
	return fileutil.WriteFileAtomic(filepath.Join(dir, RestoredMarker), data, 0o644)
}

func readRestoredMarker(dataDir string) (*Restored, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, dirUpload, RestoredMarker))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r := &Restored{}
	if err := json.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("%s: %w", RestoredMarker, err)
	}
	return r, nil
}

// RecoveryOverview says where the running job's state came from and what
// could not be replayed (GET /api/v1/overview "recovery").
type RecoveryOverview struct {
	Source     string             `json:"source"` // local | remote
	Checkpoint int64              `json:"checkpoint"`
	LostLogs   []pipeline.LostLog `json:"lost_logs,omitempty"`
}

// uploadState is the daemon's side of upload and remote recovery.
type uploadState struct {
	store upload.Store
	up    *upload.Uploader
	// fresh are the sources whose ingest log had never been written when
	// the daemon opened it (before ingest started).
	fresh     map[string]bool
	startOnce sync.Once

	mu       sync.Mutex
	recovery *RecoveryOverview
	dlBytes  atomic.Int64 // bytes read by remote recoveries
}

// openUpload notes which ingest logs are new and, with upload.remote set,
// opens the remote store and the uploader and installs the uploadHooks.
// Called by New after the logs and the checkpoint store are open.
func (d *Daemon) openUpload() error {
	u := &uploadState{fresh: map[string]bool{}}
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
	store, err := openRemote(c)
	if err != nil {
		return err
	}
	u.store = store
	if d.store == nil {
		d.log.Warn("upload.remote is set but checkpointing is off (checkpointing.interval: 0): nothing to upload")
		return nil
	}
	u.up, err = upload.New(upload.Options{
		Store: store, Appliance: d.cfg.ApplianceID, Local: d.store, Dir: filepath.Join(d.cfg.DataDir, dirUpload),
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
func openRemote(c config.Upload) (upload.Store, error) {
	s, err := upload.OpenStore(upload.RemoteOptions{
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

// remoteRestoreWait bounds how long a start without any local checkpoint
// waits for the remote to answer before it starts from empty state (the
// uploader then refuses to upload over the remote's newer history).
const remoteRestoreWait = 2 * time.Minute

// remoteRestore picks what buildJob restores: md, the newest local
// checkpoint that verifies (nil: none), or, when there is none or
// checkpointing.local_recovery is false and upload.remote is set, the
// newest remote checkpoint, downloaded into the local store. It sets
// spec.RestoreSource and spec.LostLogs.
func (d *Daemon) remoteRestore(spec *pipeline.JobSpec, md *checkpoint.Metadata) (*checkpoint.Metadata, error) {
	u := d.upl
	if u == nil {
		return md, nil
	}
	if u.store != nil && d.store != nil && (md == nil || !d.cfg.Checkpointing.LocalRecovery) {
		rmd, err := d.download(u)
		switch {
		case err == nil && rmd != nil:
			md = rmd
		case err != nil && md != nil:
			d.log.Error("remote recovery failed; restoring the local checkpoint instead", "checkpoint", md.ID, "err", err)
		case err != nil:
			d.log.Error("remote recovery failed; starting from empty state. Uploads will not overwrite the remote's "+
				"checkpoints, if it has any; restore them with `eddy restore --from remote:latest`", "err", err)
			if u.up != nil {
				if merr := u.up.MarkUnverifiedStart(); merr != nil {
					return nil, merr
				}
			}
		}
	}
	if md == nil {
		return nil, nil
	}
	spec.RestoreSource = "local"
	rec := &RecoveryOverview{Source: "local", Checkpoint: md.ID}
	marker, err := readRestoredMarker(d.cfg.DataDir)
	if err != nil {
		d.log.Warn("reading the remote restore marker", "err", err)
	}
	if marker != nil && marker.Checkpoint == md.ID {
		spec.RestoreSource, rec.Source = "remote", "remote"
		if marker.LostLogs == nil {
			marker.LostLogs = []string{}
			for name := range u.fresh {
				if st, ok := md.Sources[name]; ok && st.Offset > 0 || hasSubtaskOffsets(md, name) {
					marker.LostLogs = append(marker.LostLogs, name)
				}
			}
			slices.Sort(marker.LostLogs)
			data, _ := json.Marshal(marker)
			if err := fileutil.WriteFileAtomic(filepath.Join(d.cfg.DataDir, dirUpload, RestoredMarker), data, 0o644); err != nil {
				return nil, fmt.Errorf("record lost ingest logs: %w", err)
			}
		}
		if len(marker.LostLogs) > 0 {
			spec.LostLogs = map[string]bool{}
			for _, name := range marker.LostLogs {
				spec.LostLogs[name] = true
			}
		}
	}
	u.mu.Lock()
	u.recovery = rec
	u.mu.Unlock()
	return md, nil
}

// hasSubtaskOffsets reports whether md holds positions above 0 of source
// name's subtasks ("name/0", "name/1", ...).
func hasSubtaskOffsets(md *checkpoint.Metadata, name string) bool {
	for i := 0; ; i++ {
		st, ok := md.Sources[fmt.Sprintf("%s/%d", name, i)]
		if !ok {
			return false
		}
		if st.Offset > 0 {
			return true
		}
	}
}

// download fetches the newest remote checkpoint. While the remote does
// not answer it retries for up to remoteRestoreWait; a graceful stop ends
// it. It returns nil, nil when the remote holds no checkpoint.
func (d *Daemon) download(u *uploadState) (*checkpoint.Metadata, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	d.setPhase("downloading the newest remote checkpoint")
	d.log.Info("no usable local checkpoint: recovering from remote", "remote", u.store.String(),
		"local_recovery", d.cfg.Checkpointing.LocalRecovery)
	deadline := time.Now().Add(remoteRestoreWait)
	backoff := time.Second
	for {
		t0 := time.Now()
		md, err := upload.Download(ctx, u.store, d.cfg.ApplianceID, upload.Latest, d.store,
			upload.DownloadOptions{Parallelism: d.cfg.Upload.Parallelism, Logger: d.log.With("component", "upload"),
				BytesRead: &u.dlBytes})
		switch {
		case err == nil:
			remoteRestoreSeconds.Set(time.Since(t0).Seconds())
			if werr := WriteRestoredMarker(d.cfg.DataDir, md.ID, u.store.String()); werr != nil {
				return nil, werr
			}
			return md, nil
		case errors.Is(err, upload.ErrNoRemoteCheckpoint) && !errors.Is(err, upload.ErrRemoteCorrupt):
			d.log.Info("the remote holds no checkpoint of this appliance: starting from empty state")
			return nil, nil
		case errors.Is(err, upload.ErrRemoteCorrupt), ctx.Err() != nil:
			return nil, err
		case time.Now().After(deadline):
			return nil, fmt.Errorf("remote not reachable within %s: %w", remoteRestoreWait, err)
		}
		d.log.Warn("remote not reachable for recovery; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 15*time.Second)
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
