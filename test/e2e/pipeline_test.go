package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/oracle"
)

// renameDevices gives a stream's devices another prefix (dev-0001 →
// prefix-0001) in topics, payloads and readings, so that two streams have
// distinct keys.
func renameDevices(s *stream, prefix string) {
	for i := range s.msgs {
		m := &s.msgs[i]
		m.Topic = strings.ReplaceAll(m.Topic, "/dev-", "/"+prefix+"-")
		m.Payload = []byte(strings.ReplaceAll(string(m.Payload), `"dev-`, `"`+prefix+"-"))
		rs := make([]simulate.Reading, len(m.Readings))
		for j, r := range m.Readings {
			r.Device = strings.Replace(r.Device, "dev-", prefix+"-", 1)
			rs[j] = r
		}
		m.Readings = rs
	}
	for i := range s.good {
		s.good[i].Device = strings.Replace(s.good[i].Device, "dev-", prefix+"-", 1)
	}
}

// TestTwoSourcesAlignment feeds one keyed stage from two sources (two
// topics) at very different rates, so that every keyed subtask aligns
// barriers over two inputs. In exactly_once and in at_least_once mode,
// checkpoints complete, their details carry Flink's per-subtask figures
// (start delay, alignment, sync/async, state sizes), and the results are
// exact.
func TestTwoSourcesAlignment(t *testing.T) {
	for _, mode := range []string{"exactly_once", "at_least_once"} {
		t.Run(mode, func(t *testing.T) {
			fast := newStream(t, simulate.Options{
				Devices: 10, Sites: 3, Count: 20000, Interval: 10 * time.Millisecond, Start: streamStart,
				Disorder: 500 * time.Millisecond, Seed: 41, EndMarker: true,
			})
			slow := newStream(t, simulate.Options{
				Devices: 2, Sites: 2, Count: 400, Interval: 500 * time.Millisecond, Start: streamStart,
				Disorder: 500 * time.Millisecond, Seed: 42, EndMarker: true,
			})
			renameDevices(slow, "ln2")
			slowMsgs := withPrefix(slow.msgs, "line2")

			b := startBroker(t)
			fFast := newFeeder(t, b, "e2e-feeder")
			fSlow := newFeeder(t, b, "e2e-feeder-2")
			const ooo = 2 * time.Second
			e := newEddy(t, b, config{
				Parallelism: 2, Stages: windowStages("{type: tumbling, size: 10s}"), ResultsFrom: "per_device",
				Sources: []source{
					{Name: "readings", OOO: ooo.String()},
					{Name: "line2", Topic: "line2/+/+/telemetry", OOO: ooo.String()},
				},
				Interval: "200ms", MinPause: "50ms", Mode: mode,
			})
			e.StartReady()
			e.Probe(fFast, "sensors", "line2")

			var wg sync.WaitGroup
			errs := make(chan error, 2)
			wg.Go(func() { errs <- fFast.Send(fast.msgs) })
			wg.Go(func() {
				// The slow line: a message every 5 ms, about 2 s in all.
				for _, m := range slowMsgs {
					if err := fSlow.Send([]simulate.Message{m}); err != nil {
						errs <- err
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
				errs <- nil
			})
			wg.Wait()
			for range 2 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}

			good := append(append([]simulate.Reading(nil), fast.good...), slow.good...)
			want := oracle.Compute(toOracle(good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs,
				closeAt(min(fast.endTS, slow.endTS), ooo))
			got := e.waitResults("per_device", []string{"site", "device"}, want)
			compareResults(t, "results", got, want, windowAggs)
			if got.Dups != 0 {
				t.Errorf("%d duplicate results without any crash", got.Dups)
			}

			o := e.Checkpoints()
			if o.Counts.Completed < 3 || o.Latest.Completed == nil {
				t.Fatalf("checkpoints: %+v, want at least 3 completed", o.Counts)
			}
			if c := o.Counts; c.Total != c.Completed+c.Failed+c.InProgress {
				t.Errorf("counts do not add up: %+v", c)
			}
			path := fmt.Sprintf("/api/v1/checkpoints/details/%d", o.Latest.Completed.ID)
			var d pipeline.CheckpointStats
			e.MustGet(path, &d)
			var raw map[string]any
			e.MustGet(path, &raw)
			checkDetails(t, &d, raw, map[string]int{"per_device": 2, "source-readings": 1, "source-line2": 1})
			t.Logf("%d + %d readings, %d windows; checkpoints %+v, latest %d: per_device max alignment %d ms",
				len(fast.good), len(slow.good), len(want), o.Counts, d.ID, d.Tasks["per_device"].MaxAlignmentDuration)
		})
	}
}

// checkDetails checks that a completed checkpoint's details list every
// vertex with its subtasks, each with Flink's figures.
// raw is the same details as JSON: every figure must be on the wire.
func checkDetails(t *testing.T, d *pipeline.CheckpointStats, raw map[string]any, vertices map[string]int) {
	t.Helper()
	if d.Status != "COMPLETED" || d.NumAcknowledgedSubtasks != d.NumSubtasks {
		t.Errorf("checkpoint %d: status %s, %d of %d subtasks acknowledged", d.ID, d.Status, d.NumAcknowledgedSubtasks, d.NumSubtasks)
	}
	for v, n := range vertices {
		ts := d.Tasks[v]
		if ts == nil {
			t.Errorf("checkpoint %d: no task %s in details (tasks: %v)", d.ID, v, keysOf(d.Tasks))
			continue
		}
		if len(ts.Subtasks) != n || ts.NumSubtasks != n {
			t.Errorf("checkpoint %d, %s: %d subtasks (num_subtasks %d), want %d", d.ID, v, len(ts.Subtasks), ts.NumSubtasks, n)
		}
		for i, st := range ts.Subtasks {
			if missing := missingFigures(raw, v, i); len(missing) > 0 {
				t.Errorf("checkpoint %d, %s subtask %d: figures missing: %v", d.ID, v, st.Index, missing)
				continue
			}
			if st.StateSize <= 0 {
				t.Errorf("checkpoint %d, %s subtask %d: state_size %d", d.ID, v, st.Index, st.StateSize)
			}
			if st.Status != "completed" {
				t.Errorf("checkpoint %d, %s subtask %d: status %q", d.ID, v, st.Index, st.Status)
			}
		}
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestTwoKeyedStages chains two keyed window stages: [site, device] over
// 10 s windows, then [site] over 30 s windows of the first stage's results
// (whose event time is window_end − 1). Both stages' results are checked:
// the second against the oracle applied to the first stage's oracle
// results.
func TestTwoKeyedStages(t *testing.T) {
	s := newStream(t, simulate.Options{
		Devices: 12, Sites: 3, Count: 12000, Interval: 20 * time.Millisecond, Start: streamStart,
		Disorder: time.Second, Seed: 51, EndMarker: true,
	})
	const ooo = 2 * time.Second
	stages := `    - name: valid
      filter: "temperature > -50 && temperature < 150"
    - name: per_device
      key_by: [site, device]
      window: {type: tumbling, size: 10s}
      aggregate:
        count: "count()"
        avg_temp: "avg(temperature)"
    - name: per_site
      from: per_device
      key_by: [site]
      window: {type: tumbling, size: 30s}
      aggregate:
        windows: "count()"
        readings: "sum(count)"
        avg_avg_temp: "avg(avg_temp)"
        max_count: "max(count)"
        min_count: "min(count)"
`
	b := startBroker(t)
	f := newFeeder(t, b, "e2e-feeder")
	e := newEddy(t, b, config{
		Parallelism: 3, Stages: stages, ResultsFrom: "per_site", MQTTTopic: "results/{stage}/{site}",
		Sources:    []source{{Name: "readings", OOO: ooo.String()}},
		ExtraSinks: "  - name: devices\n    from: per_device\n    file:\n      path: device-results.jsonl\n      max_size: 0\n",
	})
	sub := subscribe(t, b, f, "results/#")
	e.StartReady()
	e.Probe(f)
	f.MustSend(t, s.msgs)

	until := closeAt(s.endTS, ooo)
	aggs1 := []oracle.Agg{{Name: "count", Fn: "count"}, {Name: "avg_temp", Fn: "avg", Field: "temperature"}}
	want1 := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, aggs1, until)
	var in2 []oracle.Reading
	for _, r := range want1 {
		site, _, _ := strings.Cut(r.Key, "|")
		in2 = append(in2, oracle.Reading{Key: site, TS: r.End - 1, Vals: r.Values})
	}
	aggs2 := []oracle.Agg{
		{Name: "windows", Fn: "count"}, {Name: "readings", Fn: "sum", Field: "count"},
		{Name: "avg_avg_temp", Fn: "avg", Field: "avg_temp"}, {Name: "max_count", Fn: "max", Field: "count"},
		{Name: "min_count", Fn: "min", Field: "count"},
	}
	want2 := oracle.Compute(in2, oracle.Window{Type: "tumbling", Size: 30000}, aggs2, until)

	got2 := e.waitResults("per_site", []string{"site"}, want2)
	compareResults(t, "per_site", got2, want2, aggs2)
	got1 := e.readResultsFrom("device-results.jsonl", "per_device", []string{"site", "device"})
	compareResults(t, "per_device", got1, want1, aggs1)
	// The per_site results went out over MQTT as well.
	var lines []string
	for _, m := range sub.Messages() {
		if !strings.HasPrefix(m.Topic, "results/per_site/") {
			t.Errorf("result on topic %s", m.Topic)
		}
		lines = append(lines, m.Payload)
	}
	compareResults(t, "per_site over MQTT", collectResults(lines, e.appliance(), "per_site", []string{"site"}), want2, aggs2)
	t.Logf("%d readings → %d per_device windows → %d per_site windows", len(s.good), len(want1), len(want2))
}

// TestIdleSourceReleasesWatermark pins a bug: a source that falls silent
// must stop holding back the watermark of the stage it feeds once its
// idle_timeout has passed (Flink's withIdleness), so that the other source
// alone closes the windows.
//
// eddy marks the source idle (sourceTask.run, case <-idleC: t.out.idle())
// and then, on the very next turn of its loop, calls handOver, which sends
// a plain watermark (t.out.watermark(t.wm)) - as does every checkpoint
// barrier (sourceTask.checkpoint → handOver). The keyed task takes any
// plain watermark as "active again" (keyedTask.run: t.idleIn[in] = false),
// so idleness lasts for one watermark computation: the watermark jumps once
// to the other source's, then is held back at the silent source's for
// good, and no later window fires.
//
// The test makes it deterministic: the silent source's readings come
// first; the first half of the main stream follows; once the stage's
// watermark has passed the silent source's (it went idle), the second half
// and the end marker follow, and every window must fire.
func TestIdleSourceReleasesWatermark(t *testing.T) {
	main := newStream(t, simulate.Options{
		Devices: 8, Sites: 2, Count: 4000, Interval: 20 * time.Millisecond, Start: streamStart,
		Disorder: 300 * time.Millisecond, Seed: 81, EndMarker: true,
	})
	early := newStream(t, simulate.Options{
		Devices: 2, Sites: 2, Count: 40, Interval: 100 * time.Millisecond, Start: streamStart, Seed: 82,
	})
	renameDevices(early, "ln2")
	const ooo = 2 * time.Second
	b := startBroker(t)
	f := newFeeder(t, b, "e2e-feeder")
	e := newEddy(t, b, config{
		Parallelism: 2, Stages: windowStages("{type: tumbling, size: 10s}"), ResultsFrom: "per_device",
		Sources: []source{
			{Name: "readings", OOO: ooo.String()},
			{Name: "line2", Topic: "line2/+/+/telemetry", OOO: ooo.String(), Idle: "2s"},
		},
	})
	e.StartReady()
	e.Probe(f, "sensors", "line2")
	f.MustSend(t, withPrefix(early.msgs, "line2"))
	e.waitCaughtUp(map[string]int64{"line2": int64(len(early.msgs))})
	body := main.body()
	f.MustSend(t, body[:len(body)/2])

	// line2's own watermark; the stage passes it once line2 is idle.
	var line2WM int64
	for _, r := range early.good {
		line2WM = max(line2WM, r.TS-ooo.Milliseconds()-1)
	}
	e.WaitFor("the stage's watermark to pass the silent source's", resultsTimeout, func() bool {
		n := 0
		for _, task := range e.Overview().Tasks {
			if strings.HasPrefix(task.Name, "per_device-") {
				if task.Watermark == nil || *task.Watermark <= line2WM {
					return false
				}
				n++
			}
		}
		return n > 0
	})
	f.MustSend(t, body[len(body)/2:])
	f.MustSend(t, main.end())

	good := append(append([]simulate.Reading(nil), main.good...), early.good...)
	want := oracle.Compute(toOracle(good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(main.endTS, ooo))
	got := e.waitResultsWithin(60*time.Second, "per_device", []string{"site", "device"}, want)
	compareResults(t, "results", got, want, windowAggs)
	if o := e.Overview(); o.DeadLetters != 0 {
		t.Errorf("%d dead letters, want none", o.DeadLetters)
	}
}

// missingFigures lists the figures of Flink's subtask details that the JSON
// of subtask i of task v lacks.
func missingFigures(raw map[string]any, v string, i int) []string {
	get := func(m any, k string) any {
		mm, _ := m.(map[string]any)
		return mm[k]
	}
	subs, _ := get(get(get(raw, "tasks"), v), "subtasks").([]any)
	if i >= len(subs) {
		return []string{"the subtask"}
	}
	st := subs[i]
	var missing []string
	for _, path := range [][]string{{"start_delay"}, {"alignment", "duration"}, {"checkpoint", "sync"},
		{"checkpoint", "async"}, {"state_size"}, {"checkpointed_size"}} {
		x := st
		for _, k := range path {
			x = get(x, k)
		}
		if x == nil {
			missing = append(missing, strings.Join(path, "."))
		}
	}
	return missing
}
