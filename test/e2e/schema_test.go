package e2e

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/daemon"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/eddytest"
	"github.com/eddy-stream/eddy/test/oracle"
)

// TestRestoreEditedPipeline checkpoints with one configuration, stops, and
// starts the real binary on an edited one: a refused restore exits
// ExitStateIncompatible (65, which the unit does not restart) with a log
// line naming the stage, the old and new value and what to do; an allowed
// edit restores and the results over both runs match the oracle.
func TestRestoreEditedPipeline(t *testing.T) {
	perSite := "    - name: per_site\n      from: valid\n      key_by: [site]\n      window: {type: tumbling, size: 20s}\n      aggregate:\n        n: \"count()\"\n"
	for _, tc := range []struct {
		name   string
		first  func(c *config) // the first run's configuration; nil: restartConfig
		edit   func(c *config)
		refuse string // prefix of the refusal log line; "" = restores
		// migrated: the aggregates changed (aggregate migration); the
		// results are checked by checkAggregateMigration
		migrated bool
	}{
		{name: "key_by changed", edit: func(c *config) {
			c.Stages = strings.Replace(c.Stages, "key_by: [site, device]", "key_by: [device]", 1)
		}, refuse: "state restore refused: stage per_device (uid per_device): key_by changed from [site device] to [device]"},
		{name: "keyed stage removed", edit: func(c *config) {
			c.Stages = strings.Replace(c.Stages, "name: per_device", "name: per_device_v2", 1)
			c.ResultsFrom = "per_device_v2"
		}, refuse: "state restore refused: stage per_device (uid per_device) has state but is not in the configuration"},
		{name: "keyed stage added, parallelism 2 to 3", edit: func(c *config) {
			c.Stages += perSite
			c.Parallelism = 3
		}},
		{name: "renamed with uid", edit: func(c *config) {
			c.Stages = strings.Replace(c.Stages, "name: per_device\n", "name: per_device_v2\n      uid: per_device\n", 1)
			c.ResultsFrom = "per_device_v2"
		}},
		{name: "aggregate added and one removed", first: func(c *config) {
			c.Stages = strings.Replace(c.Stages, "        max_temp: \"max(temperature)\"\n", "", 1)
		}, edit: func(c *config) {
			c.Stages = strings.Replace(c.Stages, "        avg_temp_f: \"avg(temp_f)\"\n", "", 1)
		}, migrated: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := restartConfig()
			c2 := c
			if tc.first != nil {
				tc.first(&c)
			}
			s := restartStream(t, 41)
			body := s.body()
			half := len(body) / 2
			b := startBroker(t)
			f := newFeeder(t, b, "e2e-feeder")
			e := newEddy(t, b, c)
			e.StartReady()
			e.Probe(f)
			f.MustSend(t, body[:half])
			e.waitCaughtUp(map[string]int64{"readings": int64(half)})
			e.Trigger()
			e.Stop()

			tc.edit(&c2)
			e.WriteConfig(c2.render(e.DataDir, b.URL(), e.HTTPAddr))
			if tc.refuse != "" {
				p := e.Start()
				err := p.Wait(eddytest.ExitTimeout)
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != daemon.ExitStateIncompatible {
					t.Fatalf("eddy run on the edited config: %v, want exit status %d", err, daemon.ExitStateIncompatible)
				}
				found := false
				for _, l := range p.Logs() {
					found = found || strings.HasPrefix(l.Msg(), tc.refuse)
				}
				if !found {
					t.Fatalf("no log line starting %q\n%s", tc.refuse, eddytest.Tail(p.LogPath, 20))
				}
				return
			}
			e.StartReady()
			if r := e.Checkpoints().Latest.Restored; r == nil {
				t.Fatal("the edited pipeline did not restore")
			}
			f.MustSend(t, body[half:])
			f.MustSend(t, s.end())
			if tc.migrated {
				checkAggregateMigration(t, e, s, half)
				return
			}
			want := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(s.endTS, restartOOO))
			if c2.ResultsFrom != c.ResultsFrom {
				// The first run's results carry the old stage name: the
				// renamed stage must deliver exactly the rest.
				before := e.readResults(c.ResultsFrom, []string{"site", "device"})
				old := map[string]oracle.Result{}
				for k := range before.Final {
					old[k] = want[k]
					delete(want, k)
				}
				compareResults(t, "results of the first run", before, old, windowAggs)
			}
			got := e.waitResults(c2.ResultsFrom, []string{"site", "device"}, want)
			compareResults(t, "results over two runs", got, want, windowAggs)
		})
	}
}

// checkAggregateMigration checks the results of TestRestoreEditedPipeline's
// aggregate edit: the first run (body[:half]) had every aggregate of
// windowStages but max_temp, the restored run every one but avg_temp_f.
// A window's final result computed before the restore has the old
// aggregates, exact; one computed after it has max_temp and not
// avg_temp_f, the others exact; max_temp is listed in "partial" and exact
// over the readings after the restore when the window has readings from
// before it (it was open at the restore), else whole and exact.
func checkAggregateMigration(t *testing.T, e *eddy, s *stream, half int) {
	t.Helper()
	var before, after []simulate.Reading
	for i, m := range s.body() {
		if i < half {
			before = append(before, m.Readings...)
		} else {
			after = append(after, m.Readings...)
		}
	}
	ow := oracle.Window{Type: "tumbling", Size: 10000}
	at := closeAt(s.endTS, restartOOO)
	want := oracle.Compute(toOracle(s.good), ow, windowAggs, at)
	pre := oracle.Compute(toOracle(before), ow, windowAggs, at)
	post := oracle.Compute(toOracle(after), ow, windowAggs, at)
	got := e.waitResults("per_device", []string{"site", "device"}, want)
	if len(got.Problems) > 0 {
		t.Fatalf("result problems: %s", strings.Join(got.Problems, "\n"))
	}
	var old, partial, whole int
	for id, w := range want {
		g := got.Final[id]
		check := func(name string, want float64) {
			if v, ok := g.Vals[name]; !ok || !oracle.Close(v, want) {
				t.Errorf("window %s: %s = %v (present %v), want %v\n  %s", id, name, v, ok, want, g.Raw)
			}
		}
		for _, a := range windowAggs {
			if a.Name != "max_temp" && a.Name != "avg_temp_f" {
				check(a.Name, w.Values[a.Name])
			}
		}
		isPartial := strings.Contains(g.Raw, `"partial":["max_temp"]`)
		switch _, hasOld := g.Vals["avg_temp_f"]; {
		case hasOld:
			old++
			check("avg_temp_f", w.Values["avg_temp_f"])
			if _, ok := g.Vals["max_temp"]; ok || strings.Contains(g.Raw, `"partial"`) {
				t.Errorf("window %s: result of the first run with max_temp or partial: %s", id, g.Raw)
			}
		case pre[id].Values != nil:
			partial++
			if !isPartial {
				t.Errorf("window %s was open at the restore: want \"partial\":[\"max_temp\"]: %s", id, g.Raw)
			}
			if p, ok := post[id]; ok {
				check("max_temp", p.Values["max_temp"])
			} else if !strings.Contains(g.Raw, `"max_temp":null`) {
				t.Errorf("window %s: no reading after the restore, want max_temp null: %s", id, g.Raw)
			}
		default:
			whole++
			if strings.Contains(g.Raw, `"partial"`) {
				t.Errorf("window %s opened after the restore is marked partial: %s", id, g.Raw)
			}
			check("max_temp", w.Values["max_temp"])
		}
	}
	if old == 0 || partial == 0 || whole == 0 {
		t.Errorf("windows: %d before the restore, %d partial, %d whole after it: want some of each", old, partial, whole)
	}
	t.Logf("%d windows: %d final before the restore, %d partial, %d whole after it", len(want), old, partial, whole)
}
