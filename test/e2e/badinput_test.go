package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/oracle"
)

// deadReason is the reason prefix a bad message of a kind must be
// dead-lettered with; alternatives are separated by " | ".
var deadReason = map[simulate.BadKind]string{
	simulate.BadInvalidJSON: "invalid JSON",
	// The "valid" filter meets the string first; without a filter the
	// keyed stage would say "field temperature: want number".
	simulate.BadTemperatureString: "filter: | field temperature: want number",
	simulate.BadMissingDevice:     "missing key field device",
	simulate.BadEmptyArray:        "empty array",
	simulate.BadHuge:              "payload too large",
}

func reasonMatches(kind simulate.BadKind, reason string) bool {
	for _, p := range strings.Split(deadReason[kind], " | ") {
		if strings.HasPrefix(reason, p) {
			return true
		}
	}
	return false
}

// TestBadInputEndToEnd mixes every kind of malformed message simulate
// makes into a stream (as JSON objects and as arrays of readings): each is
// counted in GET /api/v1/overview and dead-lettered with its reason and
// original payload, unknown extra fields are accepted, and every good
// reading around them is counted exactly in the windows.
//
// Site and device come from the payload here (no topic_fields): with
// topic_fields the missing device is taken from the empty topic level, see
// TestEmptyTopicLevelIsMissingKey.
func TestBadInputEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		name  string
		batch int
		seed  int64
	}{
		{"objects", 1, 11},
		{"arrays of 3", 3, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := simulate.Options{
				Devices: 10, Sites: 3, Count: 3000, Interval: 20 * time.Millisecond, Start: streamStart,
				Disorder: 300 * time.Millisecond, Seed: tc.seed, Batch: tc.batch, Bad: 0.04, EndMarker: true,
			}
			s := newStream(t, o)
			for _, k := range simulate.BadKinds {
				if s.bad[k] == 0 {
					t.Fatalf("seed %d gives no %s message (%v): pick another seed", tc.seed, k, s.bad)
				}
			}
			// The dead letters the stream must produce, by reason kind and
			// payload (a huge payload is cut to its first 64 KiB).
			want := map[string]int{}
			wantTotal := 0
			for _, m := range s.body() {
				n := 0
				switch m.Bad {
				case simulate.BadNone, simulate.BadExtraFields:
					continue
				case simulate.BadTemperatureString, simulate.BadMissingDevice:
					n = m.Generated // one per reading
				default:
					n = 1
				}
				p := string(m.Payload)
				if len(p) > 64<<10 {
					p = p[:64<<10]
				}
				want[string(m.Bad)+" "+m.Topic+" "+p] += n
				wantTotal += n
			}

			b := startBroker(t)
			f := newFeeder(t, b, "e2e-feeder")
			e := newEddy(t, b, config{
				Parallelism: 2, Stages: windowStages("{type: tumbling, size: 10s}"), ResultsFrom: "per_device",
				Sources: []source{{Name: "readings", OOO: "2s", NoTopicFields: true}},
			})
			e.StartReady()
			e.Probe(f)
			f.MustSend(t, s.msgs)

			wantWin := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(s.endTS, 2*time.Second))
			got := e.waitResults("per_device", []string{"site", "device"}, wantWin)
			compareResults(t, "results", got, wantWin, windowAggs)

			ov := e.Overview()
			if ov.DeadLetters != int64(wantTotal) || ov.LateEvents != 0 {
				t.Errorf("overview: dead_letters %d, late_events %d; want %d, 0 (bad messages: %v)", ov.DeadLetters, ov.LateEvents, wantTotal, s.bad)
			}
			// Match every dead letter with a bad message of its kind.
			dead := e.readDeadLetters()
			var unmatched []string
			for _, d := range dead {
				matched := false
				for _, k := range simulate.BadKinds {
					key := string(k) + " " + d.Topic + " " + d.Payload
					if want[key] > 0 && reasonMatches(k, d.Reason) {
						want[key]--
						matched = true
						break
					}
				}
				if !matched {
					unmatched = append(unmatched, fmt.Sprintf("reason %q topic %s payload %.120q", d.Reason, d.Topic, d.Payload))
				}
				if d.Source != "readings" {
					t.Errorf("dead letter from source %q, want readings", d.Source)
				}
			}
			var missing []string
			for k, n := range want {
				if n > 0 {
					missing = append(missing, fmt.Sprintf("%d× %.160s", n, k))
				}
			}
			sort.Strings(missing)
			if len(unmatched) > 0 || len(missing) > 0 {
				t.Errorf("%d dead letters, want %d (bad messages: %v)\nunexpected (%d):\n%s\nnot dead-lettered (%d):\n%s",
					len(dead), wantTotal, s.bad, len(unmatched), strings.Join(first(unmatched, 10), "\n"), len(missing), strings.Join(first(missing, 10), "\n"))
			}
			t.Logf("%d messages (%v bad), %d good readings, %d dead letters, %d windows", len(s.msgs), s.bad, len(s.good), len(dead), len(wantWin))
		})
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// TestEmptyTopicLevelIsMissingKey: with the demo's topic_fields [null,
// site, device, null], a reading without a "device" field published to
// sensors/site-1//telemetry (simulate's BadMissingDevice: "the device cannot
// be recovered from either") is dead-lettered as "missing key field
// device". Regression test: eddy used to take the empty topic level as the
// device "" (pipeline/parse.go, parser.reading) and emit windows for the
// key "site-1|".
func TestEmptyTopicLevelIsMissingKey(t *testing.T) {
	o := simulate.Options{
		Devices: 4, Sites: 2, Count: 400, Interval: 50 * time.Millisecond, Start: streamStart,
		Seed: 21, Bad: 0.1, EndMarker: true,
	}
	s := newStream(t, o)
	var msgs []simulate.Message
	var good []simulate.Reading
	wantDead := 0
	for _, m := range s.body() {
		// Only good messages and those without a device.
		switch m.Bad {
		case simulate.BadNone:
		case simulate.BadMissingDevice:
			wantDead += m.Generated
		default:
			continue
		}
		msgs = append(msgs, m)
		good = append(good, m.Readings...)
	}
	if wantDead == 0 {
		t.Fatal("no message without a device: pick another seed")
	}
	b := startBroker(t)
	f := newFeeder(t, b, "e2e-feeder")
	e := newEddy(t, b, config{
		Parallelism: 1, Stages: windowStages("{type: tumbling, size: 10s}"), ResultsFrom: "per_device",
		Sources: []source{{Name: "readings", OOO: "2s"}},
	})
	e.StartReady()
	e.Probe(f)
	f.MustSend(t, msgs)
	f.MustSend(t, s.end())

	want := oracle.Compute(toOracle(good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(s.endTS, 2*time.Second))
	got := e.waitResults("per_device", []string{"site", "device"}, want)
	compareResults(t, "results", got, want, windowAggs)
	missingKey := 0
	for _, d := range e.readDeadLetters() {
		if strings.HasPrefix(d.Reason, "missing key field device") {
			missingKey++
		}
	}
	if ov := e.Overview(); ov.DeadLetters != int64(wantDead) || missingKey != wantDead {
		t.Errorf("readings without a device (empty topic level, no payload field): %d dead-lettered as missing key field device, overview dead_letters %d; want %d",
			missingKey, ov.DeadLetters, wantDead)
	}
}
