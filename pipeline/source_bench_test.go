package pipeline

import (
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline/lang"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/storage/ingestlog"
)

// BenchmarkSourceReading is the per-reading path of a source task on the
// demo pipeline: parse a simulator message of 50 readings (topic fields,
// event time), filter, map, and shuffle into batches for two keyed
// subtasks (the batches are recycled, nothing downstream). One op is one
// reading; allocs/op is per reading. It runs the slot path the job uses
// for this chain (slotpath.go); BenchmarkSourceReadingMap the map path.
func BenchmarkSourceReading(b *testing.B) { benchSourceReading(b, true) }

func BenchmarkSourceReadingMap(b *testing.B) { benchSourceReading(b, false) }

func benchSourceReading(b *testing.B, slots bool) {
	var msgs []*ingestlog.Record
	err := simulate.Generate(simulate.Options{Devices: 500, Sites: 10, Batch: 50, Count: 50 * 500, Interval: 40 * time.Microsecond, Seed: 1},
		func(topic string, payload []byte, _ []simulate.Reading) error {
			msgs = append(msgs, &ingestlog.Record{Offset: uint64(len(msgs)), Topic: topic, Payload: payload})
			return nil
		})
	if err != nil {
		b.Fatal(err)
	}
	m := newTaskMetrics("bench", "source")
	dl := &deadLetters{m: m, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	spec := &SourceSpec{Name: "readings", TopicFields: []string{"", "site", "device", ""},
		EventTime: EventTimeSpec{Field: "ts", Format: "auto"}}
	ps := newParser(spec, 1<<20)
	plan, err := compileAggregates(map[string]string{
		"count": "count()", "avg_temp": "avg(temperature)", "max_temp": "max(temperature)", "avg_temp_f": "avg(temp_f)",
	})
	if err != nil {
		b.Fatal(err)
	}
	pool := &batchPool{}
	sh := &shuffleNode{
		stage: "per_device", keyFields: []string{"site", "device"}, inputs: plan.inputs,
		maxP: 128, bufs: make([]*batch, 2), batchSize: 1024, pool: pool, dl: dl, m: m,
	}
	for range 2 {
		ch := make(chan element, 1)
		sh.outs = append(sh.outs, ch)
	}
	mn, err := newMapNode("converted", map[string]string{"temp_f": "temperature * 1.8 + 32"}, dl, sh)
	if err != nil {
		b.Fatal(err)
	}
	prog, err := lang.CompileFilter("temperature > -50 && temperature < 150")
	if err != nil {
		b.Fatal(err)
	}
	chain := &filterNode{passthrough: passthrough{mn}, stage: "valid", prog: prog, dl: dl}
	if slots && !enableSlots(ps, chain) {
		b.Fatal("the demo chain is not on the slot path")
	}
	emit := func(r *Reading) error { return chain.collect(r) }
	drain := func() {
		for _, ch := range sh.outs {
			select {
			case e := <-ch:
				pool.put(e.b)
			default:
			}
		}
	}
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	n := 0
	for n < b.N {
		for _, r := range msgs {
			if err := ps.parse(r, emit, dl); err != nil {
				b.Fatal(err)
			}
			drain()
			if n += 50; n >= b.N {
				break
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "readings/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(n), "cpu_ns/reading")
	if m.DeadLetters.Load() > 0 {
		b.Fatalf("%d dead letters", m.DeadLetters.Load())
	}
}

// cpuTime is the CPU time (user and system) of the process so far, in ns:
// less sensitive than wall time to other work on a loaded box.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
