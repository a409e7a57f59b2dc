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

// The result checks are the harness's (eddytest/results.go).
type resultSet = eddytest.ResultSet

var (
	toOracle       = eddytest.ToOracle
	windowAggs     = eddytest.WindowAggs
	collectResults = eddytest.CollectResults
	compareResults = eddytest.CompareResults
	closeAt        = eddytest.CloseAt
	decodeResult   = eddytest.DecodeResult
)

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
		rs.Problems = append(rs.Problems, fmt.Sprintf("results file ends in a partial line: %.200s", partial))
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
		if last.Missing(want) == 0 {
			break
		}
		if time.Now().After(deadline) {
			var miss []string
			for k := range want {
				if _, ok := last.Final[k]; !ok {
					miss = append(miss, k)
				}
			}
			sort.Strings(miss)
			e.t.Fatalf("timed out after %v: %d of %d windows delivered (%d lines, %d problems); missing:\n%s",
				d, len(want)-last.Missing(want), len(want), last.Lines, len(last.Problems), strings.Join(first(miss, 20), "\n"))
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
