package daemon

import (
	"encoding/json"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/oklog/run"

	"github.com/eddy-stream/eddy/pipeline"
)

// The figures the page's charts draw over the last hour. One actor samples
// the running job every historyStep into a ring of historyLen points, so
// the memory is fixed (about 34 KiB) however long eddy runs; nothing of it
// is written to disk, and a restart starts an empty hour.

const (
	historyStep = 5 * time.Second
	historySpan = time.Hour
	historyLen  = int(historySpan / historyStep)
)

// historyPoint is one sample. Without a running job (recovery, a
// restart) only at is set.
type historyPoint struct {
	at           int64   // Unix milliseconds
	in, out      float64 // records/s read by the sources, emitted by the keyed tasks
	backPressure float64 // busiest task's share of time waiting on a full channel, 0..1
	wmLagMs      float64 // now − the lowest task watermark
	headroom     float64 // the latest plan's maximum ÷ the live input (headroom.go)
	hasHeadroom  bool
	running      bool
	hasWatermark bool
}

// history is the ring. The zero value is empty and ready.
type history struct {
	mu   sync.Mutex
	ring [historyLen]historyPoint
	next int // where the next point goes
	n    int // points held, ≤ historyLen
}

func (h *history) add(p historyPoint) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring[h.next] = p
	h.next = (h.next + 1) % historyLen
	h.n = min(h.n+1, historyLen)
}

// len is the number of points held.
func (h *history) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// History is GET /api/v1/history: what the page's charts draw, as columns
// (one array per figure, oldest first) the way uPlot takes them.
type History struct {
	StepMs int64 `json:"step_ms"`
	SpanMs int64 `json:"span_ms"`
	// Time is each sample's wall-clock time in Unix milliseconds. A value
	// is null where no job ran, or, for the watermark lag, where no task
	// had a watermark yet.
	Time []int64 `json:"time"`
	// RecordsIn is what the sources read per second, RecordsOut what the
	// keyed tasks emitted per second (their results; with several keyed
	// stages each stage's output counts), both averaged over 5 s.
	RecordsIn  []*float64 `json:"records_in_per_second"`
	RecordsOut []*float64 `json:"records_out_per_second"`
	// BackPressure is the busiest task's share of time (0..1) spent waiting
	// on a full output channel over the last 5 s.
	BackPressure []*float64 `json:"back_pressure"`
	// WatermarkLag is the wall clock minus the lowest task watermark, in
	// milliseconds, never below 0.
	WatermarkLag []*float64 `json:"watermark_lag_ms"`
	// Headroom is the latest `eddy plan` maximum ÷ the live input rate;
	// null before a plan or without input.
	Headroom    []*float64       `json:"headroom"`
	Checkpoints CheckpointSeries `json:"checkpoints"`
}

// CheckpointSeries holds the completed checkpoints of the statistics
// history (checkpointing.history of them), oldest first, one array per
// figure. The per-task figures are the maximum over the checkpoint's tasks,
// as the details view reports them; durations are in milliseconds.
type CheckpointSeries struct {
	ID               []int64 `json:"id"`
	Trigger          []int64 `json:"trigger_timestamp"`
	EndToEnd         []int64 `json:"end_to_end_duration"`
	StartDelay       []int64 `json:"max_start_delay"`
	Alignment        []int64 `json:"max_alignment_duration"`
	Sync             []int64 `json:"max_sync_duration"`
	Async            []int64 `json:"max_async_duration"`
	CheckpointedSize []int64 `json:"checkpointed_size"`
	StateSize        []int64 `json:"state_size"`
}

// snapshot returns the ring's points oldest first, without checkpoints.
func (h *history) snapshot() History {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := History{StepMs: historyStep.Milliseconds(), SpanMs: historySpan.Milliseconds(),
		Time: make([]int64, 0, h.n), RecordsIn: make([]*float64, 0, h.n), RecordsOut: make([]*float64, 0, h.n),
		BackPressure: make([]*float64, 0, h.n), WatermarkLag: make([]*float64, 0, h.n),
		Headroom: make([]*float64, 0, h.n)}
	val := func(ok bool, v float64) *float64 {
		if !ok {
			return nil
		}
		v = math.Round(v*1000) / 1000 // the charts need no more
		return &v
	}
	for i := range h.n {
		p := h.ring[(h.next-h.n+i+historyLen)%historyLen]
		out.Time = append(out.Time, p.at)
		out.RecordsIn = append(out.RecordsIn, val(p.running, p.in))
		out.RecordsOut = append(out.RecordsOut, val(p.running, p.out))
		out.BackPressure = append(out.BackPressure, val(p.running, p.backPressure))
		out.WatermarkLag = append(out.WatermarkLag, val(p.running && p.hasWatermark, p.wmLagMs))
		out.Headroom = append(out.Headroom, val(p.running && p.hasHeadroom, p.headroom))
	}
	return out
}

// checkpointSeries turns the statistics history (newest first, as
// StatsTracker.Overview returns it) into columns, oldest first, taking the
// per-task maxima from details.
func checkpointSeries(hist []*pipeline.CheckpointStats, details func(id int64) (*pipeline.CheckpointStats, bool)) CheckpointSeries {
	var s CheckpointSeries
	for i := len(hist) - 1; i >= 0; i-- {
		c := hist[i]
		if c == nil || c.Status != pipeline.StatusCompleted {
			continue
		}
		var startDelay, align, syncMs, asyncMs int64
		if d, ok := details(c.ID); ok {
			for _, t := range d.Tasks {
				startDelay = max(startDelay, t.MaxStartDelay)
				align = max(align, t.MaxAlignmentDuration)
				syncMs = max(syncMs, t.MaxSyncDuration)
				asyncMs = max(asyncMs, t.MaxAsyncDuration)
			}
		}
		s.ID = append(s.ID, c.ID)
		s.Trigger = append(s.Trigger, c.TriggerTimestamp)
		s.EndToEnd = append(s.EndToEnd, c.EndToEndDuration)
		s.StartDelay = append(s.StartDelay, startDelay)
		s.Alignment = append(s.Alignment, align)
		s.Sync = append(s.Sync, syncMs)
		s.Async = append(s.Async, asyncMs)
		s.CheckpointedSize = append(s.CheckpointedSize, c.CheckpointedSize)
		s.StateSize = append(s.StateSize, c.StateSize)
	}
	return s
}

// sampleHistory reads the running job's figures at now: the rates the
// notifier keeps (rates.go) and the tasks' watermarks.
func (d *Daemon) sampleHistory(now time.Time) historyPoint {
	p := historyPoint{at: now.UnixMilli()}
	o := d.overview()
	if !o.Running {
		return p
	}
	h := d.notify.health()
	p.running, p.in, p.backPressure = true, h.Rate, h.BackPressure
	var lowest int64
	for _, t := range o.Tasks {
		if t.Kind != "source" {
			p.out += h.Tasks[t.Name].OutPerSecond
		}
		if t.Watermark != nil && (!p.hasWatermark || *t.Watermark < lowest) {
			lowest, p.hasWatermark = *t.Watermark, true
		}
	}
	if hr := d.headroom(); hr != nil && hr.Ratio >= 0 {
		p.headroom, p.hasHeadroom = hr.Ratio, true
	}
	if p.hasWatermark {
		p.wmLagMs = float64(max(0, now.UnixMilli()-lowest))
	}
	return p
}

// addHistory samples the job into d.history every historyStep until the
// supervisor has returned (or a hard stop).
func (d *Daemon) addHistory(g *run.Group, r *runState) {
	g.Add(func() error {
		t := time.NewTicker(historyStep)
		defer t.Stop()
		for {
			select {
			case <-r.ctx.Done():
				return nil
			case <-r.supervised:
				return nil
			case now := <-t.C:
				d.history.add(d.sampleHistory(now))
			}
		}
	}, func(error) {})
}

// handleHistory is GET /api/v1/history, unindented: the page polls it
// every 2 s and an hour is 720 points per figure.
func (d *Daemon) handleHistory(w http.ResponseWriter, _ *http.Request) {
	out := d.history.snapshot()
	if st := d.stats(); st != nil {
		out.Checkpoints = checkpointSeries(st.Overview().History, st.Details)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
