package daemon

import (
	"sync"
	"time"
)

// rateWindow is the span over which rates (STATUS=, the overview) are
// averaged.
const rateWindow = 5 * time.Second

// TaskRate is one task's throughput and back-pressure over the last 5 s.
type TaskRate struct {
	InPerSecond  float64 `json:"records_in_per_second"`
	OutPerSecond float64 `json:"records_out_per_second"`
	// BackPressure is the share of time (0..1) the task waited on a full
	// output channel.
	BackPressure float64 `json:"back_pressure"`
}

type rateSample struct {
	at      time.Time
	records int64
	tasks   map[string]taskCounts
}

type taskCounts struct{ in, out, bpMs int64 }

// rateSampler turns the tasks' counters into rates over rateWindow.
type rateSampler struct {
	mu           sync.Mutex
	samples      []rateSample
	rate         float64 // records per second read by the sources
	backPressure float64 // max over tasks of the back-pressured share of time
	tasks        map[string]TaskRate
}

// observe adds a sample: records read by the sources and each task's
// counters, at now.
func (r *rateSampler) observe(now time.Time, records int64, counts map[string]taskCounts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) > 0 && r.samples[len(r.samples)-1].records > records {
		r.samples = r.samples[:0] // a new job: counters started again
	}
	r.samples = append(r.samples, rateSample{at: now, records: records, tasks: counts})
	for len(r.samples) > 2 && now.Sub(r.samples[1].at) >= rateWindow {
		r.samples = r.samples[1:]
	}
	first := r.samples[0]
	r.rate, r.backPressure, r.tasks = 0, 0, map[string]TaskRate{}
	dt := now.Sub(first.at)
	if dt <= 0 {
		return
	}
	r.rate = float64(records-first.records) / dt.Seconds()
	for name, c := range counts {
		prev, ok := first.tasks[name]
		if !ok {
			continue
		}
		tr := TaskRate{
			InPerSecond:  float64(c.in-prev.in) / dt.Seconds(),
			OutPerSecond: float64(c.out-prev.out) / dt.Seconds(),
			BackPressure: min(1, float64(c.bpMs-prev.bpMs)/float64(dt.Milliseconds()+1)),
		}
		r.tasks[name] = tr
		r.backPressure = max(r.backPressure, tr.BackPressure)
	}
}

// current returns the rates of the last observe.
func (r *rateSampler) current() (rate, backPressure float64, tasks map[string]TaskRate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rate, r.backPressure, r.tasks
}
