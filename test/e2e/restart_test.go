package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/eddytest"
	"github.com/eddy-stream/eddy/test/oracle"
)

// restartStream is the stream of the restart tests: 8000 readings of 10
// devices, 160 s of event time.
func restartStream(t *testing.T, seed int64) *stream {
	return newStream(t, simulate.Options{
		Devices: 10, Sites: 3, Count: 8000, Interval: 20 * time.Millisecond, Start: streamStart,
		Disorder: 500 * time.Millisecond, Seed: seed, EndMarker: true,
	})
}

const restartOOO = 2 * time.Second

func restartConfig() config {
	return config{
		Parallelism: 2, Stages: windowStages("{type: tumbling, size: 10s}"), ResultsFrom: "per_device",
		Sources: []source{{Name: "readings", OOO: restartOOO.String()}}, NumRetained: 3,
	}
}

// firstHalf starts a broker and eddy on c, feeds it the first half of the
// body of restartStream(seed) and waits until eddy has read it.
func firstHalf(t *testing.T, seed int64, c config) (e *eddy, f *eddytest.Feeder, s *stream, body []simulate.Message, half int) {
	t.Helper()
	s = restartStream(t, seed)
	body = s.body()
	half = len(body) / 2
	b := startBroker(t)
	f = newFeeder(t, b, "e2e-feeder")
	e = newEddy(t, b, c)
	e.StartReady()
	e.Probe(f)
	f.MustSend(t, body[:half])
	e.waitCaughtUp(map[string]int64{"readings": int64(half)})
	return e, f, s, body, half
}

// TestRestartResumes stops eddy cleanly (SIGTERM) half way through a stream
// and starts it again: it restores the last checkpoint completed before the
// stop (GET /api/v1/checkpoints: counts.restored 1, latest.restored.id),
// and the results over both runs are exact. The same with timers on the
// heap (written into each checkpoint) and with full, snappy-compressed
// snapshots (incremental: false) instead of native RocksDB checkpoints.
func TestRestartResumes(t *testing.T) {
	for _, tc := range []struct {
		name          string
		timers        string
		checkpointing string
		kind          string // task kind in _metadata
	}{
		{"incremental rocksdb timers", "rocksdb", "", "native"},
		{"heap timers", "heap", "", "native"},
		{"full snappy snapshots", "rocksdb", "  incremental: false\n  compression: snappy\n", "full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := restartConfig()
			c.Timers, c.Checkpointing = tc.timers, tc.checkpointing
			e, f, s, body, half := firstHalf(t, 31, c)
			e.Trigger()
			before := e.Checkpoints()
			if before.Counts.Restored != 0 || before.Latest.Restored != nil {
				t.Errorf("first run reports a restore: %+v", before.Counts)
			}
			if before.Latest.Completed == nil {
				t.Fatal("no completed checkpoint in the first run")
			}
			e.Stop()
			ids := completedCheckpoints(e.Path("checkpoints"))
			if len(ids) == 0 {
				t.Fatal("no checkpoint on disk after the stop")
			}
			last := ids[len(ids)-1]
			if last < before.Latest.Completed.ID {
				t.Fatalf("newest checkpoint on disk is %d, the API said %d before the stop", last, before.Latest.Completed.ID)
			}
			md := readMetadata(t, filepath.Join(e.Path("checkpoints"), fmt.Sprintf("chk-%d", last), "_metadata"))
			for name, ts := range md.Tasks {
				if strings.HasPrefix(name, "per_device-") && ts.Kind != tc.kind {
					t.Errorf("chk-%d task %s is %q, want %q", last, name, ts.Kind, tc.kind)
				}
			}

			e.StartReady()
			after := e.Checkpoints()
			if after.Counts.Restored != 1 || after.Latest.Restored == nil || after.Latest.Restored.ID != last {
				t.Errorf("after restart: counts.restored %d, latest.restored %+v; want 1 and id %d", after.Counts.Restored, after.Latest.Restored, last)
			} else if after.Latest.Restored.Source != "local" {
				t.Errorf("restored from %q, want local", after.Latest.Restored.Source)
			}
			f.MustSend(t, body[half:])
			f.MustSend(t, s.end())
			want := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(s.endTS, restartOOO))
			got := e.waitResults("per_device", []string{"site", "device"}, want)
			compareResults(t, "results over two runs", got, want, windowAggs)
			t.Logf("restored checkpoint %d; %d windows, %d lines, %d duplicates", last, len(want), got.Lines, got.Dups)
		})
	}
}

// TestStopTakesFinalCheckpoint checks the README's "SIGTERM = final
// checkpoint then exit": in exactly_once mode results are staged until a
// checkpoint completes, so without a last checkpoint every result since
// the previous one would stay unpublished until eddy runs again, which on
// an appliance being shut down may be never. With a long interval (no
// periodic checkpoint) the windows the published readings closed must be
// in the results file once eddy has exited.
func TestStopTakesFinalCheckpoint(t *testing.T) {
	c := restartConfig()
	c.Interval = "1h" // no periodic checkpoint during the test
	e, _, _, body, half := firstHalf(t, 32, c)
	part := body[:half]
	next := e.Overview().Ingest[0].NextOffset
	e.Stop()

	var rs []simulate.Reading
	maxTS := int64(0)
	for _, m := range part {
		rs = append(rs, m.Readings...)
		for _, r := range m.Readings {
			maxTS = max(maxTS, r.TS)
		}
	}
	want := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(maxTS, restartOOO))
	got := e.readResults("per_device", []string{"site", "device"})
	ids := completedCheckpoints(e.Path("checkpoints"))
	final := "none"
	if len(ids) > 0 {
		md := readMetadata(t, filepath.Join(e.Path("checkpoints"), fmt.Sprintf("chk-%d", ids[len(ids)-1]), "_metadata"))
		final = fmt.Sprintf("chk-%d at offset %d", md.ID, md.Sources["readings"].Offset)
	}
	if n := got.Missing(want); n > 0 {
		t.Errorf("after SIGTERM, %d of the %d windows closed before the stop are not in the results file; newest checkpoint: %s, ingest log end %d",
			n, len(want), final, next)
	}
}

// TestCorruptCheckpointFallsBack damages the newest checkpoint while eddy
// is stopped: on restart it says the checkpoint failed verification, moves
// it aside as chk-N.broken, restores the previous one, and the results are
// still exact.
func TestCorruptCheckpointFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(t *testing.T, chk string)
	}{
		{"sst byte flipped", flipSSTByte},
		{"metadata truncated", func(t *testing.T, chk string) {
			p := filepath.Join(chk, "_metadata")
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f, s, body, half := firstHalf(t, 33, restartConfig())
			e.Trigger()
			e.Trigger()
			e.Stop()

			ids := completedCheckpoints(e.Path("checkpoints"))
			if len(ids) < 2 {
				t.Fatalf("want two checkpoints to choose from, have %v", ids)
			}
			bad, prev := ids[len(ids)-1], ids[len(ids)-2]
			chk := filepath.Join(e.Path("checkpoints"), fmt.Sprintf("chk-%d", bad))
			tc.corrupt(t, chk)

			e.StartReady()
			e.WaitFor(fmt.Sprintf("checkpoint %d to be restored", prev), resultsTimeout, func() bool {
				var o pipeline.CheckpointsOverview
				return e.GetJSON("/api/v1/checkpoints", &o) == nil && o.Latest.Restored != nil && o.Latest.Restored.ID == prev
			})
			if o := e.Checkpoints(); o.Counts.Restored != 1 {
				t.Errorf("counts.restored = %d, want 1", o.Counts.Restored)
			}
			matches, _ := filepath.Glob(chk + ".broken*")
			if len(matches) == 0 {
				t.Errorf("chk-%d was not moved aside as chk-%d.broken", bad, bad)
			}
			if _, err := os.Stat(chk); err == nil {
				t.Errorf("%s is still there", chk)
			}
			// An error a person can act on: which checkpoint, and that it
			// failed verification (when _metadata is read) or is corrupt
			// (when the SST checksums are checked, after the restore began).
			said := false
			for _, l := range e.Logs() {
				r := l.Attr
				msg := l.Msg()
				id, _ := r["checkpoint"].(float64)
				if r["level"] == "ERROR" && int64(id) == bad && (strings.Contains(msg, "failed verification") || strings.Contains(msg, "corrupt")) {
					said = true
				}
			}
			if !said {
				t.Errorf("the log has no error saying that checkpoint %d failed verification", bad)
			}

			f.MustSend(t, body[half:])
			f.MustSend(t, s.end())
			want := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(s.endTS, restartOOO))
			got := e.waitResults("per_device", []string{"site", "device"}, want)
			compareResults(t, "results", got, want, windowAggs)
			t.Logf("chk-%d damaged, chk-%d restored; %d windows, %d lines, %d duplicates", bad, prev, len(want), got.Lines, got.Dups)
		})
	}
}

// flipSSTByte flips one byte in the middle of the largest SST of a keyed
// task in checkpoint directory chk. The file is rewritten under its name
// (not in place) so that its hard links in older checkpoints stay intact.
func flipSSTByte(t *testing.T, chk string) {
	t.Helper()
	ssts, _ := filepath.Glob(filepath.Join(chk, "per_device-*", "*.sst"))
	if len(ssts) == 0 {
		t.Fatalf("no SST in %s", chk)
	}
	var path string
	var size int64
	for _, p := range ssts {
		if fi, err := os.Stat(p); err == nil && fi.Size() > size {
			path, size = p, fi.Size()
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/3] ^= 0xff
	tmp := path + ".flip"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	t.Logf("flipped byte %d of %s (%d bytes)", len(data)/3, path, len(data))
}

// TestResultFileTornTail: a crash while a batch of results is being
// written (FileSink.Write hands lines to the kernel through a 256 KiB
// bufio.Writer, so a large batch takes several write(2) calls), or a power
// cut before the fsync, leaves the results file ending in a partial line.
// The next start must cut it off (STYLE.md: "tell a torn tail (truncate it)
// from corruption") rather than glue its first result onto the fragment;
// the torn result's checkpoint was not marked published, so it is written
// again. The test stops eddy, leaves such a torn line and restarts it:
// every line must be a whole result and every window present.
func TestResultFileTornTail(t *testing.T) {
	e, f, s, body, half := firstHalf(t, 34, restartConfig())
	e.quiesce()
	e.Stop()

	const torn = `{"id":"e2e:per_device:site-1|dev-0001:17487792`
	fh, err := os.OpenFile(e.Path("results.jsonl"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteString(torn); err != nil {
		t.Fatal(err)
	}
	fh.Close()

	e.StartReady()
	f.MustSend(t, body[half:])
	f.MustSend(t, s.end())
	want := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(s.endTS, restartOOO))
	got := e.waitResults("per_device", []string{"site", "device"}, want)
	compareResults(t, "results", got, want, windowAggs)
}

// TestRescaleOnRestart stops eddy and restarts it with another
// parallelism (through EDDY_PIPELINE_PARALLELISM, which overrides the
// file): the state is redistributed by key group and the results over
// both runs are exact. A changed max_parallelism is refused with an error
// that names it.
func TestRescaleOnRestart(t *testing.T) {
	for _, tc := range []struct{ from, to int }{{2, 3}, {3, 1}} {
		t.Run(fmt.Sprintf("%d to %d", tc.from, tc.to), func(t *testing.T) {
			c := restartConfig()
			c.Parallelism, c.MaxParallelism = tc.from, 64
			e, f, s, body, half := firstHalf(t, 35+int64(tc.to), c)
			e.Trigger()
			e.Stop()

			e.StartReady(fmt.Sprintf("EDDY_PIPELINE_PARALLELISM=%d", tc.to))
			if o := e.Checkpoints(); o.Counts.Restored != 1 {
				t.Errorf("counts.restored = %d after the restart, want 1", o.Counts.Restored)
			}
			f.MustSend(t, body[half:])
			f.MustSend(t, s.end())
			want := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(s.endTS, restartOOO))
			got := e.waitResults("per_device", []string{"site", "device"}, want)
			compareResults(t, "results", got, want, windowAggs)
			checkKeyGroups(t, e, tc.to, 64)
			e.Stop()

			// max_parallelism is fixed for the life of the state.
			p := e.Start("EDDY_PIPELINE_MAX_PARALLELISM=32", fmt.Sprintf("EDDY_PIPELINE_PARALLELISM=%d", tc.to))
			if !e.WaitExit(exitTimeout) {
				e.Kill()
				t.Fatalf("eddy runs with max_parallelism changed from 64 to 32")
			}
			if p.ExitErr() == nil {
				t.Errorf("eddy exited 0 with max_parallelism changed")
			}
			if log := eddytest.Tail(p.LogPath, 20); !strings.Contains(log, "max_parallelism") {
				t.Errorf("the error does not name max_parallelism:\n%s", log)
			}
		})
	}
}
