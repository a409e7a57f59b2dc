package pipeline

import (
	"sync/atomic"
	"time"
)

// TaskMetrics are one task's counters, updated by the task's goroutine and
// read by anyone.
type TaskMetrics struct {
	Name               string       // "source:readings" or "per_device_minute-1"
	Kind               string       // source | keyed
	RecordsIn          atomic.Int64 // source tasks: raised after each message, keyed tasks after each batch
	RecordsOut         atomic.Int64 // a shuffle raises it when it sends a batch or passes on a watermark, barrier or the end
	BackPressuredNanos atomic.Int64
	Watermark          atomic.Int64 // unix ms; math.MinInt64 until the first one
	DeadLetters        atomic.Int64
	LateEvents         atomic.Int64
	MessagesIn         atomic.Int64 // source tasks: ingest-log messages read
	Offset             atomic.Int64 // source tasks: next ingest-log offset to read
}

// TaskOverview is a point-in-time copy of TaskMetrics for the HTTP API.
type TaskOverview struct {
	Name            string  `json:"name"`
	Kind            string  `json:"kind"`
	RecordsIn       int64   `json:"records_in"`
	RecordsOut      int64   `json:"records_out"`
	BackPressuredMs int64   `json:"back_pressured_ms"`
	Watermark       *int64  `json:"watermark,omitempty"`
	WatermarkTime   string  `json:"watermark_time,omitempty"`
	DeadLetters     int64   `json:"dead_letters"`
	LateEvents      int64   `json:"late_events"`
	MessagesIn      int64   `json:"messages_in,omitempty"`
	Offset          *int64  `json:"offset,omitempty"`
	BackPressureRat float64 `json:"-"`
}

func (m *TaskMetrics) overview() TaskOverview {
	o := TaskOverview{
		Name: m.Name, Kind: m.Kind,
		RecordsIn: m.RecordsIn.Load(), RecordsOut: m.RecordsOut.Load(),
		BackPressuredMs: time.Duration(m.BackPressuredNanos.Load()).Milliseconds(),
		DeadLetters:     m.DeadLetters.Load(), LateEvents: m.LateEvents.Load(),
		MessagesIn: m.MessagesIn.Load(),
	}
	if wm := m.Watermark.Load(); wm != minWatermark {
		o.Watermark = &wm
		o.WatermarkTime = fmtMS(wm)
	}
	if m.Kind == "source" {
		off := m.Offset.Load()
		o.Offset = &off
	}
	return o
}

func newTaskMetrics(name, kind string) *TaskMetrics {
	m := &TaskMetrics{Name: name, Kind: kind}
	m.Watermark.Store(minWatermark)
	return m
}
