package simulate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func base() Options {
	return Options{Devices: 7, Sites: 3, Count: 1000, Start: t0, Interval: 100 * time.Millisecond, Seed: 42}
}

// collect returns every message of the stream.
func collect(t *testing.T, o Options) []Message {
	t.Helper()
	var out []Message
	if err := GenerateMessages(o, func(m Message) error {
		out = append(out, m)
		return nil
	}); err != nil {
		t.Fatalf("GenerateMessages: %v", err)
	}
	return out
}

func digest(t *testing.T, o Options) [32]byte {
	t.Helper()
	h := sha256.New()
	if err := Generate(o, func(topic string, payload []byte, _ []Reading) error {
		fmt.Fprintf(h, "%s\x00%d\x00", topic, len(payload))
		h.Write(payload)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

func TestDeterministic(t *testing.T) {
	for _, o := range []Options{
		base(),
		func() Options {
			o := base()
			o.Batch, o.Disorder, o.Bad, o.EndMarker = 5, 3*time.Second, 0.2, true
			return o
		}(),
	} {
		a, b := digest(t, o), digest(t, o)
		if a != b {
			t.Fatalf("same options, different streams: %x %x", a, b)
		}
		o2 := o
		o2.Seed++
		if digest(t, o2) == a {
			t.Fatal("different seeds, identical streams")
		}
	}
	// Pin the stream: a change here changes the expected results of every
	// end-to-end test, so make it on purpose and update these.
	got := collect(t, base())[0]
	want := `{"device":"dev-0001","site":"site-1","ts":1740830400000,"temperature":23.14,"humidity":60.22}`
	if got.Topic != "sensors/site-1/dev-0001/telemetry" || string(got.Payload) != want {
		t.Fatalf("first message %s %s, want %s", got.Topic, got.Payload, want)
	}
	if d := fmt.Sprintf("%x", digest(t, base())); d != "b78a3d9b641b9a160fa9a87fa01e942f831f413ec1477f61814a75925924a12b" {
		t.Fatalf("stream digest %s changed", d)
	}
}

// Values do not depend on Bad or Disorder: each has its own random stream.
func TestStreamsIndependent(t *testing.T) {
	plain := collect(t, base())
	o := base()
	o.Disorder = 5 * time.Second
	jittered := collect(t, o)
	for i := range plain {
		p, j := plain[i].Readings[0], jittered[i].Readings[0]
		if p.Temperature != j.Temperature || p.Humidity != j.Humidity {
			t.Fatalf("reading %d: values changed with disorder: %+v vs %+v", i, p, j)
		}
	}
}

// checkReading verifies a reading's place in the fleet: reading k of
// device d (0-based) is reading k*Devices+d of the stream.
func checkReadings(t *testing.T, o Options, msgs []Message) int {
	t.Helper()
	o = o.withDefaults()
	perDevice := map[string]int{}
	total := 0
	for _, m := range msgs {
		if m.End {
			continue
		}
		for _, r := range m.Readings {
			var d int
			if _, err := fmt.Sscanf(r.Device, "dev-%d", &d); err != nil {
				t.Fatalf("device %q", r.Device)
			}
			d--
			if want := fmt.Sprintf("site-%d", d%o.Sites+1); r.Site != want {
				t.Fatalf("%s at %s, want %s", r.Device, r.Site, want)
			}
			i := perDevice[r.Device]*o.Devices + d
			perDevice[r.Device]++
			baseTS := o.Start.Add(time.Duration(i) * o.Interval).UnixMilli()
			if r.TS > baseTS || r.TS < baseTS-o.Disorder.Milliseconds() {
				t.Fatalf("reading %d (%s): ts %d outside [%d, %d]", i, r.Device, r.TS, baseTS-o.Disorder.Milliseconds(), baseTS)
			}
			if r.Temperature < TemperatureMin || r.Temperature > TemperatureMax || r.Humidity < HumidityMin || r.Humidity > HumidityMax {
				t.Fatalf("reading %d out of range: %+v", i, r)
			}
			if math.Abs(r.Temperature*100-math.Round(r.Temperature*100)) > 1e-6 {
				t.Fatalf("reading %d: more than 2 decimals: %v", i, r.Temperature)
			}
			total++
		}
	}
	return total
}

func TestDisorderBounded(t *testing.T) {
	o := base()
	o.Disorder = 2 * time.Second
	msgs := collect(t, o)
	if n := checkReadings(t, o, msgs); n != o.Count {
		t.Fatalf("%d readings, want %d", n, o.Count)
	}
	// The jitter is used: some readings come before an earlier one.
	late, prev := 0, int64(math.MinInt64)
	for _, m := range msgs {
		ts := m.Readings[0].TS
		if ts < prev {
			late++
		}
		prev = ts
	}
	if late == 0 {
		t.Fatal("no reading out of order with 2 s of disorder at 100 ms steps")
	}
	t.Logf("%d of %d readings earlier than their predecessor", late, len(msgs))
}

// decode parses a payload the way a strict consumer would.
type jsonReading struct {
	Device      string  `json:"device"`
	Site        string  `json:"site"`
	TS          int64   `json:"ts"`
	Temperature float64 `json:"temperature"`
	Humidity    float64 `json:"humidity"`
}

func decode(payload []byte, array bool) ([]Reading, error) {
	var js []jsonReading
	if array {
		if err := json.Unmarshal(payload, &js); err != nil {
			return nil, err
		}
	} else {
		var j jsonReading
		if err := json.Unmarshal(payload, &j); err != nil {
			return nil, err
		}
		js = append(js, j)
	}
	out := make([]Reading, len(js))
	for i, j := range js {
		out[i] = Reading(j)
	}
	return out, nil
}

func TestBatchShapes(t *testing.T) {
	for _, batch := range []int{1, 4} {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			o := base()
			o.Batch = batch
			o.Count = 1001 // partial batches at the end
			msgs := collect(t, o)
			if n := checkReadings(t, o, msgs); n != o.Count {
				t.Fatalf("%d readings, want %d", n, o.Count)
			}
			partial := 0
			for i, m := range msgs {
				if batch == 1 && m.Payload[0] != '{' || batch > 1 && m.Payload[0] != '[' {
					t.Fatalf("message %d: %s", i, m.Payload)
				}
				got, err := decode(m.Payload, batch > 1)
				if err != nil {
					t.Fatalf("message %d: %v: %s", i, err, m.Payload)
				}
				if fmt.Sprint(got) != fmt.Sprint(m.Readings) {
					t.Fatalf("message %d: payload %v, reported %v", i, got, m.Readings)
				}
				dev := m.Readings[0].Device
				for _, r := range m.Readings {
					if r.Device != dev {
						t.Fatalf("message %d mixes devices %s and %s", i, dev, r.Device)
					}
				}
				if want := "sensors/" + m.Readings[0].Site + "/" + dev + "/telemetry"; m.Topic != want {
					t.Fatalf("message %d: topic %s, want %s", i, m.Topic, want)
				}
				if len(m.Readings) != batch {
					partial++
				}
			}
			// 1001 readings over 7 devices: 143 each; with batches of 4
			// every device ends with 3 left over.
			if wantPartial := map[int]int{1: 0, 4: 7}[batch]; partial != wantPartial {
				t.Fatalf("%d partial batches, want %d", partial, wantPartial)
			}
		})
	}
}

func TestEndMarker(t *testing.T) {
	o := base()
	o.EndMarker = true
	o.Disorder = time.Second
	o.Batch = 3
	msgs := collect(t, o)
	var maxTS int64
	for _, m := range msgs[:len(msgs)-1] {
		for _, r := range m.Readings {
			maxTS = max(maxTS, r.TS)
		}
	}
	end := msgs[len(msgs)-1]
	if !end.End || len(end.Readings) != 1 {
		t.Fatalf("last message %+v", end)
	}
	r := end.Readings[0]
	if r.Device != EndDevice || r.Site != "site-1" || r.TS != maxTS+EndMarkerDelay.Milliseconds() {
		t.Fatalf("end marker %+v, want %s at site-1, ts %d", r, EndDevice, maxTS+EndMarkerDelay.Milliseconds())
	}
	if end.Topic != "sensors/site-1/_end/telemetry" {
		t.Fatalf("end marker topic %s", end.Topic)
	}
	if got, err := decode(end.Payload, true); err != nil || got[0] != r {
		t.Fatalf("end marker payload %s: %v %v", end.Payload, got, err)
	}
}

func TestBadInput(t *testing.T) {
	o := base()
	o.Count = 3000
	o.Bad = 0.2
	o.Batch = 2
	msgs := collect(t, o)
	kinds := map[BadKind]int{}
	good, generated := 0, 0
	for i, m := range msgs {
		kinds[m.Bad]++
		generated += m.Generated
		good += len(m.Readings)
		rs, err := decode(m.Payload, true)
		switch m.Bad {
		case BadNone, BadExtraFields:
			if err != nil || fmt.Sprint(rs) != fmt.Sprint(m.Readings) {
				t.Fatalf("message %d (%q) not good: %v %s", i, m.Bad, err, m.Payload)
			}
			if m.Bad == BadExtraFields && !bytes.Contains(m.Payload, []byte(`"firmware"`)) {
				t.Fatalf("message %d: no extra field: %s", i, m.Payload)
			}
			continue
		case BadInvalidJSON:
			if json.Valid(m.Payload) {
				t.Fatalf("message %d: invalid_json is valid: %s", i, m.Payload)
			}
		case BadTemperatureString:
			if err == nil || !bytes.Contains(m.Payload, []byte(`"temperature":"`)) {
				t.Fatalf("message %d: temperature_string: %v %s", i, err, m.Payload)
			}
		case BadMissingDevice:
			if err != nil || rs[0].Device != "" || !strings.Contains(m.Topic, "//") {
				t.Fatalf("message %d: missing_device: %v %s %s", i, err, m.Topic, m.Payload)
			}
		case BadEmptyArray:
			if string(m.Payload) != "[]" {
				t.Fatalf("message %d: empty_array: %s", i, m.Payload)
			}
		case BadHuge:
			if len(m.Payload) != HugeSize || json.Valid(m.Payload) {
				t.Fatalf("message %d: huge_payload of %d bytes, valid %v", i, len(m.Payload), json.Valid(m.Payload))
			}
		}
		if m.Readings != nil {
			t.Fatalf("message %d (%s) reports good readings", i, m.Bad)
		}
	}
	if generated != o.Count {
		t.Fatalf("messages stand for %d readings, want %d", generated, o.Count)
	}
	bad := len(msgs) - kinds[BadNone]
	if f := float64(bad) / float64(len(msgs)); f < 0.15 || f > 0.25 {
		t.Fatalf("bad fraction %.3f, want about 0.2", f)
	}
	for _, k := range BadKinds {
		if kinds[k] == 0 {
			t.Errorf("no %s message", k)
		}
	}
	t.Logf("%d messages: %v; %d of %d readings good", len(msgs), kinds, good, generated)
}

func TestCountFromDuration(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		want int
	}{
		{"rate", Options{Devices: 2, Rate: 50, Duration: 3 * time.Second}, 150},
		{"fast default interval", Options{Devices: 2, Duration: time.Second}, 100},
		{"fast explicit interval", Options{Devices: 2, Duration: time.Second, Interval: time.Millisecond}, 1000},
		{"count", Options{Devices: 2, Count: 7, Rate: 1000}, 7},
	}
	for _, tc := range cases {
		if got, err := tc.o.Total(); err != nil || got != tc.want {
			t.Errorf("%s: Total = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	// Interval defaults to 1s/Rate.
	msgs := collect(t, Options{Devices: 1, Rate: 4, Count: 3, Start: t0})
	for i, m := range msgs {
		if want := t0.Add(time.Duration(i) * 250 * time.Millisecond).UnixMilli(); m.Readings[0].TS != want {
			t.Fatalf("reading %d at %d, want %d", i, m.Readings[0].TS, want)
		}
	}
}

func TestValidate(t *testing.T) {
	err := Options{Devices: 0, Sites: -1, Rate: -1, Count: 1, Duration: time.Second, Bad: 2, TopicPattern: "a/+/b"}.Validate()
	if err == nil {
		t.Fatal("bad options accepted")
	}
	for _, w := range []string{"devices", "sites", "rate", "not both", "bad", "topic_pattern"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if err := (Options{Devices: 1}).Validate(); err == nil || !strings.Contains(err.Error(), "set count or duration") {
		t.Fatalf("no count: %v", err)
	}
	if err := Generate(Options{}, nil); err == nil {
		t.Fatal("Generate accepted zero options")
	}
}

func TestGenerateStopsOnError(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := Generate(base(), func(string, []byte, []Reading) error {
		n++
		if n == 5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 5 {
		t.Fatalf("err %v after %d messages", err, n)
	}
}

type recorder struct {
	mu   sync.Mutex
	msgs int
	at   []time.Time
	qos  byte
}

func (r *recorder) publish(_ context.Context, _ string, _ []byte, qos byte, retain bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs++
	r.at = append(r.at, time.Now())
	r.qos = qos
	if retain {
		return errors.New("retain set")
	}
	return nil
}

func TestRunPaces(t *testing.T) {
	o := base()
	o.Count, o.Rate, o.Interval = 100, 200, 0 // 100 readings at 200/s: about 0.5 s
	o.EndMarker = true
	var rec recorder
	st, err := Run(t.Context(), o, rec.publish)
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 101 || st.Readings != 100 || st.GoodReadings != 100 || rec.qos != 1 {
		t.Fatalf("stats %+v, qos %d", st, rec.qos)
	}
	// The lower bound is the pacing; the upper one only catches pacing
	// several times too slow (10 s at a tenth of the rate), with room for
	// a loaded box's stalls.
	if st.Elapsed < 400*time.Millisecond || st.Elapsed > 5*time.Second {
		t.Fatalf("100 readings at 200/s took %v", st.Elapsed)
	}
	// Paced, not bursty: no more than ~1 s worth of readings at once, and
	// the first half goes out in the first half of the time.
	half := rec.at[50].Sub(rec.at[0])
	if half < 150*time.Millisecond {
		t.Fatalf("first 50 readings went out in %v", half)
	}
	t.Logf("paced run: %+v", st)
}

func TestRunFastAndCancel(t *testing.T) {
	o := base()
	o.Count = 20000
	var rec recorder
	st, err := Run(t.Context(), o, rec.publish)
	if err != nil || st.Messages != 20000 {
		t.Fatalf("unpaced run: %+v %v", st, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	o.Rate, o.Count = 100, 10000
	st, err = Run(ctx, o, rec.publish)
	if !errors.Is(err, context.DeadlineExceeded) || st.Messages == 0 || st.Messages > 50 {
		t.Fatalf("cancelled run: %+v %v", st, err)
	}
	pubErr := errors.New("broker gone")
	_, err = Run(t.Context(), base(), func(context.Context, string, []byte, byte, bool) error { return pubErr })
	if !errors.Is(err, pubErr) {
		t.Fatalf("publish error not returned: %v", err)
	}
}

func TestPacerBurstBounded(t *testing.T) {
	now := time.Unix(0, 0)
	p := pacer{rate: 10, burst: 10, tokens: 1, last: now}
	if w := p.take(1, now); w != 0 {
		t.Fatalf("first take waits %v", w)
	}
	if w := p.take(1, now); w != 100*time.Millisecond {
		t.Fatalf("second take waits %v, want 100ms", w)
	}
	// After a long stall only one second's worth goes out at once.
	now = now.Add(time.Hour)
	n := 0
	for p.take(1, now) == 0 {
		n++
	}
	if n != 10 {
		t.Fatalf("%d readings without waiting after a stall, want 10 (one second's worth)", n)
	}
}

// TestStatsAddUp: with bad input and an end marker, messages and readings
// are each the sum of their parts, and the summary says so.
func TestStatsAddUp(t *testing.T) {
	o := base()
	o.Count, o.Bad, o.EndMarker = 2000, 0.3, true
	var rec recorder
	st, err := Run(t.Context(), o, rec.publish)
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != st.GoodMessages+st.BadMessages+st.EndMarkers || st.Readings != st.GoodReadings+st.LostReadings {
		t.Fatalf("stats do not add up: %+v", st)
	}
	if st.Readings != 2000 || st.EndMarkers != 1 || st.BadMessages == 0 || st.ExtraFields == 0 || st.Messages != int64(rec.msgs) {
		t.Fatalf("stats %+v, %d published", st, rec.msgs)
	}
	// Batch 1: one reading per message, so good messages = good readings.
	if st.GoodMessages != st.GoodReadings || st.BadMessages != st.LostReadings {
		t.Fatalf("stats %+v", st)
	}
	want := fmt.Sprintf("published %d messages: %d good (%d with extra fields), %d bad, 1 end marker; 2000 readings: %d good, %d in bad messages;",
		st.Messages, st.GoodMessages, st.ExtraFields, st.BadMessages, st.GoodReadings, st.LostReadings)
	if s := st.String(); !strings.HasPrefix(s, want) {
		t.Fatalf("summary %q, want prefix %q", s, want)
	}
}

// TestEndMarkerOnTime: the end marker of a live stream lies EndMarkerDelay
// after the last event time and is not published before the clock reaches
// it, so it never leads a running pipeline's real readings.
func TestEndMarkerOnTime(t *testing.T) {
	o := base()
	o.Count, o.Interval = 5, time.Millisecond
	o.Start = time.Now()
	o.EndMarker, o.EndMarkerOnTime, o.EndMarkerDelay = true, true, 300*time.Millisecond
	var last Message
	var at time.Time
	_, err := Run(t.Context(), o, func(_ context.Context, topic string, payload []byte, _ byte, _ bool) error {
		at = time.Now()
		last = Message{Topic: topic, Payload: payload}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := decode(last.Payload, false)
	if err != nil || len(rs) != 1 || rs[0].Device != EndDevice {
		t.Fatalf("last message %s: %v", last.Payload, err)
	}
	if at.UnixMilli() < rs[0].TS {
		t.Fatalf("end marker (event time %d) published at %d, ahead of the clock", rs[0].TS, at.UnixMilli())
	}
	if want := o.Start.UnixMilli() + 4 + 300; rs[0].TS != want {
		t.Fatalf("end marker at %d, want %d", rs[0].TS, want)
	}
}
