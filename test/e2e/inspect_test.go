package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/oracle"
)

// sumTree returns the SHA-256 of every file under dir, by relative path,
// except _published (and its .tmp), which eddy itself rewrites as sinks
// confirm a checkpoint.
func sumTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), "_published") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *eddy) inspect(t *testing.T, args ...string) *pipeline.Inspection {
	t.Helper()
	out, err := e.Command(append([]string{"state", "inspect", "--config", e.ConfigPath, "--json"}, args...)...)
	if err != nil {
		t.Fatalf("eddy state inspect %v: %v\n%s", args, err, out)
	}
	var in pipeline.Inspection
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		t.Fatalf("eddy state inspect %v: %v\n%s", args, err, out)
	}
	return &in
}

func accOf(t *testing.T, w pipeline.WindowState, name string) pipeline.AccState {
	for _, a := range w.Accs {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("window %d-%d has no aggregate %s", w.Start, w.End, name)
	return pipeline.AccState{}
}

// TestStateInspect feeds half of a stream, takes a checkpoint and inspects
// it with `eddy state inspect` while eddy runs and after it stopped: the
// open windows' count and sum match the oracle over the readings fed, every
// window the watermark has not closed is there, each key has its timer,
// the key-group sizes add up, and no byte under the checkpoint changed.
// With RocksDB timers, heap timers and full snapshots.
func TestStateInspect(t *testing.T) {
	for _, tc := range []struct {
		name, timers, checkpointing, kind, timerMode string
	}{
		{"incremental rocksdb timers", "rocksdb", "", "native", "rocksdb"},
		{"heap timers", "heap", "", "native", "heap"},
		{"full snapshots", "rocksdb", "  incremental: false\n  compression: snappy\n", "full", "rocksdb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := restartConfig()
			c.Interval = "1h" // only the checkpoints the test triggers, and the final one
			c.Timers, c.Checkpointing = tc.timers, tc.checkpointing
			e, _, _, body, half := firstHalf(t, 41, c)
			id := e.Trigger()
			chk := filepath.Join(e.Path("checkpoints"), fmt.Sprintf("chk-%d", id))
			before := sumTree(t, chk)

			running := e.inspect(t, "--checkpoint", fmt.Sprint(id))
			var fed []simulate.Reading
			for _, m := range body[:half] {
				fed = append(fed, m.Readings...)
			}
			all := oracle.Compute(toOracle(fed), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, math.MaxInt64)
			checkInspection(t, running, all, tc.kind, tc.timerMode)

			one := running.Keys[0].Key
			byKey := e.inspect(t, "--checkpoint", fmt.Sprint(id), "--stage", "per_device", "--key", one)
			if len(byKey.Keys) != 1 || byKey.Keys[0].Key != one {
				t.Errorf("--key %s: %d keys, want exactly that one", one, len(byKey.Keys))
			}
			table, err := e.Command("state", "inspect", "--config", e.ConfigPath, "--checkpoint", fmt.Sprint(id), "--key", one)
			if err != nil || !strings.Contains(table, one) || !strings.Contains(table, "WINDOW START") {
				t.Errorf("table for --key %s: %v\n%s", one, err, table)
			}
			t.Logf("eddy state inspect --key %s:\n%s", one, table)
			if out, err := e.Command("state", "inspect", "--config", e.ConfigPath, "--savepoint", "nope"); err == nil || !strings.Contains(out, `no savepoint named "nope"`) {
				t.Errorf("--savepoint nope: %v, %q; want an error naming it", err, out)
			}

			e.Stop()
			stopped := e.inspect(t, "--checkpoint", fmt.Sprint(id), "--data-dir", e.DataDir)
			a, _ := json.Marshal(running)
			b, _ := json.Marshal(stopped)
			if string(a) != string(b) {
				t.Errorf("inspecting checkpoint %d while running and after the stop differ", id)
			}
			after := sumTree(t, chk)
			if len(before) != len(after) {
				t.Errorf("checkpoint %d had %d files, has %d after inspect", id, len(before), len(after))
			}
			for f, s := range before {
				if after[f] != s {
					t.Errorf("checkpoint %d: %s changed by inspect", id, f)
				}
			}
			t.Logf("checkpoint %d: %d keys, %d key groups, %d files unchanged", id, len(running.Keys), len(running.KeyGroups), len(before))
		})
	}
}

func checkInspection(t *testing.T, in *pipeline.Inspection, all map[string]oracle.Result, kind, timerMode string) {
	t.Helper()
	if len(in.Tasks) != 2 {
		t.Fatalf("%d keyed tasks, want 2", len(in.Tasks))
	}
	maxWM := int64(math.MinInt64)
	wm := map[string]int64{}
	for _, ts := range in.Tasks {
		if ts.Kind != kind || ts.TimerMode != timerMode {
			t.Errorf("task %s: kind %s, timers %s; want %s, %s", ts.Task, ts.Kind, ts.TimerMode, kind, timerMode)
		}
		wm[ts.Task] = ts.Watermark
		maxWM = max(maxWM, ts.Watermark)
	}
	if len(in.Keys) == 0 {
		t.Fatal("no keys in the checkpoint")
	}
	seen := map[string]bool{}
	windows := 0
	for _, k := range in.Keys {
		if len(k.Timers) == 0 {
			t.Errorf("key %s has no timer", k.Key)
		}
		for _, w := range k.Windows {
			windows++
			id := oracle.ID(k.Key, w.Start, w.End)
			seen[id] = true
			want, ok := all[id]
			if !ok {
				t.Errorf("window %s is open in the checkpoint, the oracle has no such window", id)
				continue
			}
			if w.End-1 <= wm[k.Task] {
				t.Errorf("window %s is open though the watermark %d of %s closed it", id, wm[k.Task], k.Task)
			}
			if got := accOf(t, w, "count").Count; float64(got) != want.Values["count"] {
				t.Errorf("window %s: count %d, oracle %v", id, got, want.Values["count"])
			}
			sum := accOf(t, w, "sum_hum")
			if sum.Result == nil || math.Abs(*sum.Result-want.Values["sum_hum"]) > 1e-9*math.Max(1, math.Abs(want.Values["sum_hum"])) {
				t.Errorf("window %s: sum_hum %v, oracle %v", id, sum.Result, want.Values["sum_hum"])
			}
			if mx := accOf(t, w, "max_temp"); mx.Result == nil || *mx.Result != want.Values["max_temp"] {
				t.Errorf("window %s: max_temp %v, oracle %v", id, mx.Result, want.Values["max_temp"])
			}
			hasTimer := false
			for _, ts := range k.Timers {
				hasTimer = hasTimer || ts <= w.End-1
			}
			if !hasTimer {
				t.Errorf("window %s: no timer at or before its end %d: %v", id, w.End-1, k.Timers)
			}
		}
	}
	for id, r := range all {
		if r.End-1 > maxWM && !seen[id] {
			t.Errorf("window %s is past every watermark (%d) but not in the checkpoint", id, maxWM)
		}
	}
	var keys, tms int
	var bytes, keyBytes, timerBytes int64
	for _, g := range in.KeyGroups {
		keys += g.Keys
		tms += g.Timers
		bytes += g.Bytes
		timerBytes += g.TimerBytes
		if g.Bytes != g.WindowBytes+g.TimerBytes {
			t.Errorf("key group %d: bytes %d != %d + %d", g.KeyGroup, g.Bytes, g.WindowBytes, g.TimerBytes)
		}
	}
	nt := 0
	for _, k := range in.Keys {
		keyBytes += int64(k.Bytes)
		nt += len(k.Timers)
	}
	if keys != len(in.Keys) || tms != nt || bytes != keyBytes+timerBytes {
		t.Errorf("key groups: %d keys, %d timers, %d bytes; the keys: %d, %d, %d + %d timer bytes", keys, tms, bytes, len(in.Keys), nt, keyBytes, timerBytes)
	}
	t.Logf("%d keys, %d open windows, %d timers, %d key groups, %d bytes; watermark %d", len(in.Keys), windows, tms, len(in.KeyGroups), bytes, maxWM)
}
