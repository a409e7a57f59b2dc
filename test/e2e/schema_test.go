package e2e

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/daemon"
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
		edit   func(c *config)
		refuse string // prefix of the refusal log line; "" = restores
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := restartConfig()
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

			c2 := c
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
