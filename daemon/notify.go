package daemon

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// The systemd side of eddy (Type=notify). Everything here is a no-op
// outside systemd: sd_notify does nothing without NOTIFY_SOCKET, and the
// watchdog is off without WATCHDOG_USEC.
//
//   - READY=1 once recovery is done and the first job runs (Daemon.Ready).
//   - STATUS= every few seconds and on every change of phase, e.g.
//     "checkpoint 42 3s ago · 12k rec/s · back-pressure 0%".
//   - WATCHDOG=1 every WatchdogSec/2 unless the pipeline is stalled
//     (stall.go).
//   - RELOADING=1 … READY=1 around a reload (SIGHUP), STOPPING=1 on Stop.

// statusEvery is how often STATUS= is refreshed without a change of phase.
const statusEvery = 5 * time.Second

// notifier samples the running job once a tick, feeds the stall detector
// and the rate sampler, and speaks sd_notify.
type notifier struct {
	d        *Daemon
	watchdog time.Duration // WATCHDOG_USEC; 0 = off
	kick     chan struct{}
	stall    *stallDetector
	rates    rateSampler

	mu         sync.Mutex
	warnedSend bool
}

func newNotifier(d *Daemon) *notifier {
	n := &notifier{d: d, kick: make(chan struct{}, 1)}
	after := defaultStallAfter
	if wd, err := sd.SdWatchdogEnabled(false); err == nil && wd > 0 {
		n.watchdog, after = wd, wd
	}
	n.stall = newStallDetector(after, time.Now())
	return n
}

// run samples progress, pings the watchdog and refreshes STATUS= until ctx
// is done or until is closed.
func (n *notifier) run(ctx context.Context, until <-chan struct{}) {
	tick := time.Second
	if n.watchdog > 0 {
		tick = min(tick, max(n.watchdog/4, 50*time.Millisecond))
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var lastPing, lastStatus time.Time
	for {
		now := time.Now()
		stalled := n.sample(now)
		if n.watchdog > 0 && !stalled && now.Sub(lastPing) >= n.watchdog/2 {
			n.send(sd.SdNotifyWatchdog)
			lastPing = now
		}
		if now.Sub(lastStatus) >= statusEvery {
			n.send("STATUS=" + n.statusLine())
			lastStatus = now
		}
		select {
		case <-ctx.Done():
			return
		case <-until:
			return
		case <-t.C:
		case <-n.kick:
			n.send("STATUS=" + n.statusLine())
			lastStatus = time.Now()
		}
	}
}

// statusNow refreshes STATUS= at once (a change of phase).
func (n *notifier) statusNow() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (n *notifier) ready() {
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
func (n *notifier) sample(now time.Time) bool {
	d := n.d
	job := d.currentJob()
	o := d.overview()
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
		n.statusNow()
	case changed:
		d.log.Warn("pipeline progressing again; watchdog pings resumed")
		n.statusNow()
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

// statusLine is the one-line state an operator reads in systemctl status.
func (n *notifier) statusLine() string {
	d := n.d
	d.mu.RLock()
	job, phase := d.job, d.phase
	d.mu.RUnlock()
	if d.stopping() {
		if job != nil && job.Stats() != nil {
			return "stopping: taking the final checkpoint"
		}
		return "stopping"
	}
	if job == nil {
		return phase
	}
	h := n.health()
	var parts []string
	if reasons, _ := d.intakePaused(); len(reasons) > 0 {
		parts = append(parts, "INTAKE PAUSED ("+strings.Join(reasons, ", ")+")")
	}
	if h.Stalled {
		parts = append(parts, fmt.Sprintf("STALLED for %s with %s messages waiting",
			h.StalledFor.Round(time.Second), humanCount(float64(h.Waiting))))
	}
	if st := job.Stats(); st == nil {
		parts = append(parts, "checkpoints off")
	} else if id, at, ok := st.LatestCompleted(); ok {
		age := max(0, time.Since(time.UnixMilli(at))).Round(time.Second)
		parts = append(parts, fmt.Sprintf("checkpoint %d %s ago", id, age))
	} else {
		parts = append(parts, "no checkpoint yet")
	}
	parts = append(parts, humanCount(h.Rate)+" rec/s")
	parts = append(parts, fmt.Sprintf("back-pressure %.0f%%", h.BackPressure*100))
	if !h.Stalled && h.Waiting >= 1000 {
		parts = append(parts, "backlog "+humanCount(float64(h.Waiting))+" msgs")
	}
	if d.remoteStatus != nil {
		r := d.remoteStatus()
		switch {
		case !r.LinkUp:
			parts = append(parts, "remote link down")
		case r.NewestCheckpoint == 0:
			parts = append(parts, "remote: no checkpoint yet")
		default:
			parts = append(parts, fmt.Sprintf("remote %d lag %s", r.NewestCheckpoint,
				(time.Duration(r.LagMs)*time.Millisecond).Round(time.Second)))
		}
	}
	return strings.Join(parts, " · ")
}

// humanCount renders 950, 12.3k, 4.1M.
func humanCount(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 1, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 0, 64) + "k"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}
