package eddytest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/oracle"
)

// This file is how the end-to-end suites check what eddy delivered: result
// lines decoded into a ResultSet (duplicates counted, an id with two
// contents reported) and compared exactly with the oracle.

// WindowStages is the YAML of pipeline.stages (each item starting with
// "    - "): the demo's filter and map, then a keyed window over [site,
// device] named per_device with every aggregate function (WindowAggs).
func WindowStages(window string) string {
	return `    - name: valid
      filter: "temperature > -50 && temperature < 150"
    - name: converted
      map:
        temp_f: "temperature * 1.8 + 32"
    - name: per_device
      key_by: [site, device]
      window: ` + window + `
      aggregate:
        count: "count()"
        avg_temp: "avg(temperature)"
        max_temp: "max(temperature)"
        min_hum: "min(humidity)"
        sum_hum: "sum(humidity)"
        first_temp: "first(temperature)"
        last_temp: "last(temperature)"
        avg_temp_f: "avg(temp_f)"
`
}

// WindowAggs are the aggregates of WindowStages.
var WindowAggs = []oracle.Agg{
	{Name: "count", Fn: "count"},
	{Name: "avg_temp", Fn: "avg", Field: "temperature"},
	{Name: "max_temp", Fn: "max", Field: "temperature"},
	{Name: "min_hum", Fn: "min", Field: "humidity"},
	{Name: "sum_hum", Fn: "sum", Field: "humidity"},
	{Name: "first_temp", Fn: "first", Field: "temperature"},
	{Name: "last_temp", Fn: "last", Field: "temperature"},
	{Name: "avg_temp_f", Fn: "avg", Field: "temp_f"},
}

// ToOracle turns simulate readings into oracle readings keyed site|device,
// with temperature, humidity and temp_f (the demo map stage).
func ToOracle(rs []simulate.Reading) []oracle.Reading {
	out := make([]oracle.Reading, len(rs))
	for i, r := range rs {
		out[i] = oracle.Reading{Key: r.Site + "|" + r.Device, TS: r.TS, Vals: map[string]float64{
			"temperature": r.Temperature, "humidity": r.Humidity, "temp_f": r.Temperature*1.8 + 32,
		}}
	}
	return out
}

// CloseAt is the oracle's closeAt for a stream with an end marker at
// endTS: the final watermark is end − ooo − 1, so windows ending at or
// before end − ooo fire.
func CloseAt(endTS int64, ooo time.Duration) int64 { return endTS - ooo.Milliseconds() }

// Result is one decoded result line.
type Result struct {
	Raw    string
	ID     string
	Stage  string
	Key    string // key field values joined with |
	Start  int64
	End    int64
	Firing int
	Vals   map[string]float64
}

// ResultSet is what a sink delivered: the highest firing per window of
// the stage, duplicates counted, and every inconsistency found.
type ResultSet struct {
	Final    map[string]Result // oracle.ID(key, start, end) → highest firing
	Lines    int
	Dups     int      // lines whose id was seen before, with identical content
	Problems []string // malformed lines, ids that disagree with their content, one id with two contents
}

// CollectResults decodes result lines of stage (keyed by keyFields) from
// appliance. Keys with a field starting with "_" (end marker, probes) are
// left out.
func CollectResults(lines []string, appliance, stage string, keyFields []string) *ResultSet {
	rs := &ResultSet{Final: map[string]Result{}}
	seen := map[string]string{}
	for _, line := range lines {
		rs.Lines++
		r, err := DecodeResult(line, keyFields)
		if err != nil {
			rs.Problems = append(rs.Problems, fmt.Sprintf("%v: %.300s", err, line))
			continue
		}
		if r.Stage != stage {
			continue
		}
		if prev, ok := seen[r.ID]; ok {
			if prev != line {
				rs.Problems = append(rs.Problems, fmt.Sprintf("id %s with two contents:\n  %s\n  %s", r.ID, prev, line))
			} else {
				rs.Dups++
			}
			continue
		}
		seen[r.ID] = line
		wantID := fmt.Sprintf("%s:%s:%s:%d-%d:%d", appliance, r.Stage, r.Key, r.Start, r.End, r.Firing)
		if r.ID != wantID {
			rs.Problems = append(rs.Problems, fmt.Sprintf("id %q, want %q from the content", r.ID, wantID))
		}
		if strings.HasPrefix(r.Key, "_") || strings.Contains(r.Key, "|_") {
			continue
		}
		k := oracle.ID(r.Key, r.Start, r.End)
		if cur, ok := rs.Final[k]; !ok || r.Firing > cur.Firing {
			rs.Final[k] = r
		}
	}
	return rs
}

// DecodeResult decodes one result line with keyFields as its key.
func DecodeResult(line string, keyFields []string) (Result, error) {
	d := json.NewDecoder(strings.NewReader(line))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return Result{}, fmt.Errorf("not JSON: %v", err)
	}
	r := Result{Raw: line, Vals: map[string]float64{}}
	var ok bool
	if r.ID, ok = m["id"].(string); !ok {
		return r, fmt.Errorf("no id")
	}
	if r.Stage, ok = m["stage"].(string); !ok {
		return r, fmt.Errorf("no stage")
	}
	var parts []string
	for _, f := range keyFields {
		v, ok := m[f].(string)
		if !ok {
			return r, fmt.Errorf("key field %s missing or not a string", f)
		}
		parts = append(parts, v)
	}
	r.Key = strings.Join(parts, "|")
	num := func(name string) (float64, error) {
		n, ok := m[name].(json.Number)
		if !ok {
			return 0, fmt.Errorf("%s missing or not a number", name)
		}
		return n.Float64()
	}
	for _, name := range []string{"window_start", "window_end", "firing"} {
		v, err := num(name)
		if err != nil {
			return r, err
		}
		switch name {
		case "window_start":
			r.Start = int64(v)
		case "window_end":
			r.End = int64(v)
		case "firing":
			r.Firing = int(v)
		}
	}
	for name, v := range m {
		if n, ok := v.(json.Number); ok {
			f, err := n.Float64()
			if err != nil {
				return r, fmt.Errorf("%s: %v", name, err)
			}
			r.Vals[name] = f
		}
	}
	return r, nil
}

// Missing counts the windows of want not in rs.
func (rs *ResultSet) Missing(want map[string]oracle.Result) int {
	n := 0
	for k := range want {
		if _, ok := rs.Final[k]; !ok {
			n++
		}
	}
	return n
}

// MissingIDs are the windows of want not in rs, sorted.
func (rs *ResultSet) MissingIDs(want map[string]oracle.Result) []string {
	var miss []string
	for k := range want {
		if _, ok := rs.Final[k]; !ok {
			miss = append(miss, k)
		}
	}
	sort.Strings(miss)
	return miss
}

// CompareResults checks got against want exactly: the same windows, counts
// equal, other values equal up to summation order (oracle.Close).
func CompareResults(t testing.TB, what string, rs *ResultSet, want map[string]oracle.Result, aggs []oracle.Agg) {
	t.Helper()
	var errs []string
	errs = append(errs, rs.Problems...)
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	nMissing, nWrong := 0, 0
	for _, k := range keys {
		w := want[k]
		g, ok := rs.Final[k]
		if !ok {
			nMissing++
			errs = append(errs, fmt.Sprintf("missing window %s", k))
			continue
		}
		for _, a := range aggs {
			gv, ok := g.Vals[a.Name]
			wv := w.Values[a.Name]
			good := ok && oracle.Close(gv, wv)
			if a.Fn == "count" {
				good = ok && gv == wv
			}
			if !good {
				nWrong++
				errs = append(errs, fmt.Sprintf("window %s: %s = %v (present %v), want %v\n  %s", k, a.Name, gv, ok, wv, g.Raw))
			}
		}
	}
	nUnexpected := 0
	var extra []string
	for k := range rs.Final {
		if _, ok := want[k]; !ok {
			nUnexpected++
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		errs = append(errs, fmt.Sprintf("unexpected window %s: %s", k, rs.Final[k].Raw))
	}
	if len(errs) == 0 {
		return
	}
	const show = 25
	shown := errs
	if len(shown) > show {
		shown = shown[:show]
	}
	t.Errorf("%s: %d windows expected, %d delivered in %d lines: %d missing, %d wrong values, %d unexpected, %d other problems:\n%s",
		what, len(want), len(rs.Final), rs.Lines, nMissing, nWrong, nUnexpected, len(rs.Problems), strings.Join(shown, "\n"))
}

// CrossCheck fails when a result id has different content in a and b (the
// results file and MQTT, say).
func CrossCheck(t testing.TB, a, b *ResultSet) {
	t.Helper()
	byID := map[string]string{}
	for _, r := range a.Final {
		byID[r.ID] = r.Raw
	}
	var diff []string
	for _, r := range b.Final {
		if raw, ok := byID[r.ID]; ok && raw != r.Raw {
			diff = append(diff, fmt.Sprintf("%s:\n  a %s\n  b %s", r.ID, raw, r.Raw))
		}
	}
	sort.Strings(diff)
	if len(diff) > 10 {
		diff = diff[:10]
	}
	if len(diff) > 0 {
		t.Errorf("result ids differ between the two deliveries (first %d):\n%s", len(diff), strings.Join(diff, "\n"))
	}
}

// ReadLines returns the complete lines of a JSON-lines file (none if it
// does not exist), and the trailing partial line, if any.
func ReadLines(path string) (lines []string, partial string, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1<<20), 8<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(data) > 0 && data[len(data)-1] != '\n' && len(lines) > 0 {
		partial = lines[len(lines)-1]
		lines = lines[:len(lines)-1]
	}
	return lines, partial, sc.Err()
}

// Received is one message a Subscriber got.
type Received struct {
	Topic   string
	Payload string
}

// Subscriber records every message on a topic filter.
type Subscriber struct {
	mu     sync.Mutex
	msgs   []Received
	probed chan struct{}
}

const subscriberProbe = "e2e/probe"

// Subscribe subscribes to filter on brokerURL at QoS 1 with a clean
// session and returns once the subscription is in place (a probe that f
// published afterwards came back). It is closed when the test ends.
func Subscribe(tb testing.TB, brokerURL string, f *Feeder, filter string) *Subscriber {
	tb.Helper()
	s := &Subscriber{probed: make(chan struct{}, 1)}
	src := mqttio.NewSource(mqttio.ClientOptions{
		Broker: brokerURL, ClientID: "e2e-subscriber", CleanSession: true, ReconnectMaxInterval: time.Second,
	}, []mqttio.Subscription{{Filter: filter, QoS: 1}, {Filter: subscriberProbe, QoS: 1}}, func(m mqttio.Message) {
		m.Ack()
		if m.Topic == subscriberProbe {
			select {
			case s.probed <- struct{}{}:
			default:
			}
			return
		}
		s.mu.Lock()
		s.msgs = append(s.msgs, Received{Topic: m.Topic, Payload: string(m.Payload)})
		s.mu.Unlock()
	})
	if err := src.Start(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { src.Close() })
	deadline := time.Now().Add(ReadyTimeout)
	for {
		if err := f.Send([]simulate.Message{{Topic: subscriberProbe, Payload: []byte("probe")}}); err != nil {
			tb.Fatal(err)
		}
		select {
		case <-s.probed:
			return s
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("subscription to %s not in place within %v", filter, ReadyTimeout)
		}
	}
}

// Messages are the messages received so far, in order.
func (s *Subscriber) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.msgs...)
}

// WaitResults waits until the subscriber has every window of want (or 60
// s have passed: by the time it is called the results file has them all,
// so only the broker's delivery is still on its way) and returns what it
// received.
func (s *Subscriber) WaitResults(appliance, stage string, keyFields []string, want map[string]oracle.Result) *ResultSet {
	var rs *ResultSet
	// By the deadline, rs is what arrived: the caller compares it.
	Poll(60*time.Second, PollEvery, func() bool {
		rs = s.Results(appliance, stage, keyFields)
		return rs.Missing(want) == 0
	})
	return rs
}

// Results decodes the results received so far.
func (s *Subscriber) Results(appliance, stage string, keyFields []string) *ResultSet {
	var lines []string
	for _, m := range s.Messages() {
		lines = append(lines, m.Payload)
	}
	return CollectResults(lines, appliance, stage, keyFields)
}

// WaitProbe waits until a probe published through f comes back: the
// subscription is in place again (after its broker was restarted).
func (s *Subscriber) WaitProbe(tb testing.TB, f *Feeder) {
	tb.Helper()
	deadline := time.Now().Add(ReadyTimeout)
	for {
		_ = f.Send([]simulate.Message{{Topic: subscriberProbe, Payload: []byte("probe")}}) // fails while reconnecting
		select {
		case <-s.probed:
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("subscription not in place again within %v", ReadyTimeout)
		}
	}
}
