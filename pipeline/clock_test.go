package pipeline

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline/clock"
	"github.com/eddy-stream/eddy/pipeline/ingest"

	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/storage/ingestlog"
	"github.com/eddy-stream/eddy/test/oracle"
)

func TestBoxClockNeverGoesBack(t *testing.T) {
	start := time.UnixMilli(1_700_000_000_000)
	fc := clock.NewFakeClock(start)
	b := clock.NewBoxClock(fc)
	if got := b.NowMs(); got != start.UnixMilli() {
		t.Fatalf("first reading %d, want the wall clock %d", got, start.UnixMilli())
	}
	fc.Advance(time.Second)
	t1 := b.NowMs()
	fc.StepWall(-time.Hour) // NTP steps the clock back
	if got := b.NowMs(); got != t1 {
		t.Fatalf("after a step back: %d, want %d (held at the monotonic rate)", got, t1)
	}
	fc.Advance(1500 * time.Millisecond)
	if got := b.NowMs(); got != t1+1500 {
		t.Fatalf("1.5 s after the step back: %d, want %d", got, t1+1500)
	}
	fc.StepWall(3 * time.Hour) // a step forward is taken
	if got, want := b.NowMs(), fc.Wall().UnixMilli(); got != want {
		t.Fatalf("after a step forward: %d, want the wall clock %d", got, want)
	}
	b.Floor(fc.Wall().UnixMilli() + 10_000) // what the log held before a restart
	if got, want := b.NowMs(), fc.Wall().UnixMilli()+10_000; got != want {
		t.Fatalf("below the floor: %d, want %d", got, want)
	}
}

// appendAt appends readings received at ingestion time ingest(i).
func (h *harness) appendAt(rs []reading, ingest func(i int) int64) {
	h.t.Helper()
	for i, r := range rs {
		topic, p := r.msg()
		if _, err := h.log.Append(&ingestlog.Record{Timestamp: ingest(i), Topic: topic, Payload: p, QoS: 1}); err != nil {
			h.t.Fatal(err)
		}
	}
	if err := h.log.Sync(); err != nil {
		h.t.Fatal(err)
	}
}

// TestNTPStepBackIngestionTime: readings stamped with ingestion time by
// Ingest while the wall clock steps back an hour are not late.
func TestNTPStepBackIngestionTime(t *testing.T) {
	h := newHarness(t, false)
	fc := clock.NewFakeClock(time.UnixMilli(1_700_000_000_000))
	in := ingest.New("readings", h.log, mqttio.ClientOptions{}, nil, slog.New(slog.DiscardHandler), ingest.WithClock(fc))
	var stamps []int64
	for i := range 60 {
		if i == 30 {
			fc.StepWall(-time.Hour)
		}
		in.Receive(mqttio.Message{Topic: "sensors/s0/d1/telemetry", Payload: []byte(`{"temperature": 20}`)})
		stamps = append(stamps, int64(1_700_000_000_000+i*500))
		fc.Advance(500 * time.Millisecond)
	}
	fc.Advance(time.Hour) // an end marker: every window closes
	in.Receive(mqttio.Message{Topic: "sensors/zz/end/telemetry", Payload: []byte(`{"temperature": 0}`)})
	if err := h.log.Sync(); err != nil {
		t.Fatal(err)
	}
	r, err := h.log.NewReader(h.log.FirstOffset())
	if err != nil {
		t.Fatal(err)
	}
	var rec ingestlog.Record
	for i := range stamps {
		if err := r.Next(&rec); err != nil {
			t.Fatal(err)
		}
		if rec.Timestamp != stamps[i] {
			t.Fatalf("message %d stamped %d, want %d", i, rec.Timestamp, stamps[i])
		}
	}
	r.Close()

	spec := h.spec(1, WindowSpec{Type: "tumbling", Size: 5 * time.Second})
	spec.Sources[0].EventTime = EventTimeSpec{MaxOutOfOrderness: 0}
	var ors []oracle.Reading
	for _, ts := range stamps {
		ors = append(ors, oracle.Reading{Key: "s0|d1", TS: ts, Vals: map[string]float64{"temperature": 20}})
	}
	want := oracle.Compute(ors, oracle.Window{Type: "tumbling", Size: 5000}, testAggs, stamps[len(stamps)-1]+10_000)
	job := h.run(spec, func() bool { return len(finals(t, h.out.snapshot())) >= len(want) })
	got := finals(t, h.out.snapshot())
	delete(got, "") // none expected; compare names the difference
	compare(t, got, want)
	if d := h.dead.snapshot(); len(d) > 0 {
		t.Fatalf("%d dead letters, first %s", len(d), d[0].Payload)
	}
	for _, o := range job.Overview() {
		if o.LateEvents != 0 {
			t.Fatalf("task %s: %d late events", o.Name, o.LateEvents)
		}
	}
}

// TestEventTimeInTheFuture: one reading stamped 30 days ahead, then ordinary
// readings: it is the only dead letter and none of the others is late.
func TestEventTimeInTheFuture(t *testing.T) {
	h := newHarness(t, false)
	rs := genReadings(2000, 5, 4)
	future := reading{site: "s0", dev: "d00", ts: rs[0].ts + 30*24*3_600_000, temp: 21}
	end := endMarker(rs[len(rs)-1].ts + 3_600_000)
	all := append(append([]reading{future}, rs...), end)
	h.appendAt(all, func(i int) int64 { return all[min(max(i, 1), len(all)-1)].ts + 100 })
	spec := h.spec(2, WindowSpec{Type: "tumbling", Size: 5 * time.Second})
	spec.Sources[0].EventTime.MaxFuture = time.Hour
	want := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 5000}, testAggs, end.ts-2000)
	job := h.run(spec, func() bool { return len(finals(t, h.out.snapshot())) >= len(want) })
	compare(t, finals(t, h.out.snapshot()), want)
	dead := h.dead.snapshot()
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	var dl map[string]any
	if err := json.Unmarshal(dead[0].Payload, &dl); err != nil || dl["reason"] != reasonFuture || dl["offset"] != float64(h.log.FirstOffset()) {
		t.Fatalf("dead letter %s (%v), want reason %q for the first message", dead[0].Payload, err, reasonFuture)
	}
	for _, o := range job.Overview() {
		if o.LateEvents != 0 {
			t.Fatalf("task %s: %d late events", o.Name, o.LateEvents)
		}
	}
}

// TestIdleAdvanceFiresLastWindow: with a fake clock and no reading after the
// last one, the last window fires once the source has been idle for
// idle_timeout and the box's clock has passed its end plus
// max_out_of_orderness; after a restore from a checkpoint taken meanwhile,
// later readings are counted once and nothing is published twice.
func TestIdleAdvanceFiresLastWindow(t *testing.T) {
	h := newHarness(t, true)
	rs := genReadings(300, 4, 8)
	last := rs[len(rs)-1].ts
	fc := clock.NewFakeClock(time.UnixMilli(last + 100))
	h.appendAt(rs, func(i int) int64 { return rs[i].ts + 100 })
	spec := h.spec(2, WindowSpec{Type: "tumbling", Size: 5 * time.Second})
	spec.Clock = fc
	spec.Sources[0].EventTime.IdleTimeout = 3 * time.Second
	spec.Sources[0].EventTime.IdleAdvance = true
	ooo := spec.Sources[0].EventTime.MaxOutOfOrderness.Milliseconds()
	ow := oracle.Window{Type: "tumbling", Size: 5000}
	want := oracle.Compute(toOracle(rs), ow, testAggs, last+10_000) // every window
	var lastEnd int64
	for _, r := range want {
		lastEnd = max(lastEnd, r.End)
	}
	var firedAt int64
	h.run(spec, func() bool {
		if len(finals(t, h.out.snapshot())) >= len(want) {
			firedAt = fc.Wall().UnixMilli()
			return true
		}
		// Let box time pass only while the source waits on the clock, so a
		// slow machine does not see more box time go by per step.
		if fc.Waiters() > 0 {
			fc.Advance(100 * time.Millisecond)
		}
		return false
	})
	compare(t, finals(t, h.out.snapshot()), want)
	if firedAt < lastEnd+ooo {
		t.Fatalf("last window (end %d) fired at box time %d, before its end + max_out_of_orderness", lastEnd, firedAt)
	}
	if firedAt > lastEnd+ooo+spec.Sources[0].EventTime.IdleTimeout.Milliseconds()+4*idleTick.Milliseconds()+1000 {
		t.Fatalf("last window (end %d) fired at box time %d: late", lastEnd, firedAt)
	}

	// Restore from the checkpoint that published those windows, go on.
	md, _, err := h.store.Latest(true)
	if err != nil || md == nil {
		t.Fatal(md, err)
	}
	base := fc.Wall().UnixMilli() + 1000
	more := genReadings(200, 4, 9)
	for i := range more {
		more[i].ts += base - 1_700_000_000_000 + 1500
	}
	h.appendAt(more, func(i int) int64 { return more[i].ts + 100 })
	fc.Advance(time.Duration(more[len(more)-1].ts+100-fc.Wall().UnixMilli()) * time.Millisecond)
	spec.Restore = md
	all := append(append([]reading(nil), rs...), more...)
	want = oracle.Compute(toOracle(all), ow, testAggs, more[len(more)-1].ts+10_000)
	h.run(spec, func() bool {
		if len(finals(t, h.out.snapshot())) >= len(want) {
			return true
		}
		fc.Advance(100 * time.Millisecond)
		return false
	})
	compare(t, finals(t, h.out.snapshot()), want)
	for _, d := range h.dead.snapshot() {
		if !strings.Contains(string(d.Payload), "late") {
			t.Errorf("dead letter %s", d.Payload)
		}
	}
	if n := len(h.dead.snapshot()); n > 0 {
		t.Fatalf("%d dead letters", n)
	}
}
