package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/pipeline"
)

// TestSavepointAggregateMigration takes a savepoint of a stage without
// max_temp, restores it (eddy run --from-savepoint) into the stage with
// max_temp added and avg_temp_f removed, and takes a savepoint of the
// migrated state before any new reading: eddy state inspect decodes both by
// the schemas they record — the first with the old aggregates whatever the
// configuration says, the second (values still in the old layout, the
// schema recording it) with the new ones, max_temp partial in every window.
// The results over both runs are then checked as in
// TestRestoreEditedPipeline's aggregate edit.
func TestSavepointAggregateMigration(t *testing.T) {
	s := restartStream(t, 43)
	body := s.body()
	half := len(body) / 2
	b := startBroker(t)
	f := newFeeder(t, b, "e2e-feeder")
	c := restartConfig()
	c.Interval = "1h"
	c.Stages = strings.Replace(c.Stages, "        max_temp: \"max(temperature)\"\n", "", 1)
	e := newEddy(t, b, c)
	e.StartReady()
	e.Probe(f)
	f.MustSend(t, body[:half])
	e.quiesce()
	e.savepoint("--name", "before")
	e.Stop()

	c2 := restartConfig()
	c2.Interval = "1h"
	c2.Stages = strings.Replace(c2.Stages, "        avg_temp_f: \"avg(temp_f)\"\n", "", 1)
	e.WriteConfig(c2.render(e.DataDir, b.URL(), e.HTTPAddr))
	aggNames := func(in *pipeline.Inspection) (names []string, windows, partial int) {
		for _, k := range in.Keys {
			if k.Stage != "per_device" || strings.HasPrefix(k.Key, "_") {
				continue
			}
			for _, w := range k.Windows {
				windows++
				names = names[:0]
				for _, a := range w.Accs {
					names = append(names, a.Name)
					if a.Partial {
						if a.Name != "max_temp" || a.Set {
							t.Errorf("key %s window %d: aggregate %+v partial", k.Key, w.Start, a)
						}
						partial++
					}
				}
			}
		}
		return names, windows, partial
	}
	// Inspected with the edited configuration: decoded by the savepoint's schema.
	names, windows, partial := aggNames(e.inspect(t, "--savepoint", "before"))
	if windows == 0 || !slices.Contains(names, "avg_temp_f") || slices.Contains(names, "max_temp") || partial != 0 {
		t.Fatalf("savepoint before: %d windows, aggregates %v, %d partial: want the old aggregates", windows, names, partial)
	}

	e.StartArgs([]string{"--from-savepoint", "before"}, "EDDY_CHECKPOINTING_INTERVAL=300ms").WaitReady()
	if l, ok := e.FindLog("stage state restored with a compatible change"); !ok || !strings.Contains(l.Str("changes"), "aggregate max_temp: max(temperature) added") ||
		!strings.Contains(l.Str("changes"), "aggregate avg_temp_f: avg(temp_f) removed") {
		t.Errorf("no log line of the migration naming both aggregates (%v)", l)
	}
	e.savepoint("--name", "migrated")
	names, windows2, partial := aggNames(e.inspect(t, "--savepoint", "migrated"))
	if windows2 != windows || slices.Contains(names, "avg_temp_f") || !slices.Contains(names, "max_temp") || partial != windows {
		t.Fatalf("savepoint migrated: %d windows (before: %d), aggregates %v, %d partial: want the new aggregates, max_temp partial in every window",
			windows2, windows, names, partial)
	}
	f.MustSend(t, body[half:])
	f.MustSend(t, s.end())
	checkAggregateMigration(t, e, s, half)
	e.Stop()
}
