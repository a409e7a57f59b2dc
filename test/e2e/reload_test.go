package e2e

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/storage/savepoint"
	"github.com/eddy-stream/eddy/test/eddytest"
	"github.com/eddy-stream/eddy/test/oracle"
)

// reload runs eddy reload on e's configuration file and returns its
// output and exit status.
func (e *eddy) reload() (string, int) {
	e.t.Helper()
	return e.CommandStatus("reload", "--config", e.ConfigPath)
}

// TestReloadPipelineUnderLoad applies pipeline changes with eddy reload
// (what systemctl reload runs) while a QoS 1 feeder publishes at full rate:
//
//   - a changed key_by does not fit the running state: eddy reload exits
//     non-zero with the stage's reason, the job keeps running (no restart,
//     it still checkpoints) and the overview shows the refused reload;
//   - parallelism 2 → 3, a keyed stage per_site and its sink added: eddy
//     reload exits 0 once the job runs on the new pipeline, restored from
//     the reload's savepoint.
//
// Over the whole stream every per_device window is exact (none missing,
// none published twice, none wrong), and per_site's windows that start
// after the savepoint's highest event time are exact too (it started
// empty at the savepoint; the windows open then are partial, never more).
func TestReloadPipelineUnderLoad(t *testing.T) {
	s := newStream(t, simulate.Options{
		Devices: 10, Sites: 3, Count: 24000, Interval: 20 * time.Millisecond, Start: streamStart,
		Disorder: 500 * time.Millisecond, Seed: 71, EndMarker: true,
	})
	body := s.body()
	b := startBroker(t)
	f := newFeeder(t, b, "e2e-feeder")
	c := restartConfig()
	e := newEddy(t, b, c)
	e.StartReady()
	e.Probe(f)

	// The feeder: chunks of 100 back to back; it holds at 90% until the
	// second reload has answered, so that input arrives all through it.
	var sent atomic.Int64
	reloaded := make(chan struct{})
	fed := make(chan error, 1)
	go func() {
		hold := len(body) * 9 / 10
		for j := 0; j < len(body); j += 100 {
			if j >= hold && j-100 < hold {
				<-reloaded
			}
			if err := f.Send(body[j:min(j+100, len(body))]); err != nil {
				fed <- err
				return
			}
			sent.Store(int64(min(j+100, len(body))))
		}
		fed <- nil
	}()
	waitSent := func(n int) {
		t.Helper()
		if !eddytest.Poll(resultsTimeout, 10*time.Millisecond, func() bool { return sent.Load() >= int64(n) }) {
			t.Fatalf("the feeder did not send %d messages within %v", n, resultsTimeout)
		}
	}

	// 1. An incompatible change: refused, the job keeps running.
	waitSent(len(body) / 5)
	bad := c
	bad.Stages = strings.Replace(c.Stages, "key_by: [site, device]", "key_by: [device]", 1)
	e.WriteConfig(bad.render(e.DataDir, b.URL(), e.HTTPAddr))
	out, code := e.reload()
	if code == 0 || !strings.Contains(out, "reload refused") ||
		!strings.Contains(out, "stage per_device (uid per_device): key_by changed from [site device] to [device]") {
		t.Errorf("eddy reload of a key_by change: exit %d, want non-zero with the reason\n%s", code, out)
	}
	o := e.Overview()
	if !o.Running || o.JobRestarts != 0 {
		t.Errorf("after the refused reload: running %v, %d job restarts; want the same job running", o.Running, o.JobRestarts)
	}
	if lr := o.LastReload; lr == nil || lr.Outcome != "refused" || !strings.Contains(lr.Reason, "key_by changed") {
		t.Errorf("overview last_reload after the refused reload = %+v", lr)
	}
	before := e.LatestCompleted()
	e.WaitFor("a checkpoint after the refused reload", resultsTimeout, func() bool { return e.LatestCompleted() > before })

	// 2. A compatible change, under load.
	waitSent(len(body) / 2)
	good := c
	good.Parallelism = 3
	good.Stages += perSiteStage
	good.ExtraSinks = sitesSink
	e.WriteConfig(good.render(e.DataDir, b.URL(), e.HTTPAddr))
	recv0, sent0, t0 := e.Overview().Ingest[0].Received, sent.Load(), time.Now()
	out, code = e.reload()
	recv1, sent1 := e.Overview().Ingest[0].Received, sent.Load()
	close(reloaded)
	if code != 0 || !strings.Contains(out, "rebuilt from savepoint") {
		t.Fatalf("eddy reload of parallelism 3 and a new stage: exit %d\n%s", code, out)
	}
	t.Logf("reload took %v; eddy received %d messages and the feeder sent %d meanwhile",
		time.Since(t0).Round(time.Millisecond), recv1-recv0, sent1-sent0)
	o = e.Overview()
	lr := o.LastReload
	if lr == nil || lr.Outcome != "applied" || lr.Savepoint == "" {
		t.Fatalf("overview last_reload after the applied reload = %+v", lr)
	}
	tasks := map[string]bool{}
	for _, tk := range o.Tasks {
		tasks[tk.Name] = true
	}
	if !tasks["per_site-2"] || !tasks["per_device-2"] {
		t.Errorf("tasks after the reload: %v, want per_device and per_site at parallelism 3", tasks)
	}
	if l, ok := e.FindLog("restoring from savepoint"); !ok || l.Str("savepoint") != lr.Savepoint {
		t.Errorf("no log line restoring from savepoint %s", lr.Savepoint)
	}

	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	f.MustSend(t, s.end())
	until := closeAt(s.endTS, restartOOO)
	want := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, until)
	got := e.waitResults("per_device", []string{"site", "device"}, want)
	compareResults(t, "per_device (unchanged by the reloads)", got, want, windowAggs)
	if got.Dups > 0 {
		t.Errorf("per_device: %d results published twice", got.Dups)
	}

	// per_site started empty at the savepoint: a window that starts after
	// every event time read before it holds only readings read after it.
	md, err := savepoint.Load(e.Path("savepoints/" + lr.Savepoint))
	if err != nil {
		t.Fatal(err)
	}
	bound := int64(0)
	for _, st := range md.Sources {
		bound = max(bound, st.MaxTimestamp)
	}
	all := oracle.Compute(readingsBySite(body), oracle.Window{Type: "tumbling", Size: 10000}, perSiteAggs, until)
	exact := map[string]oracle.Result{}
	for k, r := range all {
		if r.Start > bound {
			exact[k] = r
		}
	}
	var site *resultSet
	eddytest.Poll(resultsTimeout, 50*time.Millisecond, func() bool {
		site = e.readResultsFrom("sites.jsonl", "per_site", []string{"site"})
		return site.Missing(exact) == 0
	})
	after := &resultSet{Final: map[string]eddytest.Result{}, Lines: site.Lines, Dups: site.Dups, Problems: site.Problems}
	for k, r := range site.Final {
		if r.Start > bound {
			after.Final[k] = r
			continue
		}
		if w, ok := all[k]; !ok || r.Vals["count"] > w.Values["count"] {
			t.Errorf("per_site window %s open at the savepoint: count %v, more than the stream's %v", k, r.Vals["count"], w.Values["count"])
		}
	}
	compareResults(t, "per_site (added by the reload)", after, exact, perSiteAggs)
	if site.Dups > 0 {
		t.Errorf("per_site: %d results published twice", site.Dups)
	}
	if len(exact) < 3 {
		t.Errorf("only %d per_site windows after the savepoint: the check proves little", len(exact))
	}
	t.Logf("per_device %d windows exact; per_site %d windows exact after the savepoint, %d partial", len(want), len(exact), len(site.Final)-len(after.Final))
	e.Stop()
}
