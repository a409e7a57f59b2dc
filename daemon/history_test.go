package daemon

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline"
)

// TestHistoryRing fills the ring past its length: it keeps the newest hour,
// oldest first, and a point without a running job is a gap (null).
func TestHistoryRing(t *testing.T) {
	var h history
	t0 := time.UnixMilli(1_700_000_000_000)
	if s := h.snapshot(); len(s.Time) != 0 || s.StepMs != 5000 || s.SpanMs != 3_600_000 {
		t.Fatalf("empty history: %+v", s)
	}
	total := historyLen + 37
	for i := range total {
		p := historyPoint{at: t0.Add(time.Duration(i) * historyStep).UnixMilli(), running: i%10 != 3,
			in: float64(i), out: float64(2 * i), backPressure: 0.5, hasWatermark: i%10 != 4, wmLagMs: float64(i)}
		h.add(p)
	}
	if h.len() != historyLen {
		t.Fatalf("len = %d, want %d", h.len(), historyLen)
	}
	s := h.snapshot()
	if len(s.Time) != historyLen || len(s.RecordsIn) != historyLen || len(s.RecordsOut) != historyLen ||
		len(s.BackPressure) != historyLen || len(s.WatermarkLag) != historyLen {
		t.Fatalf("snapshot lengths %d %d %d %d %d, want %d", len(s.Time), len(s.RecordsIn), len(s.RecordsOut),
			len(s.BackPressure), len(s.WatermarkLag), historyLen)
	}
	for j := range historyLen {
		i := total - historyLen + j
		if want := t0.Add(time.Duration(i) * historyStep).UnixMilli(); s.Time[j] != want {
			t.Fatalf("time[%d] = %d, want %d (oldest first)", j, s.Time[j], want)
		}
		running, wm := i%10 != 3, i%10 != 3 && i%10 != 4
		if (s.RecordsIn[j] != nil) != running || (s.WatermarkLag[j] != nil) != wm {
			t.Fatalf("point %d: in %v lag %v, want running=%v watermark=%v", i, s.RecordsIn[j], s.WatermarkLag[j], running, wm)
		}
		if running && (*s.RecordsIn[j] != float64(i) || *s.RecordsOut[j] != float64(2*i) || *s.BackPressure[j] != 0.5) {
			t.Fatalf("point %d: in %v out %v bp %v", i, *s.RecordsIn[j], *s.RecordsOut[j], *s.BackPressure[j])
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "records_in_per_second", "records_out_per_second", "back_pressure", "watermark_lag_ms", "checkpoints"} {
		if back[k] == nil {
			t.Errorf("GET /api/v1/history lacks %q", k)
		}
	}
}

// TestHistoryCheckpointSeries turns the statistics history (newest first)
// into columns oldest first, completed checkpoints only, with the per-task
// maxima of each checkpoint's details.
func TestHistoryCheckpointSeries(t *testing.T) {
	hist := []*pipeline.CheckpointStats{
		{ID: 4, Status: pipeline.StatusInProgress},
		{ID: 3, Status: pipeline.StatusCompleted, TriggerTimestamp: 3000, EndToEndDuration: 30, CheckpointedSize: 300, StateSize: 3000},
		{ID: 2, Status: pipeline.StatusFailed},
		{ID: 1, Status: pipeline.StatusCompleted, TriggerTimestamp: 1000, EndToEndDuration: 10, CheckpointedSize: 100, StateSize: 1000},
	}
	details := func(id int64) (*pipeline.CheckpointStats, bool) {
		if id != 3 {
			return nil, false // fell out of the details: maxima are 0
		}
		return &pipeline.CheckpointStats{ID: 3, Tasks: map[string]*pipeline.TaskStats{
			"a": {MaxStartDelay: 5, MaxAlignmentDuration: 1, MaxSyncDuration: 7, MaxAsyncDuration: 2},
			"b": {MaxStartDelay: 2, MaxAlignmentDuration: 4, MaxSyncDuration: 3, MaxAsyncDuration: 9},
		}}, true
	}
	s := checkpointSeries(hist, details)
	eq := func(name string, got []int64, want ...int64) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
			return
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s = %v, want %v", name, got, want)
				return
			}
		}
	}
	eq("id", s.ID, 1, 3)
	eq("trigger", s.Trigger, 1000, 3000)
	eq("end to end", s.EndToEnd, 10, 30)
	eq("start delay", s.StartDelay, 0, 5)
	eq("alignment", s.Alignment, 0, 4)
	eq("sync", s.Sync, 0, 7)
	eq("async", s.Async, 0, 9)
	eq("checkpointed size", s.CheckpointedSize, 100, 300)
	eq("state size", s.StateSize, 1000, 3000)
}
