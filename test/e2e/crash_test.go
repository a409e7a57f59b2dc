package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/daemon"
	"github.com/eddy-stream/eddy/internal/failpoint"
	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/eddytest"
	"github.com/eddy-stream/eddy/test/oracle"
)

// crashStep is one run of eddy in the crash loop.
type crashStep struct {
	failpoint string // EDDY_FAILPOINTS value; "" = killed by the test
	whileDown bool   // the chunk is published before eddy starts
}

// crashVariant is one configuration the crash loop runs.
type crashVariant struct {
	name     string
	opts     simulate.Options
	window   string
	ow       oracle.Window
	ooo      time.Duration
	cfg      config // Stages, ResultsFrom and Sources are filled in
	chunks   int
	forced   []string // failpoints, each forced on one run
	mqtt     bool     // results over MQTT too (exactly_once only)
	endKills int      // kills after the end marker
	stages   string   // more stages after the window stage
	env      []string // environment of every run
	// persisted: some checkpoint must have stored in-flight data
	// (unaligned, back-pressured).
	persisted bool
	// spoolFull: some run must have logged the results sink's spool full
	// (a sink slower than its input, EDDY_TEST_SINK_COST).
	spoolFull bool
}

// TestExactlyOnceUnderCrashes publishes a stream in chunks while eddy is
// killed with SIGKILL again and again: at random moments (also during
// recovery, and with chunks published while it is down, which the broker's
// persistent session delivers after the restart) and at each failpoint of
// the durable protocol (checkpoint-sync, after-metadata, mid-publish,
// before-ingest-ack), then while the end marker's windows fire. After a
// final run, every expected window is in the results file (and on the MQTT
// results topic) with the right values, nothing is wrong or extra, and a
// result id delivered more than once always has identical content.
//
// The main variant is the demo's shape (tumbling windows, native
// incremental checkpoints, a file and an MQTT sink). Two shorter ones kill
// at random moments only: session windows with heap timers and full
// snappy snapshots, whose merged windows and timers must survive restores;
// and sliding windows in at_least_once mode, where results may repeat
// after a crash but never change or go missing.
//
// E2E_CRASH_SEED=n replays the loop with another seed (for soak runs).
func TestExactlyOnceUnderCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("long crash loop; runs without -short")
	}
	seed := uint64(61)
	if v := os.Getenv("E2E_CRASH_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("E2E_CRASH_SEED: %v", err)
		}
		seed = n
	}
	variants := []crashVariant{{
		name: "tumbling exactly_once",
		opts: simulate.Options{
			Devices: 16, Sites: 4, Count: 36000, Interval: 10 * time.Millisecond, Start: streamStart,
			Disorder: time.Second, Seed: int64(seed), EndMarker: true,
		},
		window: "{type: tumbling, size: 5s}", ow: oracle.Window{Type: "tumbling", Size: 5000}, ooo: 2 * time.Second,
		cfg: config{
			Parallelism: 3, MaxParallelism: 32, MQTTTopic: "results/{site}/{device}",
			Interval: "250ms", MinPause: "50ms", NumRetained: 2, SegmentSize: "256KiB",
		},
		chunks: 26, mqtt: true, endKills: 2,
		forced: []string{
			"checkpoint-sync=2", "after-metadata=2", "mid-publish=1", "before-ingest-ack=3",
			"checkpoint-sync=7", "after-metadata=5", "mid-publish=2", "before-ingest-ack=12",
		},
	}, {
		name: "session heap timers full snapshots",
		opts: simulate.Options{
			Devices: 6, Sites: 2, Count: 8000, Interval: 150 * time.Millisecond, Start: streamStart,
			Disorder: 800 * time.Millisecond, Seed: int64(seed) + 1, EndMarker: true,
		},
		window: "{type: session, gap: 1200ms}", ow: oracle.Window{Type: "session", Gap: 1200}, ooo: 3 * time.Second,
		cfg: config{
			Parallelism: 2, Interval: "200ms", MinPause: "50ms", Timers: "heap",
			Checkpointing: "  incremental: false\n  compression: snappy\n",
		},
		chunks: 10, endKills: 1,
	}, {
		name: "sliding at_least_once",
		opts: simulate.Options{
			Devices: 10, Sites: 3, Count: 12000, Interval: 10 * time.Millisecond, Start: streamStart,
			Disorder: 500 * time.Millisecond, Seed: int64(seed) + 2, EndMarker: true,
		},
		window: "{type: sliding, size: 10s, slide: 5s}", ow: oracle.Window{Type: "sliding", Size: 10000, Slide: 5000}, ooo: 2 * time.Second,
		cfg:    config{Parallelism: 2, Interval: "300ms", MinPause: "50ms", Mode: "at_least_once"},
		chunks: 10, endKills: 1,
	}, {
		// Unaligned checkpoints under sustained back-pressure: both keyed
		// stages are slower than the input (EDDY_TEST_BATCH_COST), so
		// barriers overtake full channels and checkpoints carry in-flight
		// data, into the first stage and from it into the second.
		name: "tumbling unaligned two keyed stages back-pressured",
		opts: simulate.Options{
			Devices: 16, Sites: 4, Count: 16000, Interval: 10 * time.Millisecond, Start: streamStart,
			Disorder: time.Second, Seed: int64(seed) + 3, EndMarker: true,
		},
		window: "{type: tumbling, size: 5s}", ow: oracle.Window{Type: "tumbling", Size: 5000}, ooo: 2 * time.Second,
		cfg: config{
			Parallelism: 2, MaxParallelism: 32, Interval: "200ms", MinPause: "50ms",
			Checkpointing: "  unaligned: true\n",
			ExtraSinks:    "  - name: sites\n    from: per_site\n    file:\n      path: site-results.jsonl\n      max_size: 0\n",
		},
		stages: "    - name: per_site\n      from: per_device\n      key_by: [site]\n      window: {type: tumbling, size: 15s}\n      aggregate:\n        total: \"sum(count)\"\n",
		env:    []string{"EDDY_TEST_BATCH_COST=10ms"},
		chunks: 10, endKills: 1, persisted: true,
		forced: []string{"checkpoint-sync=3", "after-metadata=2"},
	}, {
		// The same two keyed stages, unaligned, with a sink slower than
		// its input instead (EDDY_TEST_SINK_COST per output, a 16 KiB
		// spool). In exactly-once mode sinks write from their release
		// loop, so the back-pressure goes through the spool: it fills, the
		// sources stop reading and intake pauses (the broker holds the
		// input) until the sink drains it — across kills, with staged and
		// spooled output of several checkpoints waiting.
		name: "tumbling unaligned two keyed stages slow sink",
		opts: simulate.Options{
			Devices: 16, Sites: 4, Count: 16000, Interval: 10 * time.Millisecond, Start: streamStart,
			Disorder: time.Second, Seed: int64(seed) + 4, EndMarker: true,
		},
		window: "{type: tumbling, size: 5s}", ow: oracle.Window{Type: "tumbling", Size: 5000}, ooo: 2 * time.Second,
		cfg: config{
			Parallelism: 2, MaxParallelism: 32, Interval: "200ms", MinPause: "50ms",
			Checkpointing: "  unaligned: true\n", ResultsSpool: "16KiB",
			ExtraSinks: "  - name: sites\n    from: per_site\n    file:\n      path: site-results.jsonl\n      max_size: 0\n",
		},
		stages: "    - name: per_site\n      from: per_device\n      key_by: [site]\n      window: {type: tumbling, size: 15s}\n      aggregate:\n        total: \"sum(count)\"\n",
		env:    []string{"EDDY_TEST_SINK_COST=40ms"},
		chunks: 10, endKills: 1, spoolFull: true,
		forced: []string{"checkpoint-sync=3", "mid-publish=2"},
	}}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) { runCrashLoop(t, v, seed) })
	}
}

func runCrashLoop(t *testing.T, v crashVariant, seed uint64) {
	s := newStream(t, v.opts)
	b := startBroker(t)
	f := newFeeder(t, b, "e2e-feeder")
	c := v.cfg
	c.Stages, c.ResultsFrom = windowStages(v.window)+v.stages, "per_device"
	c.Sources = []source{{Name: "readings", OOO: v.ooo.String()}}
	e := newEddy(t, b, c)
	var sub *subscriber
	if v.mqtt {
		sub = subscribe(t, b, f, "results/#")
	}

	// The plan: each forced failpoint on one run, every third from the
	// third on; the other runs killed at random moments; a fifth of the
	// chunks go out while eddy is down.
	rng := rand.New(rand.NewPCG(seed, 1))
	steps := make([]crashStep, v.chunks)
	for i, fp := range v.forced {
		steps[2+3*i].failpoint = fp
	}
	for i := range steps {
		// Not the first chunk: eddy's persistent session does not exist
		// before its first connection, so the broker would drop it.
		steps[i].whileDown = i > 0 && steps[i].failpoint == "" && rng.IntN(5) == 0
	}

	body := s.body()
	fired := map[string]int{}
	kills := 0
	var persisted int64 // the most in-flight bytes a checkpoint stored
	var logs []string   // every run's log
	for i, st := range steps {
		chunk := body[i*len(body)/v.chunks : (i+1)*len(body)/v.chunks]
		if st.whileDown {
			f.MustSend(t, chunk)
		}
		env := v.env
		if st.failpoint != "" {
			env = append(env, "EDDY_FAILPOINTS="+st.failpoint)
		}
		p := e.Start(env...)
		logs = append(logs, p.LogPath)
		if i == 0 {
			p.WaitReady()
			e.Probe(f)
		}
		var sent <-chan error
		if st.whileDown {
			done := make(chan error, 1)
			done <- nil
			sent = done
		} else {
			// So that kills land while eddy reads it; a failpoint counted
			// in ingest-log fsync groups gets small slices, each at least
			// one group of its own unless eddy stalls for many pauses.
			by := 100
			if strings.HasPrefix(st.failpoint, failpoint.BeforeIngestAck) {
				by = 20
			}
			sent = f.TrickleBy(chunk, by)
		}
		how := ""
		switch {
		case st.failpoint != "":
			if !e.WaitExit(20 * time.Second) {
				// Say what eddy is doing, then keep waiting.
				var o daemon.Overview
				err := e.GetJSON("/api/v1/overview", &o)
				t.Logf("run %d: failpoint %s has not fired after 20 s; ingest %+v (%v)", i+1, st.failpoint, o.Ingest, err)
			}
			if !e.WaitExit(resultsTimeout) {
				t.Errorf("run %d: failpoint %s did not fire within %v", i+1, st.failpoint, resultsTimeout)
				e.DumpGoroutines()
				e.Kill()
				how = "failpoint did not fire, killed"
				break
			}
			if !p.Signaled(syscall.SIGKILL) {
				t.Fatalf("run %d with %s ended by itself, not by SIGKILL: %v\n%s", i+1, st.failpoint, p.ExitErr(), eddytest.Tail(p.LogPath, 40))
			}
			fired[strings.SplitN(st.failpoint, "=", 2)[0]]++
			how = "failpoint " + st.failpoint
		case rng.IntN(6) == 0:
			// During start-up and recovery.
			d := time.Duration(rng.IntN(500)) * time.Millisecond
			time.Sleep(d)
			how = fmt.Sprintf("killed %v after exec", d)
		default:
			p.WaitReady()
			d := time.Duration(rng.IntN(1200)) * time.Millisecond
			time.Sleep(d)
			how = fmt.Sprintf("killed %v after ready", d)
		}
		if p.Exited() && st.failpoint == "" {
			t.Fatalf("run %d ended by itself: %v\n%s", i+1, p.ExitErr(), eddytest.Tail(p.LogPath, 40))
		}
		persisted = max(persisted, e.persistedData())
		e.Kill()
		kills++
		if err := <-sent; err != nil {
			t.Fatalf("publish chunk %d: %v", i+1, err)
		}
		t.Logf("run %d: chunk %d (%d messages%s), %s", i+1, i+1, len(chunk), map[bool]string{true: ", published while down"}[st.whileDown], how)
	}
	for _, fp := range v.forced {
		name := strings.SplitN(fp, "=", 2)[0]
		if fired[name] == 0 {
			t.Errorf("failpoint %s never fired", name)
		}
	}

	// The end marker closes every window at once: kill eddy while it fires
	// and publishes them, then let the last run finish.
	f.MustSend(t, s.end())
	for i := range v.endKills {
		p := e.StartReady(v.env...)
		logs = append(logs, p.LogPath)
		d := time.Duration(rng.IntN(400)) * time.Millisecond
		time.Sleep(d)
		if p.Exited() {
			t.Fatalf("run ended by itself: %v\n%s", p.ExitErr(), eddytest.Tail(p.LogPath, 40))
		}
		e.Kill()
		kills++
		t.Logf("end marker run %d: killed %v after ready", i+1, d)
	}
	logs = append(logs, e.StartReady(v.env...).LogPath)
	want := oracle.Compute(toOracle(s.good), v.ow, windowAggs, closeAt(s.endTS, v.ooo))
	got := e.waitResults("per_device", []string{"site", "device"}, want)
	compareResults(t, "results file", got, want, windowAggs)
	summary := fmt.Sprintf("results file: %d lines, %d duplicates", got.Lines, got.Dups)
	if v.stages != "" {
		summary += "; " + checkSiteStage(t, e, want, closeAt(s.endTS, v.ooo))
	}
	if v.persisted {
		if persisted = max(persisted, e.persistedData()); persisted == 0 {
			t.Errorf("no checkpoint stored in-flight data: not back-pressured, or unaligned checkpoints not taken")
		}
		summary += fmt.Sprintf("; at most %d in-flight bytes persisted by a checkpoint", persisted)
	}

	if v.spoolFull {
		n := 0
		for _, l := range logs {
			n += strings.Count(eddytest.Tail(l, 1<<20), "sink spool full")
		}
		if n == 0 {
			t.Errorf("no run logged a full sink spool: the sink was not slower than its input")
		}
		summary += fmt.Sprintf("; the results spool was full %d times", n)
	}

	if sub != nil {
		// MQTT delivery is at least once: the same ids, identical contents.
		viaMQTT := sub.WaitResults(e.appliance(), "per_device", []string{"site", "device"}, want)
		compareResults(t, "results over MQTT", viaMQTT, want, windowAggs)
		eddytest.CrossCheck(t, got, viaMQTT)
		summary += fmt.Sprintf("; MQTT: %d messages, %d duplicates", viaMQTT.Lines, viaMQTT.Dups)
	}
	// No reading was late or bad, whatever the crashes did to the
	// watermarks.
	if dead := e.readDeadLetters(); len(dead) > 0 {
		t.Errorf("%d dead letters, want none; the first: %+v", len(dead), dead[0])
	}
	t.Logf("%d kills (failpoints fired: %v); %d readings, %d windows; %s", kills, fired, len(s.good), len(want), summary)
}

// persistedData is the most in-flight data (bytes) a checkpoint of the
// running eddy persisted; 0 when it does not answer.
func (e *eddy) persistedData() int64 {
	var o pipeline.CheckpointsOverview
	if err := e.GetJSON("/api/v1/checkpoints", &o); err != nil {
		return 0
	}
	return o.Summary.PersistedData.Max
}

// checkSiteStage checks the second keyed stage of the unaligned variant
// (per_site: 15 s tumbling sums of per_device counts, in site-results.jsonl)
// against the oracle over the oracle's per_device results.
func checkSiteStage(t *testing.T, e *eddy, first map[string]oracle.Result, until int64) string {
	t.Helper()
	var in2 []oracle.Reading
	for _, r := range first {
		site, _, _ := strings.Cut(r.Key, "|")
		in2 = append(in2, oracle.Reading{Key: site, TS: r.End - 1, Vals: r.Values})
	}
	aggs := []oracle.Agg{{Name: "total", Fn: "sum", Field: "count"}}
	want := oracle.Compute(in2, oracle.Window{Type: "tumbling", Size: 15000}, aggs, until)
	var got *resultSet
	eddytest.Poll(resultsTimeout, 50*time.Millisecond, func() bool {
		got = e.readResultsFrom("site-results.jsonl", "per_site", []string{"site"})
		return got.Missing(want) == 0
	})
	compareResults(t, "per_site", got, want, aggs)
	return fmt.Sprintf("per_site: %d windows, %d lines", len(want), got.Lines)
}
