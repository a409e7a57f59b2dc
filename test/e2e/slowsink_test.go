package e2e

import (
	"testing"
	"time"

	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/oracle"
)

// TestStagedOutputSurvivesSlowBroker: staged output stays in every
// snapshot until its sink has confirmed it. Regression test for an
// exactly-once bug of the release loop (pipeline/release.go, Job.release):
// it used to remove the staged output of every checkpoint <= N from the
// stagers (stager.take) before handing it to the sinks. While a sink was
// slow - here the MQTT broker hangs, as a broker behind a broken uplink
// would, so sink.MQTT.Write blocks - the coordinator kept completing
// checkpoints whose snapshots no longer held the taken output; a crash then
// restored the newest one, and every result that had not reached the broker
// (or paho's store) was lost for good.
//
// Deterministic: a long interval and manual checkpoints; 2500 windows close
// at once; mosquitto is frozen (SIGSTOP) before the checkpoint that
// publishes them; a second checkpoint completes; eddy is killed, mosquitto
// resumes, eddy restarts. Both the results file and the MQTT topic must
// have every window.
func TestStagedOutputSurvivesSlowBroker(t *testing.T) {
	s := newStream(t, simulate.Options{
		Devices: 2500, Sites: 5, Count: 2500, Interval: time.Millisecond, Start: streamStart, Seed: 71, EndMarker: true,
	})
	const ooo = 2 * time.Second
	b := startBroker(t)
	f := newFeeder(t, b, "e2e-feeder")
	e := newEddy(t, b, config{
		Parallelism: 1, Stages: windowStages("{type: tumbling, size: 10s}"), ResultsFrom: "per_device",
		MQTTTopic: "results/{site}/{device}", Sources: []source{{Name: "readings", OOO: ooo.String()}},
		Interval: "1h",
	})
	sub := subscribe(t, b, f, "results/#")
	e.StartReady()
	e.Probe(f)
	f.MustSend(t, s.msgs)
	e.waitCaughtUp(map[string]int64{"readings": int64(len(s.msgs))})

	b.Pause()
	paused := true
	defer func() {
		if paused {
			b.Resume()
		}
	}()
	first := e.Trigger() // its staged results go to the frozen broker
	second := e.Trigger()
	t.Logf("checkpoints %d and %d completed while the broker was frozen", first, second)
	e.Kill()
	b.Resume()
	paused = false

	e.StartReady()
	want := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(s.endTS, ooo))
	got := e.waitResults("per_device", []string{"site", "device"}, want)
	compareResults(t, "results file", got, want, windowAggs)

	viaMQTT := sub.WaitResults(e.appliance(), "per_device", []string{"site", "device"}, want)
	compareResults(t, "results over MQTT", viaMQTT, want, windowAggs)
	t.Logf("%d windows; file %d lines, MQTT %d messages (%d duplicates)", len(want), got.Lines, viaMQTT.Lines, viaMQTT.Dups)
}
