package remote

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/internal/failpoint"
	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/eddytest"
	"github.com/eddy-stream/eddy/test/mqtttest"
)

// TestReplacedBoxRepublishesSpool: results wait in the spool of a cloud
// MQTT sink whose broker is down (on its own connection; the file sink
// keeps publishing), checkpoints are uploaded, and then the box dies
// (kill -9, data dir wiped). The replacement, started with the cloud
// broker back, restores the remote checkpoint together with the part of
// the spool that checkpoint needs, and the cloud subscriber gets every
// window result, oracle-exact: duplicates only identical re-publishes.
// Without the spool on the remote, the results that were spooled and not
// confirmed when the disk died never arrive. The replacement's first start
// is killed (failpoint) right after it fetched a spool segment; the second
// resumes the download. On a file:// remote and on versitygw.
func TestReplacedBoxRepublishesSpool(t *testing.T) {
	for _, kind := range []string{"file", "s3"} {
		t.Run(kind, func(t *testing.T) {
			r := newFileRemote
			if kind == "s3" {
				r = newS3Remote
			}
			replacedBoxRepublishesSpool(t, r(t))
		})
	}
}

func replacedBoxRepublishesSpool(t *testing.T, r *remote) {
	plant, cloud := mqtttest.Start(t), mqtttest.Start(t)
	cf := eddytest.NewFeeder(t, cloud.URL(), "cloud-feeder")
	sub := eddytest.Subscribe(t, cloud.URL(), cf, "cloud/#")
	e := newEddySinks(t, plant, r, "", `  - name: cloud
    from: per_device
    mqtt:
      topic: "cloud/{site}/{device}"
      qos: 1
      connection:
        broker: "`+cloud.URL()+`"
        client_id: eddy-cloud
        keep_alive: 2s
        connect_timeout: 2s
        reconnect_max_interval: 500ms
`)
	f := newFeeder(t, plant)
	s := newStream(t, simulate.Options{Devices: 10, Sites: 2, Count: 2000, Interval: 50 * time.Millisecond,
		Start: streamStart, Seed: 23, EndMarker: true})
	want := s.want()
	third := len(s.msgs) / 3

	e.startFed(f, s.msgs[:third])
	e.WaitFor("results on the cloud broker", longTimeout, func() bool {
		return len(sub.Results(appliance, "per_device", []string{"site", "device"}).Final) > 0
	})

	// The cloud broker goes down; the rest of the stream is processed,
	// the file sink gets everything and the cloud's output piles up in
	// its spool.
	cloud.Stop()
	atOutage := len(sub.Results(appliance, "per_device", []string{"site", "device"}).Final)
	f.MustSend(t, s.msgs[third:])
	e.waitResults(want)
	e.WaitFor("the cloud sink's output to wait in its spool", longTimeout, func() bool {
		c := sinkState(e.Overview().Sinks, "cloud")
		return c.Spool != nil && c.Spool.Bytes > 0 && c.Spool.SpooledUpTo > c.PublishedUpTo
	})
	// The output seen spooled belongs to a checkpoint completed by now; the
	// next one to complete records the spool's end past it.
	id := e.LatestCompleted() + 1
	e.WaitFor("a checkpoint recording the cloud's spooled output", longTimeout, func() bool {
		return e.LatestCompleted() >= id
	})
	id = e.LatestCompleted()
	e.waitRemote(id)
	if n := len(sub.Results(appliance, "per_device", []string{"site", "device"}).Final); n >= len(want) {
		t.Fatalf("the cloud subscriber has %d of %d windows while its broker is down", n, len(want))
	}
	e.Kill()
	if err := os.RemoveAll(e.DataDir); err != nil {
		t.Fatal(err)
	}

	// The replacement, with the cloud broker back; its first start dies
	// in the middle of the spool download.
	cloud.Restart()
	sub.WaitProbe(t, eddytest.NewFeeder(t, cloud.URL(), "cloud-feeder-2"))
	k := e.Start("EDDY_FAILPOINTS=" + failpoint.SpoolDownload + "=1")
	if !k.WaitExit(longTimeout) || !k.Signaled(syscall.SIGKILL) {
		log, _ := os.ReadFile(k.LogPath)
		t.Fatalf("the replacement's first start did not die at the spool download (exited %v):\n%.6000s", k.Exited(), log)
	}
	if _, err := os.Stat(filepath.Join(e.DataDir, "spool", "cloud")); err == nil {
		t.Fatal("a spool half downloaded was installed")
	}
	p := e.Start()
	p.WaitReady()
	o := p.Overview()
	if o.Recovery == nil || o.Recovery.Source != "remote" || o.Recovery.Checkpoint < id {
		t.Fatalf("recovery %+v, want from remote checkpoint ≥ %d", o.Recovery, id)
	}
	if _, ok := p.FindLog("restored the spool of sink from the remote"); !ok {
		t.Error("no log line about the spool restored from the remote")
	}
	got := sub.WaitResults(appliance, "per_device", []string{"site", "device"}, want)
	eddytest.CompareResults(t, "results on the cloud broker after the replacement", got, want, aggs)
	file, problems := e.readResults()
	compare(t, file, problems, want)
	t.Logf("%d windows, %d on the cloud before its outage; cloud: %d messages, %d identical re-publishes",
		len(want), atOutage, got.Lines, got.Dups)
}

func sinkState(o []pipeline.SinkState, name string) pipeline.SinkState {
	for _, s := range o {
		if s.Name == name {
			return s
		}
	}
	return pipeline.SinkState{Name: name, PublishedUpTo: -1}
}
