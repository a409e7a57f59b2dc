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
//   - WATCHDOG=1 every WatchdogSec/2 unless the pipeline is stalled.
//   - RELOADING=1 … READY=1 around a reload (SIGHUP), STOPPING=1 on Stop.
//
// Stalled means: a job is running, input is waiting in an ingest log (its
// newest offset is past what the source has read), and for longer than the
// stall timeout (the watchdog timeout, or 30 s without a watchdog) no task
// made progress: no message read, no record in or out, no watermark moved,
// no checkpoint completed. An idle pipeline with nothing to read is never
// stalled, nor is one that is slow but moving; neither is the daemon while
// it recovers, restarts a failed job (the supervisor is in charge) or stops.
// When pings stop, systemd kills eddy one watchdog timeout later and
// Restart=on-failure starts it again from the last checkpoint.

// defaultStallAfter is the stall timeout when systemd runs no watchdog.
const defaultStallAfter = 30 * time.Second

// rateWindow is the span over which STATUS= rates are averaged.
const rateWindow = 5 * time.Second

// statusEvery is how often STATUS= is refreshed without a change of phase.
const statusEvery = 5 * time.Second

type systemd struct {
	d          *Daemon
	watchdog   time.Duration // WATCHDOG_USEC; 0 = off
	stallAfter time.Duration
	kick       chan struct{}

	mu           sync.Mutex
	sig          progressSig
	lastProgress time.Time
	stalled      bool
	waiting      int64 // messages waiting in the ingest logs
	samples      []rateSample
	rate         float64 // records per second read by the sources
	backPressure float64 // max over tasks of the back-pressured share of time
	taskRates    map[string]TaskRate
	status       string
	warnedSend   bool
}

// progressSig changes whenever any task makes progress.
type progressSig struct {
	job                      any // a new job is progress
	messages, in, out, marks int64
	checkpoint               int64
}

type rateSample struct {
	at      time.Time
	records int64
	tasks   map[string]taskCounts
}

type taskCounts struct{ in, out, bpMs int64 }

// TaskRate is one task's throughput and back-pressure over the last 5 s.
type TaskRate struct {
	InPerSecond  float64 `json:"records_in_per_second"`
	OutPerSecond float64 `json:"records_out_per_second"`
	// BackPressure is the share of time (0..1) the task waited on a full
	// output channel.
	BackPressure float64 `json:"back_pressure"`
}

func newSystemd(d *Daemon) *systemd {
	s := &systemd{d: d, kick: make(chan struct{}, 1), stallAfter: defaultStallAfter, lastProgress: time.Now()}
	if wd, err := sd.SdWatchdogEnabled(false); err == nil && wd > 0 {
		s.watchdog, s.stallAfter = wd, wd
	}
	return s
}

// run samples progress, pings the watchdog and refreshes STATUS= until ctx
// is done.
func (s *systemd) run(ctx context.Context) {
	tick := time.Second
	if s.watchdog > 0 {
		tick = min(tick, max(s.watchdog/4, 50*time.Millisecond))
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var lastPing, lastStatus time.Time
	for {
		now := time.Now()
		stalled := s.sample(now)
		if s.watchdog > 0 && !stalled && now.Sub(lastPing) >= s.watchdog/2 {
			s.send(sd.SdNotifyWatchdog)
			lastPing = now
		}
		if now.Sub(lastStatus) >= statusEvery {
			s.send("STATUS=" + s.statusLine())
			lastStatus = now
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
			s.send("STATUS=" + s.statusLine())
			lastStatus = time.Now()
		}
	}
}

// statusNow refreshes STATUS= at once (a change of phase).
func (s *systemd) statusNow() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *systemd) ready() {
	s.send(sd.SdNotifyReady, "STATUS="+s.statusLine())
}

func (s *systemd) reloading() {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	s.send(sd.SdNotifyReloading, "MONOTONIC_USEC="+strconv.FormatInt(ts.Nano()/1000, 10),
		"STATUS=reloading "+s.d.configPath)
}

func (s *systemd) reloaded() {
	s.send(sd.SdNotifyReady, "STATUS="+s.statusLine())
}

func (s *systemd) stopping() {
	s.send(sd.SdNotifyStopping, "STATUS="+s.statusLine())
}

// send writes one datagram of newline-separated assignments.
func (s *systemd) send(lines ...string) {
	if _, err := sd.SdNotify(false, strings.Join(lines, "\n")); err != nil {
		s.mu.Lock()
		warned := s.warnedSend
		s.warnedSend = true
		s.mu.Unlock()
		if !warned {
			s.d.log.Warn("sd_notify failed; systemd will not see readiness, status or watchdog", "err", err)
		}
	}
}

// sample reads the running job's figures and reports whether the pipeline
// is stalled.
func (s *systemd) sample(now time.Time) bool {
	d := s.d
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

	s.mu.Lock()
	defer s.mu.Unlock()
	if sig != s.sig || job == nil || waiting == 0 || d.stopping() {
		s.lastProgress = now
	}
	s.sig = sig
	s.waiting = waiting
	wasStalled := s.stalled
	s.stalled = now.Sub(s.lastProgress) > s.stallAfter
	switch {
	case s.stalled && !wasStalled:
		d.log.Error("pipeline stalled: no task made progress while input waits; watchdog pings stopped",
			"for", now.Sub(s.lastProgress).Round(time.Second), "waiting_messages", waiting, "watchdog", s.watchdog)
		s.statusNowLocked()
	case !s.stalled && wasStalled:
		d.log.Warn("pipeline progressing again; watchdog pings resumed")
		s.statusNowLocked()
	}

	// Rates over the last rateWindow.
	if len(s.samples) > 0 && s.samples[len(s.samples)-1].records > records {
		s.samples = s.samples[:0] // a new job: counters started again
	}
	s.samples = append(s.samples, rateSample{at: now, records: records, tasks: counts})
	for len(s.samples) > 2 && now.Sub(s.samples[1].at) >= rateWindow {
		s.samples = s.samples[1:]
	}
	first := s.samples[0]
	s.rate, s.backPressure, s.taskRates = 0, 0, map[string]TaskRate{}
	if dt := now.Sub(first.at); dt > 0 {
		s.rate = float64(records-first.records) / dt.Seconds()
		for name, c := range counts {
			prev, ok := first.tasks[name]
			if !ok {
				continue
			}
			r := TaskRate{
				InPerSecond:  float64(c.in-prev.in) / dt.Seconds(),
				OutPerSecond: float64(c.out-prev.out) / dt.Seconds(),
				BackPressure: min(1, float64(c.bpMs-prev.bpMs)/float64(dt.Milliseconds()+1)),
			}
			s.taskRates[name] = r
			s.backPressure = max(s.backPressure, r.BackPressure)
		}
	}
	return s.stalled
}

func (s *systemd) statusNowLocked() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// health is what the overview and /metrics show of the stall detector.
type health struct {
	Stalled      bool
	StalledFor   time.Duration
	Waiting      int64
	Rate         float64
	BackPressure float64
	Tasks        map[string]TaskRate
}

func (s *systemd) health() health {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := health{Stalled: s.stalled, Waiting: s.waiting, Rate: s.rate, BackPressure: s.backPressure, Tasks: s.taskRates}
	if s.stalled {
		h.StalledFor = time.Since(s.lastProgress)
	}
	return h
}

// statusLine is the one-line state an operator reads in systemctl status.
func (s *systemd) statusLine() string {
	d := s.d
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
	h := s.health()
	var parts []string
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
	if s.d.remoteStatus != nil {
		r := s.d.remoteStatus()
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
