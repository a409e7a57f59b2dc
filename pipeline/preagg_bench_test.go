package pipeline

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkWindowBatch is the keyed window operator alone on the replay
// benchmark's shape: batches of 1024 readings from 500 devices in runs of
// 50 (one message is one device), a 10 s tumbling window with the demo's 4
// aggregates, the watermark moving between batches. One op is one batch;
// readings/s and allocs per op are the figures.
func BenchmarkWindowBatch(b *testing.B) {
	plan, err := compileAggregates(map[string]string{
		"count": "count()", "avg_t": "avg(temperature)", "max_t": "max(temperature)", "min_h": "min(humidity)",
	})
	if err != nil {
		b.Fatal(err)
	}
	w := WindowSpec{Type: "tumbling", Size: 10 * time.Second, AllowedLateness: 5 * time.Second}
	const devices, run, size = 500, 50, 1024
	keys := make([]string, devices)
	for i := range keys {
		keys[i] = string(encodeKey(nil, []string{fmt.Sprintf("site-%d", i%10), fmt.Sprintf("dev-%04d", i)}))
	}
	for _, c := range []struct {
		name string
		ref  bool
	}{{"per_reading", true}, {"pre_aggregated", false}} {
		b.Run(c.name, func(b *testing.B) {
			op, _ := newPreAggOpB(b, b.TempDir(), &w, plan, c.ref)
			evs := make([]event, size)
			vals := make([]float64, 2*size)
			for i := range vals {
				vals[i] = float64(i % 37)
			}
			next, ts := 0, int64(1_000_000)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for i := range evs {
					d := next / run % devices
					next++
					if next%25 == 0 { // 40 µs of event time a reading
						ts++
					}
					evs[i] = event{kg: uint16(d % 128), key: keys[d], ts: ts, vals: vals[2*i : 2*i+2]}
				}
				if err := op.processBatch(evs, func() error { return nil }); err != nil {
					b.Fatal(err)
				}
				if err := op.advance(ts - 2000); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "readings/s")
		})
	}
}
