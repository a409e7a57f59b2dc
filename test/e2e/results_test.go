package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/eddytest"
	"github.com/eddy-stream/eddy/test/oracle"
)

// stream is a generated input with what the generator says about it.
type stream struct {
	opts  simulate.Options
	msgs  []simulate.Message // the end marker, if any, last
	good  []simulate.Reading // good readings, the end marker not included
	endTS int64              // event time of the end marker
	bad   map[simulate.BadKind]int
}

func newStream(t testing.TB, o simulate.Options) *stream {
	t.Helper()
	s := &stream{opts: o, bad: map[simulate.BadKind]int{}}
	err := simulate.GenerateMessages(o, func(m simulate.Message) error {
		s.msgs = append(s.msgs, m)
		if m.End {
			s.endTS = m.Readings[0].TS
			return nil
		}
		s.good = append(s.good, m.Readings...)
		if m.Bad != simulate.BadNone {
			s.bad[m.Bad]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// body is the stream without its end marker; end is the end marker.
func (s *stream) body() []simulate.Message {
	if n := len(s.msgs); n > 0 && s.msgs[n-1].End {
		return s.msgs[:n-1]
	}
	return s.msgs
}

func (s *stream) end() []simulate.Message {
	if n := len(s.msgs); n > 0 && s.msgs[n-1].End {
		return s.msgs[n-1:]
	}
	return nil
}

// withPattern returns copies of msgs on another topic pattern: the first
// topic level replaced by prefix.
func withPrefix(msgs []simulate.Message, prefix string) []simulate.Message {
	out := make([]simulate.Message, len(msgs))
	for i, m := range msgs {
		_, rest, _ := strings.Cut(m.Topic, "/")
		m.Topic = prefix + "/" + rest
		out[i] = m
	}
	return out
}

// toOracle turns simulate readings into oracle readings keyed site|device,
// with temperature, humidity and temp_f (the demo map stage).
func toOracle(rs []simulate.Reading) []oracle.Reading {
	out := make([]oracle.Reading, len(rs))
	for i, r := range rs {
		out[i] = oracle.Reading{Key: r.Site + "|" + r.Device, TS: r.TS, Vals: map[string]float64{
			"temperature": r.Temperature, "humidity": r.Humidity, "temp_f": r.Temperature*1.8 + 32,
		}}
	}
	return out
}

// windowAggs are the aggregates of windowStages.
var windowAggs = []oracle.Agg{
	{Name: "count", Fn: "count"},
	{Name: "avg_temp", Fn: "avg", Field: "temperature"},
	{Name: "max_temp", Fn: "max", Field: "temperature"},
	{Name: "min_hum", Fn: "min", Field: "humidity"},
	{Name: "sum_hum", Fn: "sum", Field: "humidity"},
	{Name: "first_temp", Fn: "first", Field: "temperature"},
	{Name: "last_temp", Fn: "last", Field: "temperature"},
	{Name: "avg_temp_f", Fn: "avg", Field: "temp_f"},
}

// result is one decoded result line.
type result struct {
	Raw    string
	ID     string
	Stage  string
	Key    string // key field values joined with |
	Start  int64
	End    int64
	Firing int
	Vals   map[string]float64
}

// resultSet is what a sink delivered: the highest firing per window of
// the stage, duplicates counted, and every inconsistency found.
type resultSet struct {
	final    map[string]result // oracle.ID(key, start, end) → highest firing
	lines    int
	dups     int      // lines whose id was seen before, with identical content
	problems []string // malformed lines, ids that disagree with their content, one id with two contents
}

// collectResults decodes result lines of stage (keyed by keyFields) from
// appliance. Keys with a field starting with "_" (end marker, probes) are
// left out.
func collectResults(lines []string, appliance, stage string, keyFields []string) *resultSet {
	rs := &resultSet{final: map[string]result{}}
	seen := map[string]string{}
	for _, line := range lines {
		rs.lines++
		r, err := decodeResult(line, keyFields)
		if err != nil {
			rs.problems = append(rs.problems, fmt.Sprintf("%v: %.300s", err, line))
			continue
		}
		if r.Stage != stage {
			continue
		}
		if prev, ok := seen[r.ID]; ok {
			if prev != line {
				rs.problems = append(rs.problems, fmt.Sprintf("id %s with two contents:\n  %s\n  %s", r.ID, prev, line))
			} else {
				rs.dups++
			}
			continue
		}
		seen[r.ID] = line
		wantID := fmt.Sprintf("%s:%s:%s:%d-%d:%d", appliance, r.Stage, r.Key, r.Start, r.End, r.Firing)
		if r.ID != wantID {
			rs.problems = append(rs.problems, fmt.Sprintf("id %q, want %q from the content", r.ID, wantID))
		}
		if strings.HasPrefix(r.Key, "_") || strings.Contains(r.Key, "|_") {
			continue
		}
		k := oracle.ID(r.Key, r.Start, r.End)
		if cur, ok := rs.final[k]; !ok || r.Firing > cur.Firing {
			rs.final[k] = r
		}
	}
	return rs
}

func decodeResult(line string, keyFields []string) (result, error) {
	d := json.NewDecoder(strings.NewReader(line))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return result{}, fmt.Errorf("not JSON: %v", err)
	}
	r := result{Raw: line, Vals: map[string]float64{}}
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

// missing counts the windows of want not in got.
func (rs *resultSet) missing(want map[string]oracle.Result) int {
	n := 0
	for k := range want {
		if _, ok := rs.final[k]; !ok {
			n++
		}
	}
	return n
}

// compareResults checks got against want exactly: the same windows, counts
// equal, other values equal up to summation order (oracle.Close).
func compareResults(t testing.TB, what string, rs *resultSet, want map[string]oracle.Result, aggs []oracle.Agg) {
	t.Helper()
	var errs []string
	errs = append(errs, rs.problems...)
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	nMissing, nWrong := 0, 0
	for _, k := range keys {
		w := want[k]
		g, ok := rs.final[k]
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
	for k := range rs.final {
		if _, ok := want[k]; !ok {
			nUnexpected++
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		errs = append(errs, fmt.Sprintf("unexpected window %s: %s", k, rs.final[k].Raw))
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
		what, len(want), len(rs.final), rs.lines, nMissing, nWrong, nUnexpected, len(rs.problems), strings.Join(shown, "\n"))
}

// readResults reads the results file of e.
func (e *eddy) readResults(stage string, keyFields []string) *resultSet {
	e.t.Helper()
	return e.readResultsFrom("results.jsonl", stage, keyFields)
}

// readResultsFrom reads a results file under the data directory.
func (e *eddy) readResultsFrom(file, stage string, keyFields []string) *resultSet {
	e.t.Helper()
	lines, partial, err := readLines(e.Path(file))
	if err != nil {
		e.t.Fatal(err)
	}
	rs := collectResults(lines, e.appliance(), stage, keyFields)
	if partial != "" {
		rs.problems = append(rs.problems, fmt.Sprintf("results file ends in a partial line: %.200s", partial))
	}
	return rs
}

func (e *eddy) appliance() string {
	if e.cfg.Appliance == "" {
		return "e2e"
	}
	return e.cfg.Appliance
}

// waitResults waits until the results file holds every window of want,
// quiesces eddy (so that nothing more is on its way) and returns what the
// file holds.
func (e *eddy) waitResults(stage string, keyFields []string, want map[string]oracle.Result) *resultSet {
	e.t.Helper()
	return e.waitResultsWithin(resultsTimeout, stage, keyFields, want)
}

// waitResultsWithin is waitResults with another deadline.
func (e *eddy) waitResultsWithin(d time.Duration, stage string, keyFields []string, want map[string]oracle.Result) *resultSet {
	e.t.Helper()
	var last *resultSet
	deadline := time.Now().Add(d)
	for {
		e.MustRun()
		last = e.readResults(stage, keyFields)
		if last.missing(want) == 0 {
			break
		}
		if time.Now().After(deadline) {
			var miss []string
			for k := range want {
				if _, ok := last.final[k]; !ok {
					miss = append(miss, k)
				}
			}
			sort.Strings(miss)
			e.t.Fatalf("timed out after %v: %d of %d windows delivered (%d lines, %d problems); missing:\n%s",
				d, len(want)-last.missing(want), len(want), last.lines, len(last.problems), strings.Join(first(miss, 20), "\n"))
		}
		time.Sleep(eddytest.PollEvery)
	}
	e.quiesce()
	return e.readResults(stage, keyFields)
}

// deadLetter is one line of the dead-letter file.
type deadLetter struct {
	Reason    string `json:"reason"`
	Payload   string `json:"payload"`
	Topic     string `json:"topic"`
	Stage     string `json:"stage"`
	EventTime int64  `json:"event_time"`
	Source    string `json:"source"`
	Offset    uint64 `json:"offset"`
	Truncated bool   `json:"payload_truncated"`
	Size      int    `json:"payload_size"`
}

func (e *eddy) readDeadLetters() []deadLetter {
	e.t.Helper()
	lines, partial, err := readLines(e.Path("dead-letters.jsonl"))
	if err != nil {
		e.t.Fatal(err)
	}
	if partial != "" {
		e.t.Errorf("dead-letter file ends in a partial line: %.200s", partial)
	}
	var out []deadLetter
	for _, l := range lines {
		var d deadLetter
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			e.t.Errorf("dead letter is not JSON: %v: %.200s", err, l)
			continue
		}
		out = append(out, d)
	}
	return out
}

// closeAt is the oracle's closeAt for a stream with an end marker: the
// final watermark is end − ooo − 1, so windows ending at or before
// end − ooo fire.
func closeAt(endTS int64, ooo time.Duration) int64 { return endTS - ooo.Milliseconds() }
