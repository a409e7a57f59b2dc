package daemon

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/eddy-stream/eddy/storage/ingestlog"
	"golang.org/x/sys/unix"
)

// The systemd side of eddy (Type=notify). Everything here is a no-op
// outside systemd: sd_notify does nothing without NOTIFY_SOCKET, and the
// watchdog is off without WATCHDOG_USEC.
//
//   - READY=1 once recovery is done and the first job runs (Daemon.Ready),
//     with the STATUS= line of that moment (the restored checkpoint, the
//     backlog).
//   - STATUS= (status.go) at once on every change that matters (a source
//     disconnecting, a log filling, the uplink going down, a checkpoint
//     completing, a stall, a change of phase), seen within one tick
//     (≤ 250 ms), and every statusEvery anyway, e.g.
//     "checkpoint 42 3s ago · backlog 0 · 12k rec/s".
//   - WATCHDOG=1 every WatchdogSec/2 unless the pipeline is stalled
//     (stall.go).
//   - EXTEND_TIMEOUT_USEC= every 30 s while a start waits for its remote
//     (upload.restore: wait) or downloads from it, so that TimeoutStartSec
//     does not kill it.
//   - RELOADING=1 … READY=1 around a reload (SIGHUP), STOPPING=1 on Stop.

// statusEvery is how often STATUS= is refreshed when nothing that matters
// changed (ages and rates).
const statusEvery = 5 * time.Second

// statusTick is how often the notifier samples the daemon; a change of
// state reaches STATUS= within it.
const statusTick = 250 * time.Millisecond

// notifier samples the running job once a tick, feeds the stall detector
// and the rate sampler, and speaks sd_notify.
type notifier struct {
	d        *Daemon
	watchdog time.Duration // WATCHDOG_USEC; 0 = off
	every    time.Duration // statusEvery; tests lengthen it
	kick     chan struct{}
	stall    *stallDetector
	rates    rateSampler

	mu         sync.Mutex
	warnedSend bool
}

func newNotifier(d *Daemon) *notifier {
	n := &notifier{d: d, every: statusEvery, kick: make(chan struct{}, 1)}
	after := defaultStallAfter
	if wd, err := sd.SdWatchdogEnabled(false); err == nil && wd > 0 {
		n.watchdog, after = wd, wd
	}
	n.stall = newStallDetector(after, time.Now())
	return n
}

// run samples progress, pings the watchdog and sends STATUS= on every
// change that matters and every n.every, until ctx is done or until is
// closed.
func (n *notifier) run(ctx context.Context, until <-chan struct{}) {
	tick := statusTick
	if n.watchdog > 0 {
		tick = min(tick, max(n.watchdog/4, 50*time.Millisecond))
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var lastPing, lastStatus time.Time
	var lastStable string
	force := false
	for {
		now := time.Now()
		o := n.d.overview()
		stalled := n.sample(now, o)
		if n.watchdog > 0 && !stalled && now.Sub(lastPing) >= n.watchdog/2 {
			n.send(sd.SdNotifyWatchdog)
			lastPing = now
		}
		snap := n.snapshot(now, o)
		if stable := snap.stable(); force || stable != lastStable || now.Sub(lastStatus) >= n.every {
			n.send("STATUS=" + composeStatus(snap))
			lastStatus, lastStable, force = now, stable, false
		}
		select {
		case <-ctx.Done():
			return
		case <-until:
			return
		case <-t.C:
		case <-n.kick:
			force = true
		}
	}
}

// statusNow sends STATUS= at once, without waiting for the next tick (a
// change of phase).
func (n *notifier) statusNow() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (n *notifier) ready() {
	startToReady.Store(int64(time.Since(n.d.start)))
	n.send(sd.SdNotifyReady, "STATUS="+n.statusLine())
}

func (n *notifier) reloading() {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	n.send(sd.SdNotifyReloading, "MONOTONIC_USEC="+strconv.FormatInt(ts.Nano()/1000, 10),
		"STATUS=reloading "+n.d.configPath)
}

func (n *notifier) reloaded() {
	n.send(sd.SdNotifyReady, "STATUS="+n.statusLine())
}

// extendTimeout asks systemd for d more before TimeoutStartSec kills a
// start that waits (for its remote).
func (n *notifier) extendTimeout(d time.Duration) {
	n.send("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(d.Microseconds(), 10))
}

func (n *notifier) stopping() {
	n.send(sd.SdNotifyStopping, "STATUS="+n.statusLine())
}

// send writes one datagram of newline-separated assignments.
func (n *notifier) send(lines ...string) {
	if _, err := sd.SdNotify(false, strings.Join(lines, "\n")); err != nil {
		n.mu.Lock()
		warned := n.warnedSend
		n.warnedSend = true
		n.mu.Unlock()
		if !warned {
			n.d.log.Warn("sd_notify failed; systemd will not see readiness, status or watchdog", "err", err)
		}
	}
}

// sample reads the running job's figures into the stall detector and the
// rate sampler and reports whether the pipeline is stalled.
func (n *notifier) sample(now time.Time, o Overview) bool {
	d := n.d
	job := d.currentJob()
	sig := progressSig{job: job}
	var records, waiting int64
	counts := map[string]taskCounts{}
	for _, t := range o.Tasks {
		sig.messages += t.MessagesIn
		sig.in += t.RecordsIn
		sig.out += t.RecordsOut
		if t.Watermark != nil {
			sig.marks += *t.Watermark
		}
		if t.Kind == "source" {
			records += t.RecordsIn
		}
		counts[t.Name] = taskCounts{in: t.RecordsIn, out: t.RecordsOut, bpMs: t.BackPressuredMs}
	}
	for _, in := range o.Ingest {
		waiting += max(in.Lag, 0)
	}
	if job != nil {
		if st := job.Stats(); st != nil {
			sig.checkpoint, _, _ = st.LatestCompleted()
		}
	}
	n.rates.observe(now, records, counts)
	stalled, changed := n.stall.observe(now, sig, waiting, job == nil || d.stopping())
	switch {
	case changed && stalled:
		_, last, _ := n.stall.state()
		d.log.Error("pipeline stalled: no task made progress while input waits; watchdog pings stopped",
			"for", now.Sub(last).Round(time.Second), "waiting_messages", waiting, "watchdog", n.watchdog)
	case changed:
		d.log.Warn("pipeline progressing again; watchdog pings resumed")
	}
	return stalled
}

// health is what the overview and /metrics show of the stall detector and
// the rate sampler.
type health struct {
	Stalled      bool
	StalledFor   time.Duration
	Waiting      int64
	Rate         float64
	BackPressure float64
	Tasks        map[string]TaskRate
}

func (n *notifier) health() health {
	var h health
	var last time.Time
	h.Stalled, last, h.Waiting = n.stall.state()
	if h.Stalled {
		h.StalledFor = time.Since(last)
	}
	h.Rate, h.BackPressure, h.Tasks = n.rates.current()
	return h
}

// statusLine is the STATUS= line of now (READY=1, the overview).
func (n *notifier) statusLine() string {
	now := time.Now()
	return composeStatus(n.snapshot(now, n.d.overview()))
}

// snapshot reads what the STATUS= line says; o is the overview of now.
func (n *notifier) snapshot(now time.Time, o Overview) statusSnapshot {
	d := n.d
	d.mu.RLock()
	job, phase := d.job, d.phase
	d.mu.RUnlock()
	s := statusSnapshot{Phase: phase, Running: job != nil && o.Running, Stopping: d.stopping()}
	if job != nil {
		s.FinalCheckpoint = job.Stats() != nil
	}
	for _, in := range o.Ingest {
		s.Sources = append(s.Sources, sourceStatus{Name: in.Source, Connected: in.Connected, Full: in.Full, Failed: in.Error})
		s.Backlog += in.Lag
	}
	reasons, _ := d.intakePaused()
	for _, r := range reasons {
		if r != ingestlog.PauseFull {
			s.IntakePaused = append(s.IntakePaused, r)
		}
	}
	if s.Running {
		h := n.health()
		s.Stalled, s.StalledFor, s.Waiting = h.Stalled, h.StalledFor, h.Waiting
		s.Rate, s.BackPressure = h.Rate, h.BackPressure
		if hr := d.headroom(); hr != nil && hr.Ratio > 0 {
			s.Headroom = hr.Ratio
		}
		if st := job.Stats(); st != nil {
			s.Checkpointing = true
			if id, at, ok := st.LatestCompleted(); ok {
				s.Checkpoint, s.CheckpointAge = id, now.Sub(time.UnixMilli(at))
			}
			if md := job.Restored(); md != nil {
				s.Restored, s.RestoredAge = md.ID, now.Sub(time.UnixMilli(md.CompletedTimestamp))
			}
		}
	}
	if d.remoteStatus != nil {
		r := d.remoteStatus()
		s.Uplink = &uplinkStatus{Known: r.LinkKnown, Up: r.LinkUp, Newest: r.NewestCheckpoint,
			Lag: time.Duration(r.LagMs) * time.Millisecond}
	}
	return s
}
