package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/oracle"
)

var streamStart = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// lateReading is a good reading lateBy behind reading r (same key): far
// behind the watermark it can only be dropped as late; a little behind it,
// it updates a window within its allowed lateness.
func lateReading(r simulate.Reading, lateBy time.Duration) (simulate.Message, simulate.Reading) {
	lr := simulate.Reading{Device: r.Device, Site: r.Site, TS: r.TS - lateBy.Milliseconds(), Temperature: 21.5, Humidity: 45}
	p := fmt.Sprintf(`{"device":%q,"site":%q,"ts":%d,"temperature":21.5,"humidity":45}`, lr.Device, lr.Site, lr.TS)
	return simulate.Message{Topic: "sensors/" + r.Site + "/" + r.Device + "/telemetry", Payload: []byte(p)}, lr
}

// injectLate puts a reading lateBy behind the current one before message
// 3000+phase and every 300th after it, n in all. It returns the new stream
// and the injected readings.
func injectLate(msgs []simulate.Message, n, phase int, lateBy time.Duration) ([]simulate.Message, []simulate.Reading) {
	var out []simulate.Message
	var late []simulate.Reading
	for i, m := range msgs {
		if i >= 3000 && i%300 == phase && len(late) < n && len(m.Readings) > 0 {
			lm, lr := lateReading(m.Readings[0], lateBy)
			out = append(out, lm)
			late = append(late, lr)
		}
		out = append(out, m)
	}
	return out, late
}

// TestWindowsExact runs the real binary over generated streams for every
// window type and checks each window of each key against the oracle:
// counts exact, floating-point values up to summation order, no window
// missing, none extra, every duplicate id identical.
func TestWindowsExact(t *testing.T) {
	base := simulate.Options{Devices: 10, Sites: 3, Count: 6000, Interval: 20 * time.Millisecond, Start: streamStart, EndMarker: true}
	with := func(f func(o *simulate.Options)) simulate.Options {
		o := base
		f(&o)
		return o
	}
	cases := []struct {
		name   string
		par    int
		maxPar int // 0: the default, 128
		window string
		ow     oracle.Window
		opts   simulate.Options
		ooo    time.Duration
		late   int // far-late readings (10 min behind) injected after 3000 messages
		// lateOK readings 30 s behind are injected after the far-late ones:
		// within the allowed lateness (60 s), they fire their windows again
		// (30 s is more than the watermark can lag: a read batch of 1024
		// messages spans 20 s of event time).
		lateOK int
		mqtt   string // MQTT results topic template; "" for the file sink only
	}{
		{name: "tumbling p1", par: 1, maxPar: 32, window: "{type: tumbling, size: 10s}", ow: oracle.Window{Type: "tumbling", Size: 10000},
			opts: with(func(o *simulate.Options) { o.Seed = 1; o.Disorder = 500 * time.Millisecond }), ooo: 2 * time.Second},
		{name: "tumbling p4 over MQTT", par: 4, maxPar: 16, window: "{type: tumbling, size: 10s}", ow: oracle.Window{Type: "tumbling", Size: 10000},
			opts: with(func(o *simulate.Options) { o.Seed = 2; o.Disorder = 500 * time.Millisecond }), ooo: 2 * time.Second,
			mqtt: "results/{site}/{device}"},
		{name: "sliding p2", par: 2, maxPar: 64, window: "{type: sliding, size: 10s, slide: 2s}", ow: oracle.Window{Type: "sliding", Size: 10000, Slide: 2000},
			opts: with(func(o *simulate.Options) { o.Seed = 3; o.Count = 4000; o.Disorder = 500 * time.Millisecond }), ooo: 2 * time.Second},
		{name: "session p3", par: 3, maxPar: 64, window: "{type: session, gap: 1200ms}", ow: oracle.Window{Type: "session", Gap: 1200},
			opts: with(func(o *simulate.Options) {
				o.Seed = 4
				o.Devices, o.Count, o.Interval, o.Disorder = 6, 3000, 150*time.Millisecond, 800*time.Millisecond
			}), ooo: 3 * time.Second},
		{name: "out of order", par: 2, maxPar: 64, window: "{type: tumbling, size: 5s}", ow: oracle.Window{Type: "tumbling", Size: 5000},
			opts: with(func(o *simulate.Options) { o.Seed = 5; o.Disorder = 2 * time.Second }), ooo: 5 * time.Second},
		{name: "late data", par: 2, maxPar: 64, window: "{type: tumbling, size: 5s}", ow: oracle.Window{Type: "tumbling", Size: 5000},
			opts: with(func(o *simulate.Options) { o.Seed = 6; o.Disorder = time.Second }), ooo: 2 * time.Second, late: 5},
		{name: "allowed lateness", par: 2, maxPar: 64, window: "{type: tumbling, size: 5s, allowed_lateness: 60s}", ow: oracle.Window{Type: "tumbling", Size: 5000},
			opts: with(func(o *simulate.Options) { o.Seed = 8; o.Disorder = 200 * time.Millisecond }), ooo: time.Second, late: 3, lateOK: 4},
		{name: "default max_parallelism", par: 3, window: "{type: tumbling, size: 10s}", ow: oracle.Window{Type: "tumbling", Size: 10000},
			opts: with(func(o *simulate.Options) { o.Seed = 7; o.Disorder = 300 * time.Millisecond }), ooo: 2 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t)
			f := newFeeder(t, b, "e2e-feeder")
			e := newEddy(t, b, config{
				Parallelism: tc.par, MaxParallelism: tc.maxPar, Stages: windowStages(tc.window),
				ResultsFrom: "per_device", MQTTTopic: tc.mqtt,
				Sources: []source{{Name: "readings", OOO: tc.ooo.String()}},
			})
			s := newStream(t, tc.opts)
			msgs := s.body()
			good := s.good
			if tc.late > 0 {
				msgs, _ = injectLate(msgs, tc.late, 0, 10*time.Minute)
			}
			if tc.lateOK > 0 {
				var ok []simulate.Reading
				msgs, ok = injectLate(msgs, tc.lateOK, 150, 30*time.Second)
				good = append(append([]simulate.Reading(nil), good...), ok...)
			}
			var sub *subscriber
			if tc.mqtt != "" {
				sub = subscribe(t, b, f, "results/#")
			}
			e.StartReady()
			e.Probe(f)
			f.MustSend(t, msgs)
			f.MustSend(t, s.end())

			want := oracle.Compute(toOracle(good), tc.ow, windowAggs, closeAt(s.endTS, tc.ooo))
			got := e.waitResults("per_device", []string{"site", "device"}, want)
			compareResults(t, "results file", got, want, windowAggs)
			if got.Dups != 0 {
				t.Errorf("%d duplicate results without any crash", got.Dups)
			}
			refired := 0
			for _, r := range got.Final {
				if r.Firing > 1 {
					refired++
				}
			}
			if tc.lateOK > 0 && refired == 0 {
				t.Errorf("no window fired again for a reading within its allowed lateness")
			}
			if tc.lateOK == 0 && refired > 0 {
				t.Errorf("%d windows fired more than once without allowed lateness", refired)
			}

			o := e.Overview()
			dead := e.readDeadLetters()
			if o.DeadLetters != int64(tc.late) || o.LateEvents != int64(tc.late) || len(dead) != tc.late {
				t.Errorf("dead letters: overview %d (late %d), file %d; want %d late readings", o.DeadLetters, o.LateEvents, len(dead), tc.late)
			}
			for _, d := range dead {
				if !strings.HasPrefix(d.Reason, "late event") || d.Stage != "per_device" || d.Source != "readings" {
					t.Errorf("dead letter %+v: want a late event of stage per_device from source readings", d)
				}
			}

			if sub != nil {
				// Everything in the file went out over MQTT too, on the
				// topic of its key.
				var lines []string
				for _, m := range sub.Messages() {
					r, err := decodeResult(m.Payload, []string{"site", "device"})
					if err == nil {
						if wt := "results/" + strings.ReplaceAll(r.Key, "|", "/"); m.Topic != wt {
							t.Errorf("result %s on topic %s, want %s", r.ID, m.Topic, wt)
						}
					}
					lines = append(lines, m.Payload)
				}
				viaMQTT := collectResults(lines, e.appliance(), "per_device", []string{"site", "device"})
				compareResults(t, "results over MQTT", viaMQTT, want, windowAggs)
				if viaMQTT.Lines != got.Lines {
					t.Errorf("%d results over MQTT, %d in the file", viaMQTT.Lines, got.Lines)
				}
			}

			// The checkpoints record the key-group layout.
			wantMax := tc.maxPar
			if wantMax == 0 {
				wantMax = 128
			}
			checkKeyGroups(t, e, tc.par, wantMax)
			t.Logf("%d readings, %d windows (%d fired again), %d result lines", len(good), len(want), refired, got.Lines)
		})
	}
}

// checkKeyGroups reads the newest _metadata and checks parallelism,
// max_parallelism and that the keyed subtasks' key-group ranges tile
// [0, maxPar).
func checkKeyGroups(t *testing.T, e *eddy, par, maxPar int) {
	t.Helper()
	ids := completedCheckpoints(e.Path("checkpoints"))
	if len(ids) == 0 {
		t.Fatal("no completed checkpoint on disk")
	}
	md := readMetadata(t, filepath.Join(e.Path("checkpoints"), fmt.Sprintf("chk-%d", ids[len(ids)-1]), "_metadata"))
	if md.Parallelism != par || md.MaxParallelism != maxPar {
		t.Errorf("_metadata: parallelism %d, max_parallelism %d; want %d, %d", md.Parallelism, md.MaxParallelism, par, maxPar)
	}
	covered := make([]int, maxPar)
	n := 0
	for name, ts := range md.Tasks {
		if ts.Kind != "native" {
			continue
		}
		n++
		for kg := ts.KeyGroupStart; kg <= ts.KeyGroupEnd && kg < maxPar; kg++ {
			covered[kg]++
		}
		if !strings.HasPrefix(name, "per_device-") {
			t.Errorf("keyed task %s", name)
		}
	}
	if n != par {
		t.Errorf("%d keyed tasks in the checkpoint, want %d", n, par)
	}
	for kg, c := range covered {
		if c != 1 {
			t.Errorf("key group %d is owned by %d subtasks, want 1", kg, c)
			break
		}
	}
}

type metadata struct {
	ID             int64  `json:"id"`
	Mode           string `json:"mode"`
	Parallelism    int    `json:"parallelism"`
	MaxParallelism int    `json:"max_parallelism"`
	Sources        map[string]struct {
		Offset uint64 `json:"offset"`
	} `json:"sources"`
	Tasks map[string]struct {
		Stage         string `json:"stage"`
		Kind          string `json:"kind"`
		KeyGroupStart int    `json:"key_group_start"`
		KeyGroupEnd   int    `json:"key_group_end"`
		Files         []struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
			SST  bool   `json:"sst"`
		} `json:"files"`
	} `json:"tasks"`
}

// readMetadata decodes the JSON body of a _metadata file (the CRC trailer
// after it is ignored).
func readMetadata(t testing.TB, path string) metadata {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var md metadata
	if err := json.NewDecoder(f).Decode(&md); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return md
}
