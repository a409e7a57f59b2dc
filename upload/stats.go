package upload

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats are the uploader's figures: GET /api/v1/upload.
type Stats struct {
	Remote    string `json:"remote"`
	Appliance string `json:"appliance"`
	// LinkUp is true while the remote answers; LinkKnown is false until
	// the first request ended. LinkSince is when LinkUp last changed.
	LinkUp    bool      `json:"link_up"`
	LinkKnown bool      `json:"link_known"`
	LinkSince time.Time `json:"link_since,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// Conflict is set when uploads are stopped because the remote holds
	// another, newer history.
	Conflict string `json:"conflict,omitempty"`
	// NewestRemote is the newest committed remote checkpoint (0: none)
	// and NewestRemoteAgeSeconds the time since it completed locally.
	NewestRemote           int64   `json:"newest_remote_checkpoint"`
	NewestRemoteAgeSeconds float64 `json:"newest_remote_age_seconds"`
	RemoteCheckpoints      []int64 `json:"remote_checkpoints"`
	// NewestLocal is the newest checkpoint offered.
	NewestLocal int64 `json:"newest_local_checkpoint"`
	// LagCheckpoints counts the completed local checkpoints newer than
	// NewestRemote; LagSeconds is how much older NewestRemote is than
	// NewestLocal (0 when the remote is up to date).
	LagCheckpoints int64   `json:"lag_checkpoints"`
	LagSeconds     float64 `json:"lag_seconds"`
	// Uploading and Pending are the checkpoint being uploaded and the one
	// waiting (0: none).
	Uploading int64 `json:"uploading"`
	Pending   int64 `json:"pending"`
	// BytesPending is what the newest checkpoint not yet remote still
	// needs to send (uncompressed file bytes the remote lacks).
	BytesPending int64 `json:"bytes_pending"`
	// BytesSent counts stored bytes sent since start; FilesSent the files
	// uploaded and FilesSkipped those the remote already held.
	BytesSent    int64 `json:"bytes_sent"`
	FilesSent    int64 `json:"files_sent"`
	FilesSkipped int64 `json:"files_already_remote"`
	// Uploads counts committed remote checkpoints, Superseded those skipped
	// for a newer one, Failures failed remote requests (uploads, probes).
	Uploads    int64 `json:"uploads"`
	Superseded int64 `json:"superseded"`
	Failures   int64 `json:"failures"`
	// Durations of checkpoint uploads, start to committed _metadata.
	LastUploadSeconds float64 `json:"last_upload_seconds"`
	AvgUploadSeconds  float64 `json:"avg_upload_seconds"`
	LastUploadBytes   int64   `json:"last_upload_bytes"`
	BandwidthLimit    int64   `json:"bandwidth_limit"`
	// ObjectsDeleted by retention, OrphansDeleted by the sweep.
	ObjectsDeleted int64     `json:"objects_deleted"`
	OrphansDeleted int64     `json:"orphans_deleted"`
	LastSweep      time.Time `json:"last_sweep,omitzero"`
}

// counters are the uploader's running totals, under their own lock (the
// byte and file counts are atomics, bumped by parallel uploads).
type counters struct {
	bytesSent  atomic.Int64
	filesSent  atomic.Int64
	filesSaved atomic.Int64 // files the remote already had

	mu        sync.Mutex
	uploads   int64
	lastDur   time.Duration
	totalDur  time.Duration
	lastBytes int64
	deleted   int64
	orphans   int64
	lastSweep time.Time
}

// uploaded counts one committed checkpoint upload.
func (c *counters) uploaded(d time.Duration, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.uploads++
	c.lastDur = d
	c.totalDur += d
	c.lastBytes = bytes
}

func (c *counters) addDeleted(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleted += n
}

func (c *counters) swept(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.orphans += n
	c.lastSweep = time.Now()
}

// Stats returns the current figures.
func (u *Uploader) Stats() Stats {
	q := u.queue.stats()
	ln := u.link.stats()
	s := Stats{
		Remote: u.o.Store.String(), Appliance: u.o.Appliance, LinkUp: ln.up, LinkKnown: ln.known,
		LinkSince: ln.since, LastError: ln.lastErr, Failures: ln.failures,
		Uploading: q.current, Pending: q.pending, Superseded: q.skipped,
		BytesSent: u.stats.bytesSent.Load(), FilesSent: u.stats.filesSent.Load(), FilesSkipped: u.stats.filesSaved.Load(),
		BandwidthLimit: u.bandwidth.Load(),
	}
	u.stats.mu.Lock()
	s.Uploads, s.LastUploadSeconds, s.LastUploadBytes = u.stats.uploads, u.stats.lastDur.Seconds(), u.stats.lastBytes
	s.ObjectsDeleted, s.OrphansDeleted, s.LastSweep = u.stats.deleted, u.stats.orphans, u.stats.lastSweep
	if u.stats.uploads > 0 {
		s.AvgUploadSeconds = u.stats.totalDur.Seconds() / float64(u.stats.uploads)
	}
	u.stats.mu.Unlock()
	now := time.Now()
	var remoteDone int64
	u.ledger.with(func(l *ledger) {
		s.Conflict, s.NewestRemote, s.RemoteCheckpoints = l.Conflict, l.newest(), l.committedIDs()
		if c, ok := l.Committed[s.NewestRemote]; ok {
			remoteDone = c.CompletedTimestamp
			s.NewestRemoteAgeSeconds = now.Sub(time.UnixMilli(c.CompletedTimestamp)).Seconds()
		}
		if nl := q.newestLocal; nl != nil && nl.ID > s.NewestRemote {
			for _, p := range l.plans(nl, u.o.Compression) {
				if p.need {
					s.BytesPending += p.file.Size
				}
			}
		}
	})
	if nl := q.newestLocal; nl != nil {
		s.NewestLocal = nl.ID
		if nl.ID > s.NewestRemote {
			s.LagCheckpoints = q.offered
			if remoteDone > 0 {
				s.LagSeconds = max(0, float64(nl.CompletedTimestamp-remoteDone)/1000)
			} else {
				s.LagSeconds = now.Sub(time.UnixMilli(nl.TriggerTimestamp)).Seconds()
			}
		}
	}
	return s
}

// Collector returns the uploader's figures as Prometheus metrics, read at
// scrape time.
func (u *Uploader) Collector() prometheus.Collector { return &collector{u: u} }

var (
	descLinkUp     = prometheus.NewDesc("eddy_upload_link_up", "1 while the remote answers, 0 while it does not.", nil, nil)
	descNewest     = prometheus.NewDesc("eddy_upload_newest_remote_checkpoint_id", "Id of the newest checkpoint committed on the remote (0: none).", nil, nil)
	descNewestAge  = prometheus.NewDesc("eddy_upload_newest_remote_checkpoint_age_seconds", "Time since the newest remote checkpoint completed.", nil, nil)
	descLagCP      = prometheus.NewDesc("eddy_upload_lag_checkpoints", "Completed local checkpoints newer than the newest remote one.", nil, nil)
	descLagSec     = prometheus.NewDesc("eddy_upload_lag_seconds", "How much older the newest remote checkpoint is than the newest local one.", nil, nil)
	descPending    = prometheus.NewDesc("eddy_upload_bytes_pending", "Bytes the newest checkpoint not yet remote still needs to send.", nil, nil)
	descSent       = prometheus.NewDesc("eddy_upload_bytes_sent_total", "Object bytes sent to the remote.", nil, nil)
	descFilesSent  = prometheus.NewDesc("eddy_upload_files_sent_total", "Files uploaded.", nil, nil)
	descUploads    = prometheus.NewDesc("eddy_upload_checkpoints_total", "Checkpoints committed on the remote.", nil, nil)
	descSuperseded = prometheus.NewDesc("eddy_upload_checkpoints_superseded_total", "Checkpoints skipped because a newer one completed before they were uploaded.", nil, nil)
	descFailures   = prometheus.NewDesc("eddy_upload_failures_total", "Failed remote requests (uploads and link probes).", nil, nil)
	descLastDur    = prometheus.NewDesc("eddy_upload_last_duration_seconds", "Duration of the last checkpoint upload.", nil, nil)
	descAvgDur     = prometheus.NewDesc("eddy_upload_avg_duration_seconds", "Average duration of checkpoint uploads since start.", nil, nil)
	descDeleted    = prometheus.NewDesc("eddy_upload_objects_deleted_total", "Remote objects deleted by retention.", nil, nil)
	descOrphans    = prometheus.NewDesc("eddy_upload_orphans_deleted_total", "Remote objects deleted by the orphan sweep.", nil, nil)
	descConflict   = prometheus.NewDesc("eddy_upload_conflict", "1 while uploads are stopped because the remote holds another, newer history.", nil, nil)
	collectorDescs = []*prometheus.Desc{descLinkUp, descNewest, descNewestAge, descLagCP, descLagSec, descPending, descSent,
		descFilesSent, descUploads, descSuperseded, descFailures, descLastDur, descAvgDur, descDeleted, descOrphans, descConflict}
)

type collector struct{ u *Uploader }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range collectorDescs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.u.Stats()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	n := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	g(descLinkUp, b(s.LinkUp))
	g(descNewest, float64(s.NewestRemote))
	g(descNewestAge, s.NewestRemoteAgeSeconds)
	g(descLagCP, float64(s.LagCheckpoints))
	g(descLagSec, s.LagSeconds)
	g(descPending, float64(s.BytesPending))
	n(descSent, s.BytesSent)
	n(descFilesSent, s.FilesSent)
	n(descUploads, s.Uploads)
	n(descSuperseded, s.Superseded)
	n(descFailures, s.Failures)
	g(descLastDur, s.LastUploadSeconds)
	g(descAvgDur, s.AvgUploadSeconds)
	n(descDeleted, s.ObjectsDeleted)
	n(descOrphans, s.OrphansDeleted)
	g(descConflict, b(s.Conflict != ""))
}
