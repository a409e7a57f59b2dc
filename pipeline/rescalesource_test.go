package pipeline

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// Dead letters found by a source subtask (a message that does not parse)
// are staged in that subtask's state until the dead-letter sink confirms
// them. After a change of the source's parallelism, the staged dead
// letters of every old subtask must still reach the sink. The old job's
// dead-letter sink never takes anything, so the checkpoint holds all of
// them staged, whatever the timing.
func TestSourceRescaleKeepsStagedDeadLetters(t *testing.T) {
	for _, tc := range []struct{ from, to int }{{3, 1}, {1, 2}, {3, 2}} {
		t.Run(fmt.Sprintf("sources %d to %d", tc.from, tc.to), func(t *testing.T) {
			h := newHarness(t, true)
			const bad = 60
			var msgs [][2]string
			for i := range bad {
				msgs = append(msgs, [2]string{fmt.Sprintf("sensors/s%d/d%d/telemetry", i%3, i), fmt.Sprintf("not json %d", i)})
			}
			h.appendMsgs(msgs...)
			read := h.log.NextOffset()
			w := WindowSpec{Type: "tumbling", Size: 5 * time.Second}
			mk := func(srcP int) JobSpec {
				s := h.spec(2, w)
				s.Sources[0].Parallelism = srcP
				return s
			}
			old := mk(tc.from)
			old.Sinks[1].Sink = &refusingSink{}
			h.run(old, func() bool {
				md, _, err := h.store.Latest(false)
				if err != nil || md == nil {
					return false
				}
				for _, st := range oldSourcePositions(md, "readings") {
					if st.Offset != read {
						return false
					}
				}
				return true
			})
			md, _, err := h.store.Latest(true)
			if err != nil || md == nil {
				t.Fatal(md, err)
			}
			// The precondition: every old source subtask holds staged dead letters.
			for k := range tc.from {
				name := "source-readings"
				if tc.from > 1 {
					name = fmt.Sprintf("source-readings-%d", k)
				}
				if stagedOutputs(t, h.store, md.ID, name, "dead") == 0 {
					t.Fatalf("checkpoint %d: %s has no staged dead letters: the test does not exercise the rescale", md.ID, name)
				}
			}
			spec := mk(tc.to)
			spec.Restore = md
			seen := func() map[string]bool {
				got := map[string]bool{}
				for _, o := range h.dead.snapshot() {
					var m map[string]any
					if err := json.Unmarshal(o.Payload, &m); err == nil {
						if p, ok := m["payload"].(string); ok {
							got[p] = true
						}
					}
				}
				return got
			}
			// Everything restored is published once the dead-letter sink
			// has confirmed a checkpoint after the restored one: what is
			// missing then is lost.
			h.run(spec, func() bool {
				ids, err := h.store.Completed()
				if err != nil {
					return false
				}
				for _, id := range ids {
					if id > md.ID && h.store.PublishedSinks(id).Has("dead") {
						return true
					}
				}
				return false
			})
			if got := seen(); len(got) != bad {
				t.Fatalf("%d of %d dead letters reached the sink after the source rescale", len(got), bad)
			}
		})
	}
}
