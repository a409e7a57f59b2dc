package pipeline

import (
	"slices"
	"sort"
	"sync"
)

// Checkpoint statistics shaped like Flink's REST API
// (/jobs/:id/checkpoints), with the same field names in snake_case.

// CheckpointStatus is IN_PROGRESS, COMPLETED or FAILED.
type CheckpointStatus string

const (
	StatusInProgress CheckpointStatus = "IN_PROGRESS"
	StatusCompleted  CheckpointStatus = "COMPLETED"
	StatusFailed     CheckpointStatus = "FAILED"
)

// SubtaskStats are one subtask's figures for one checkpoint.
type SubtaskStats struct {
	Index            int          `json:"index"`
	Task             string       `json:"task"`
	Status           string       `json:"status"` // pending_or_in_progress | completed
	AckTimestamp     int64        `json:"ack_timestamp,omitempty"`
	EndToEndDuration int64        `json:"end_to_end_duration,omitempty"`
	CheckpointedSize int64        `json:"checkpointed_size"`
	StateSize        int64        `json:"state_size"`
	Checkpoint       SyncAsync    `json:"checkpoint"`
	Alignment        AlignmentFig `json:"alignment"`
	StartDelay       int64        `json:"start_delay"`
	Unaligned        bool         `json:"unaligned_checkpoint"`
	Aborted          bool         `json:"aborted"`
}

// SyncAsync are the durations (ms) of the two snapshot phases.
type SyncAsync struct {
	Sync  int64 `json:"sync"`
	Async int64 `json:"async"`
}

// AlignmentFig describes barrier alignment (ms and bytes).
type AlignmentFig struct {
	Buffered  int64 `json:"buffered"`
	Processed int64 `json:"processed"`
	Persisted int64 `json:"persisted"`
	Duration  int64 `json:"duration"`
}

// TaskStats aggregates the subtasks of one task (a source or a stage).
type TaskStats struct {
	ID                      string         `json:"id"`
	Status                  string         `json:"status"`
	LatestAckTimestamp      int64          `json:"latest_ack_timestamp"`
	CheckpointedSize        int64          `json:"checkpointed_size"`
	StateSize               int64          `json:"state_size"`
	EndToEndDuration        int64          `json:"end_to_end_duration"`
	AlignmentBuffered       int64          `json:"alignment_buffered"`
	ProcessedData           int64          `json:"processed_data"`
	PersistedData           int64          `json:"persisted_data"`
	NumSubtasks             int            `json:"num_subtasks"`
	NumAcknowledgedSubtasks int            `json:"num_acknowledged_subtasks"`
	Subtasks                []SubtaskStats `json:"subtasks"`
	MaxStartDelay           int64          `json:"max_start_delay"`
	MaxAlignmentDuration    int64          `json:"max_alignment_duration"`
	MaxSyncDuration         int64          `json:"max_sync_duration"`
	MaxAsyncDuration        int64          `json:"max_async_duration"`
}

// CheckpointStats is one checkpoint, as in Flink's history entries.
type CheckpointStats struct {
	ID                      int64                 `json:"id"`
	Status                  CheckpointStatus      `json:"status"`
	IsSavepoint             bool                  `json:"is_savepoint"`
	CheckpointType          string                `json:"checkpoint_type"`
	TriggerTimestamp        int64                 `json:"trigger_timestamp"`
	LatestAckTimestamp      int64                 `json:"latest_ack_timestamp"`
	CheckpointedSize        int64                 `json:"checkpointed_size"`
	StateSize               int64                 `json:"state_size"`
	EndToEndDuration        int64                 `json:"end_to_end_duration"`
	AlignmentBuffered       int64                 `json:"alignment_buffered"`
	ProcessedData           int64                 `json:"processed_data"`
	PersistedData           int64                 `json:"persisted_data"`
	NumSubtasks             int                   `json:"num_subtasks"`
	NumAcknowledgedSubtasks int                   `json:"num_acknowledged_subtasks"`
	ExternalPath            string                `json:"external_path,omitempty"`
	Discarded               bool                  `json:"discarded"`
	FailureTimestamp        int64                 `json:"failure_timestamp,omitempty"`
	FailureMessage          string                `json:"failure_message,omitempty"`
	Tasks                   map[string]*TaskStats `json:"tasks,omitempty"`
	// Remote is the upload status of this checkpoint, filled in by the
	// uploader when there is one.
	Remote string `json:"remote_status,omitempty"`
}

// MinMaxAvg is Flink's StatsSummary.
type MinMaxAvg struct {
	Min  int64   `json:"min"`
	Max  int64   `json:"max"`
	Avg  int64   `json:"avg"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
}

// RestoredStats describes the checkpoint the job was restored from.
type RestoredStats struct {
	ID               int64  `json:"id"`
	RestoreTimestamp int64  `json:"restore_timestamp"`
	IsSavepoint      bool   `json:"is_savepoint"`
	ExternalPath     string `json:"external_path"`
	DurationMs       int64  `json:"restore_duration"`
	Source           string `json:"source"` // local | remote | savepoint
}

// CheckpointsOverview is GET /api/v1/checkpoints.
type CheckpointsOverview struct {
	Counts struct {
		Restored   int64 `json:"restored"`
		Total      int64 `json:"total"`
		InProgress int64 `json:"in_progress"`
		Completed  int64 `json:"completed"`
		Failed     int64 `json:"failed"`
	} `json:"counts"`
	Summary struct {
		CheckpointedSize  MinMaxAvg `json:"checkpointed_size"`
		StateSize         MinMaxAvg `json:"state_size"`
		EndToEndDuration  MinMaxAvg `json:"end_to_end_duration"`
		AlignmentBuffered MinMaxAvg `json:"alignment_buffered"`
		ProcessedData     MinMaxAvg `json:"processed_data"`
		PersistedData     MinMaxAvg `json:"persisted_data"`
	} `json:"summary"`
	Latest struct {
		Completed *CheckpointStats `json:"completed"`
		Savepoint *CheckpointStats `json:"savepoint"`
		Failed    *CheckpointStats `json:"failed"`
		Restored  *RestoredStats   `json:"restored"`
	} `json:"latest"`
	History []*CheckpointStats `json:"history"`
}

// reservoir keeps the last n values of a figure for the summary.
type reservoir struct {
	vals []int64
	n    int
	next int
	// running min/max/sum over all values ever added
	min, max, sum, count int64
}

func (r *reservoir) add(v int64) {
	if r.count == 0 || v < r.min {
		r.min = v
	}
	if r.count == 0 || v > r.max {
		r.max = v
	}
	r.sum += v
	r.count++
	if len(r.vals) < r.n {
		r.vals = append(r.vals, v)
		return
	}
	r.vals[r.next] = v
	r.next = (r.next + 1) % r.n
}

func (r *reservoir) summary() MinMaxAvg {
	if r.count == 0 {
		return MinMaxAvg{}
	}
	s := slices.Clone(r.vals)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) float64 {
		// Flink uses the "R-7" quantile definition via Apache Commons.
		h := p * float64(len(s)-1)
		lo := int(h)
		if lo+1 >= len(s) {
			return float64(s[len(s)-1])
		}
		return float64(s[lo]) + (h-float64(lo))*float64(s[lo+1]-s[lo])
	}
	return MinMaxAvg{Min: r.min, Max: r.max, Avg: r.sum / r.count,
		P50: q(.5), P90: q(.9), P95: q(.95), P99: q(.99), P999: q(.999)}
}

// StatsTracker records checkpoint statistics. It is safe for concurrent use.
type StatsTracker struct {
	mu        sync.Mutex
	history   int
	hist      []*CheckpointStats // newest first
	byID      map[int64]*CheckpointStats
	counts    CheckpointsOverview
	ckSize    reservoir
	stSize    reservoir
	e2e       reservoir
	buffered  reservoir
	processed reservoir
	persisted reservoir
}

// NewStatsTracker keeps the last history checkpoints in full.
func NewStatsTracker(history int) *StatsTracker {
	if history < 1 {
		history = 10
	}
	t := &StatsTracker{history: history, byID: map[int64]*CheckpointStats{}}
	for _, r := range []*reservoir{&t.ckSize, &t.stSize, &t.e2e, &t.buffered, &t.processed, &t.persisted} {
		r.n = 1000
	}
	return t
}

func (t *StatsTracker) started(c *CheckpointStats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.counts.Counts.Total++
	t.counts.Counts.InProgress++
	t.hist = append([]*CheckpointStats{c}, t.hist...)
	t.byID[c.ID] = c
	if len(t.hist) > t.history {
		for _, old := range t.hist[t.history:] {
			if old.Status != StatusInProgress {
				delete(t.byID, old.ID)
			}
		}
		t.hist = t.hist[:t.history]
	}
}

// update runs f on checkpoint id under the lock.
func (t *StatsTracker) update(id int64, f func(c *CheckpointStats)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.byID[id]; ok {
		f(c)
	}
}

func (t *StatsTracker) completed(id int64, f func(c *CheckpointStats)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.byID[id]
	if !ok {
		return
	}
	f(c)
	c.Status = StatusCompleted
	t.counts.Counts.InProgress--
	t.counts.Counts.Completed++
	t.ckSize.add(c.CheckpointedSize)
	t.stSize.add(c.StateSize)
	t.e2e.add(c.EndToEndDuration)
	t.buffered.add(c.AlignmentBuffered)
	t.processed.add(c.ProcessedData)
	t.persisted.add(c.PersistedData)
	t.counts.Latest.Completed = c
}

func (t *StatsTracker) failed(id int64, at int64, msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.byID[id]
	if !ok || c.Status != StatusInProgress {
		return
	}
	c.Status = StatusFailed
	c.FailureTimestamp = at
	c.FailureMessage = msg
	c.Discarded = true
	t.counts.Counts.InProgress--
	t.counts.Counts.Failed++
	t.counts.Latest.Failed = c
}

func (t *StatsTracker) restored(r *RestoredStats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.counts.Counts.Restored++
	t.counts.Latest.Restored = r
}

// Overview returns a deep-enough copy for JSON encoding; per-task details
// are left out of the history (see Details).
func (t *StatsTracker) Overview() CheckpointsOverview {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.counts
	o.Summary.CheckpointedSize = t.ckSize.summary()
	o.Summary.StateSize = t.stSize.summary()
	o.Summary.EndToEndDuration = t.e2e.summary()
	o.Summary.AlignmentBuffered = t.buffered.summary()
	o.Summary.ProcessedData = t.processed.summary()
	o.Summary.PersistedData = t.persisted.summary()
	strip := func(c *CheckpointStats) *CheckpointStats {
		if c == nil {
			return nil
		}
		cc := *c
		cc.Tasks = nil
		return &cc
	}
	o.Latest.Completed = strip(o.Latest.Completed)
	o.Latest.Failed = strip(o.Latest.Failed)
	o.Latest.Savepoint = strip(o.Latest.Savepoint)
	if o.Latest.Restored != nil {
		r := *o.Latest.Restored
		o.Latest.Restored = &r
	}
	o.History = make([]*CheckpointStats, len(t.hist))
	for i, c := range t.hist {
		o.History[i] = strip(c)
	}
	return o
}

// Details returns checkpoint id with per-task and per-subtask figures.
func (t *StatsTracker) Details(id int64) (*CheckpointStats, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.byID[id]
	if !ok {
		return nil, false
	}
	cc := *c
	cc.Tasks = make(map[string]*TaskStats, len(c.Tasks))
	for k, v := range c.Tasks {
		tv := *v
		tv.Subtasks = slices.Clone(v.Subtasks)
		cc.Tasks[k] = &tv
	}
	return &cc, true
}

// LatestCompleted returns the id and ack time of the newest completed
// checkpoint, or ok=false.
func (t *StatsTracker) LatestCompleted() (id int64, at int64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.counts.Latest.Completed; c != nil {
		return c.ID, c.LatestAckTimestamp, true
	}
	return 0, 0, false
}

// savepoint records that completed checkpoint id was copied to the
// savepoint at path: latest.savepoint is it, with that external path.
func (t *StatsTracker) savepoint(id int64, path string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.byID[id]
	if !ok {
		return
	}
	cc := *c
	cc.ExternalPath = path
	t.counts.Latest.Savepoint = &cc
}
