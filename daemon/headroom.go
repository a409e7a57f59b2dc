package daemon

import (
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-stream/eddy/daemon/plan"
	"github.com/eddy-stream/eddy/storage/diskspace"
)

// Live headroom: the maximum the latest `eddy plan` measured
// (data_dir/plan/latest.json) against the live input, with this eddy's own
// restore time at its last start. The arithmetic is daemon/plan's.

// lastRestore is the restore time of this eddy's last start, in ns (0:
// none yet); observeRestore sets it with eddy_restore_duration_seconds.
// startToReady is the time from New to READY=1 of this process (the
// notifier sets it), which holds the restore and everything before it:
// the recovery a crash now would cost, but for the exec.
var lastRestore, startToReady atomic.Int64

func observeRestore(d time.Duration) {
	restoreSeconds.Set(d.Seconds())
	lastRestore.Store(int64(d))
}

// HeadroomOverview is the live headroom in the overview and in
// GET /api/v1/plan. Seconds; -1 means never (no catch-up with the input
// above the maximum; no outage limit or disk fill without input).
type HeadroomOverview struct {
	PlanTime              time.Time `json:"plan_time"`
	MaxReadingsPerSecond  float64   `json:"max_readings_per_second"`
	LiveReadingsPerSecond float64   `json:"live_readings_per_second"`
	LiveBytesPerSecond    float64   `json:"live_bytes_per_second"`
	Ratio                 float64   `json:"ratio"`
	// RestoreSeconds is this eddy's recovery at its start: from New to
	// READY=1, restore included (RestoreFrom "this start"), else the
	// plan's restore ("plan").
	RestoreSeconds       float64 `json:"restore_seconds"`
	RestoreFrom          string  `json:"restore_from"`
	CatchUpSeconds       float64 `json:"predicted_catchup_seconds"`
	IngestRideOutSeconds float64 `json:"ingest_outage_ride_out_seconds"`
	DiskFullInSeconds    float64 `json:"disk_full_in_seconds"`
	// SpoolRideOutSeconds: per sink (exactly-once mode), how long it can
	// be down before its spool is full and intake pauses: the room left in
	// data_dir/spool/<sink> ÷ the plan's output bytes per reading of that
	// sink × the live rate.
	SpoolRideOutSeconds map[string]float64 `json:"spool_outage_ride_out_seconds,omitempty"`
}

// planCache holds the latest plan, re-read when the file changes.
type planCache struct {
	mu    sync.Mutex
	mtime time.Time
	rep   *plan.Report
}

var plans planCache

func (d *Daemon) latestPlan() *plan.Report {
	fi, err := os.Stat(plan.Path(d.cfg.DataDir))
	plans.mu.Lock()
	defer plans.mu.Unlock()
	if err != nil {
		plans.rep, plans.mtime = nil, time.Time{}
		return nil
	}
	if !fi.ModTime().Equal(plans.mtime) {
		rep, err := plan.Load(d.cfg.DataDir)
		if err != nil {
			d.log.Warn("latest plan unreadable", "err", err)
		}
		plans.rep, plans.mtime = rep, fi.ModTime()
	}
	return plans.rep
}

// headroom computes the live figures; nil without a plan.
func (d *Daemon) headroom() *HeadroomOverview {
	rep := d.latestPlan()
	if rep == nil {
		return nil
	}
	h := &HeadroomOverview{PlanTime: rep.Time, MaxReadingsPerSecond: rep.Max.ReadingsPerSecond,
		RestoreSeconds: rep.Recovery.RestoreSeconds, RestoreFrom: "plan"}
	if ns := max(startToReady.Load(), lastRestore.Load()); ns > 0 {
		h.RestoreSeconds, h.RestoreFrom = time.Duration(ns).Seconds(), "this start"
	}
	h.LiveReadingsPerSecond = d.notify.health().Rate
	// Bytes per reading of what the logs hold now, and readings per
	// message of what the running job read.
	var used, maxSize, msgs int64
	for _, l := range d.logs {
		used += l.Size()
		msgs += int64(l.NextOffset() - l.FirstOffset())
	}
	maxSize = int64(d.cfg.IngestLog.MaxSize) * int64(len(d.logs))
	var readings, read int64
	if job := d.currentJob(); job != nil {
		f := plan.Sum(job.Overview())
		readings, read = f.SourceRecords, f.SourceMsgs
	}
	if msgs > 0 && read > 0 && readings > 0 {
		h.LiveBytesPerSecond = h.LiveReadingsPerSecond * float64(read) / float64(readings) * float64(used) / float64(msgs)
	}
	h.Ratio = plan.Finite(plan.Headroom(h.MaxReadingsPerSecond, h.LiveReadingsPerSecond))
	// The backlog after a crash now starts at the newest completed
	// checkpoint: its age, or a whole interval before there is one.
	age := d.running().Checkpointing.Interval.Seconds()
	if st := d.stats(); st != nil {
		if _, at, ok := st.LatestCompleted(); ok {
			age = time.Since(time.UnixMilli(at)).Seconds()
		}
	}
	h.CatchUpSeconds = plan.Finite(plan.CatchUp(h.RestoreSeconds, age,
		h.MaxReadingsPerSecond, h.LiveReadingsPerSecond))
	h.IngestRideOutSeconds = plan.Finite(plan.RideOut(maxSize, used, h.LiveBytesPerSecond))
	free := int64(-1)
	for _, p := range d.diskStatus() {
		if p.Path == d.cfg.DataDir {
			free = int64(p.Free)
		}
	}
	if free < 0 {
		if u, err := diskspace.Statfs(d.cfg.DataDir); err == nil {
			free = int64(u.Free)
		}
	}
	h.DiskFullInSeconds = plan.Finite(plan.DiskFull(free, h.LiveBytesPerSecond))
	if c := d.running(); c.Checkpointing.Mode != "at_least_once" && len(c.Sinks) > 0 {
		per := map[string]float64{}
		for _, sp := range rep.Spools {
			per[sp.Sink] = sp.OutputBytesPerReading
		}
		h.SpoolRideOutSeconds = map[string]float64{}
		for _, s := range c.Sinks {
			h.SpoolRideOutSeconds[s.Name] = plan.Finite(plan.RideOut(int64(s.Spool.MaxSize),
				plan.DirBytes(d.layout.Spool(s.Name)), per[s.Name]*h.LiveReadingsPerSecond))
		}
	}
	return h
}

// handlePlan is GET /api/v1/plan: the latest plan and the live headroom
// on it; 404 before the first `eddy plan`.
func (d *Daemon) handlePlan(w http.ResponseWriter, _ *http.Request) {
	rep := d.latestPlan()
	if rep == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no plan yet: run `eddy plan`"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"plan": rep, "live": d.headroom()})
}

var (
	descHeadroom = desc("eddy_headroom_ratio", "Maximum input rate the latest `eddy plan` measured divided by the live input rate (-1: no live input).")
	descCatchUp  = desc("eddy_predicted_catchup_seconds", "Predicted time to catch up after a crash now: restore plus the backlog at the surplus rate (-1: never).")
	descRideOut  = desc("eddy_ingest_outage_ride_out_seconds", "How long an uplink or sink outage the ingest logs can hold at the live input rate (-1: no input).")
	descDiskFull = desc("eddy_disk_full_in_seconds", "Time until data_dir's disk is full at the live input rate, if nothing is removed (-1: no input).")
	descSpoolOut = desc("eddy_sink_spool_outage_ride_out_seconds", "How long the sink can be down before its spool is full and intake pauses, at the live input rate and the latest plan's output per reading (-1: never).", "sink")
)

// headroomCollector reports the live headroom; nothing before a plan.
type headroomCollector struct{ d *Daemon }

func (c headroomCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descHeadroom
	ch <- descCatchUp
	ch <- descRideOut
	ch <- descDiskFull
	ch <- descSpoolOut
}

func (c headroomCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.d.headroom()
	if h == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descHeadroom, prometheus.GaugeValue, h.Ratio)
	ch <- prometheus.MustNewConstMetric(descCatchUp, prometheus.GaugeValue, h.CatchUpSeconds)
	ch <- prometheus.MustNewConstMetric(descRideOut, prometheus.GaugeValue, h.IngestRideOutSeconds)
	ch <- prometheus.MustNewConstMetric(descDiskFull, prometheus.GaugeValue, h.DiskFullInSeconds)
	for name, v := range h.SpoolRideOutSeconds {
		ch <- prometheus.MustNewConstMetric(descSpoolOut, prometheus.GaugeValue, v, name)
	}
}
