package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/keygroup"
	"github.com/eddy-stream/eddy/test/oracle"
)

// withChannelState returns the completed checkpoints whose keyed subtasks
// stored in-flight batches.
func withChannelState(store *checkpoint.Store) []*checkpoint.Metadata {
	ids, _ := store.Completed()
	var out []*checkpoint.Metadata
	for _, id := range ids {
		md, err := store.Load(id)
		if err != nil {
			continue
		}
		for _, ts := range md.Tasks {
			if slices.ContainsFunc(ts.Files, func(f checkpoint.File) bool { return f.Name == channelStateFile }) {
				out = append(out, md)
				break
			}
		}
	}
	return out
}

// TestUnalignedRestore: a keyed stage slower than its input (BatchCost,
// tiny channels), unaligned checkpoints; the job is stopped once a
// checkpoint holds in-flight data, restored from that checkpoint at the same
// or another parallelism, and the results are exactly the oracle's: the
// in-flight batches went to the subtasks that own their key groups, once.
func TestUnalignedRestore(t *testing.T) {
	for _, tc := range []struct {
		name     string
		from, to int
		timeout  time.Duration
	}{
		{"3 to 3", 3, 3, 0},
		{"3 to 2", 3, 2, 0},
		{"2 to 5", 2, 5, 0},
		{"aligned timeout 3 to 4", 3, 4, time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, true)
			rs := genReadings(6000, 13, 21)
			h.appendReadings(rs[:4000])
			w := WindowSpec{Type: "tumbling", Size: 5 * time.Second}
			mk := func(p int) JobSpec {
				s := h.spec(p, w)
				s.Checkpointing.Unaligned, s.Checkpointing.AlignedTimeout = true, tc.timeout
				s.Checkpointing.NumRetained = 1000
				s.Sources[0].Parallelism = 2
				return s
			}
			old := mk(tc.from)
			old.BatchCost, old.ChannelCapacity = 2*time.Millisecond, 2
			h.run(old, func() bool { return len(withChannelState(h.store)) > 0 })
			md := withChannelState(h.store)[0]
			h.appendReadings(rs[4000:])
			end := endMarker(rs[len(rs)-1].ts + 3_600_000)
			h.appendReadings([]reading{end})
			spec := mk(tc.to)
			spec.Restore = md
			want := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 5000}, testAggs, end.ts-2000)
			job := h.run(spec, func() bool { return len(finals(t, h.out.snapshot())) >= len(want) })
			compare(t, finals(t, h.out.snapshot()), want)
			if o := job.Stats().Overview(); o.Counts.Completed == 0 {
				t.Errorf("no checkpoint after the restore: %+v", o.Counts)
			}
		})
	}
}

// TestUnalignedStatistics: under back-pressure an unaligned checkpoint says
// so and reports the in-flight bytes it persisted.
func TestUnalignedStatistics(t *testing.T) {
	h := newHarness(t, true)
	h.appendReadings(genReadings(4000, 13, 5))
	spec := h.spec(2, WindowSpec{Type: "tumbling", Size: 5 * time.Second})
	spec.Checkpointing.Unaligned, spec.Checkpointing.History = true, 1000
	spec.BatchCost, spec.ChannelCapacity = 2*time.Millisecond, 2
	job := h.run(spec, func() bool { return len(withChannelState(h.store)) > 0 })
	var c *CheckpointStats
	for _, x := range job.Stats().Overview().History {
		if x.Status == StatusCompleted && x.PersistedData > 0 {
			c = x
			break
		}
	}
	if c == nil {
		t.Fatalf("no completed checkpoint with persisted data in %+v", job.Stats().Overview().History)
	}
	if c.CheckpointType != "UNALIGNED_CHECKPOINT" || c.ProcessedData < c.PersistedData {
		t.Errorf("checkpoint %d: type %s, processed %d, persisted %d", c.ID, c.CheckpointType, c.ProcessedData, c.PersistedData)
	}
	d, _ := job.Stats().Details(c.ID)
	var persisted int64
	for _, s := range d.Tasks["win"].Subtasks {
		if !s.Unaligned {
			t.Errorf("subtask %s not unaligned", s.Task)
		}
		persisted += s.Alignment.Persisted
	}
	if persisted != c.PersistedData || d.Tasks["win"].PersistedData != persisted {
		t.Errorf("persisted: subtasks %d, task %d, checkpoint %d", persisted, d.Tasks["win"].PersistedData, c.PersistedData)
	}
}

func TestChannelStateFile(t *testing.T) {
	dir := t.TempDir()
	cs := newChanState()
	b1 := &batch{events: []event{{kg: 3, key: "a", ts: 10, src: srcPos{"s", 7}}, {kg: 90, key: "bb", ts: 11}}, vals: []float64{1, 2, 3, 4}}
	b2 := &batch{events: []event{{kg: 100, key: "c", ts: 12, src: srcPos{"s", 9}}}, vals: []float64{5, 6}}
	cs.add(1, b1, 2)
	cs.addWatermark(0, 1234, false)
	cs.add(0, b2, 2)
	cs.addWatermark(1, 99, true)
	if err := cs.write(fileutil.OSFS{}, dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, channelStateFile)
	all, err := readChanState(fileutil.OSFS{}, path, keygroup.Range{Start: 0, End: 127})
	if err != nil || len(all) != 4 || all[0].in != 1 || len(all[0].b.events) != 2 || all[2].b.events[0].key != "c" || all[0].b.vals[3] != 4 ||
		all[0].b.events[0].src != (srcPos{"s", 7}) ||
		all[1] != (flight{kind: flightWatermark, in: 0, wm: 1234}) || all[3] != (flight{kind: flightIdle, in: 1, wm: 99}) {
		t.Fatalf("read back: %+v %v", all, err)
	}
	// Key groups 0-63: b1 keeps one event, b2 none (dropped); watermarks stay in order.
	part, err := readChanState(fileutil.OSFS{}, path, keygroup.Range{Start: 0, End: 63})
	if err != nil || len(part) != 3 || len(part[0].b.events) != 1 || part[0].b.events[0].kg != 3 || !slices.Equal(part[0].b.vals, []float64{1, 2}) ||
		part[1].wm != 1234 || part[2].kind != flightIdle {
		t.Fatalf("key groups 0-63: %+v %v", part, err)
	}
	if bs, err := readChanState(fileutil.OSFS{}, filepath.Join(dir, "nope"), keygroup.Range{End: 127}); bs != nil || err != nil {
		t.Fatalf("missing file: %v %v", bs, err)
	}
	good, _ := os.ReadFile(path)
	for _, c := range []struct {
		name   string
		damage func([]byte) []byte
		offset int64
	}{
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, 0},
		{"flipped event byte", func(b []byte) []byte { b[len(chanMagic)+frameHeader+10] ^= 1; return b }, int64(len(chanMagic))},
		{"truncated frame", func(b []byte) []byte { return b[:len(chanMagic)+frameHeader+5] }, int64(len(chanMagic))},
		{"no end frame", func(b []byte) []byte { return b[:len(b)-frameHeader] }, int64(len(good) - frameHeader)},
		{"trailing bytes", func(b []byte) []byte { return append(b, 0) }, int64(len(good))},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), channelStateFile)
			if err := os.WriteFile(p, c.damage(slices.Clone(good)), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := readChanState(fileutil.OSFS{}, p, keygroup.Range{End: 127})
			var ce *fileutil.CorruptionError
			if !errors.As(err, &ce) || ce.Path != p || ce.Offset != c.offset {
				t.Fatalf("got %v, want a corruption of %s at byte %d", err, p, c.offset)
			}
			if want := fmt.Sprintf("corrupt file %s at byte %d", p, c.offset); err.Error()[:len(want)] != want {
				t.Errorf("message %q", err)
			}
		})
	}
}

// TestAlignedTimeoutNotReached: with an aligned_timeout that is never
// reached, checkpoints under back-pressure stay aligned.
func TestAlignedTimeoutNotReached(t *testing.T) {
	h := newHarness(t, true)
	h.appendReadings(genReadings(4000, 13, 5))
	spec := h.spec(2, WindowSpec{Type: "tumbling", Size: 5 * time.Second})
	spec.Checkpointing.Unaligned, spec.Checkpointing.AlignedTimeout = true, time.Hour
	spec.Checkpointing.History, spec.Checkpointing.NumRetained = 1000, 1000
	spec.Sources[0].Parallelism = 2
	spec.BatchCost, spec.ChannelCapacity = 2*time.Millisecond, 2
	job := h.run(spec, func() bool { ids, _ := h.store.Completed(); return len(ids) >= 3 })
	if n := len(withChannelState(h.store)); n > 0 {
		t.Errorf("%d checkpoints stored in-flight data", n)
	}
	for _, c := range job.Stats().Overview().History {
		if c.Status == StatusCompleted && (c.CheckpointType != "CHECKPOINT" || c.PersistedData != 0) {
			t.Errorf("checkpoint %d: type %s, persisted %d", c.ID, c.CheckpointType, c.PersistedData)
		}
	}
}
