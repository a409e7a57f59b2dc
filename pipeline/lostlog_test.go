package pipeline

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/storage/ingestlog"
	"github.com/eddy-stream/eddy/test/oracle"
)

// TestRestoreOntoLostLog: a checkpoint restored with a new, empty ingest
// log (the disk was replaced and the state came from remote) starts the
// source at the new log's beginning when JobSpec.LostLogs names it, reports
// what was lost, and counts exactly the readings of both logs that a
// checkpoint or the new log hold.
func TestRestoreOntoLostLog(t *testing.T) {
	h := newHarness(t, true)
	rs := genReadings(4000, 7, 5)
	h.appendReadings(rs[:2000])
	w := WindowSpec{Type: "tumbling", Size: 5 * time.Second}
	h.run(h.spec(2, w), func() bool {
		ids, _ := h.store.Completed()
		return len(ids) >= 3 && len(h.out.snapshot()) > 0
	})
	md, _, err := h.store.Latest(true)
	if err != nil || md == nil {
		t.Fatalf("latest: %v %v", md, err)
	}
	off := md.Sources["readings"].Offset
	if off == 0 {
		t.Fatal("checkpoint covers nothing")
	}

	// The old disk is gone: a new log, a new first run of the rest.
	newLog, err := ingestlog.Open(ingestlog.Options{Dir: filepath.Join(t.TempDir(), "ingest"), SegmentSize: 1 << 20,
		MaxSize: 64 << 20, SyncInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	old := h.log // the harness's cleanup closes h.log
	t.Cleanup(func() { old.Close() })
	h.log = newLog
	h.appendReadings(rs[2000:])
	end := endMarker(rs[len(rs)-1].ts + 3_600_000)
	h.appendReadings([]reading{end})
	spec := h.spec(2, w)
	spec.Restore = md
	spec.LostLogs = map[string]bool{"readings": true}
	kept := append(append([]reading(nil), rs[:off]...), rs[2000:]...)
	want := oracle.Compute(toOracle(kept), oracle.Window{Type: "tumbling", Size: 5000}, testAggs, end.ts-2000)
	job := h.run(spec, func() bool { return len(finals(t, h.out.snapshot())) >= len(want) })
	compare(t, finals(t, h.out.snapshot()), want)
	lost := job.LostLogs()
	if len(lost) != 1 || lost[0].Source != "readings" || lost[0].Checkpoint != md.ID ||
		lost[0].CheckpointOffset != off || lost[0].ResumedAt != 0 {
		t.Fatalf("lost logs %+v, want readings from offset %d of checkpoint %d", lost, off, md.ID)
	}
	if first := newLog.FirstOffset(); first != 0 {
		t.Fatalf("the new log was truncated to %d by the restored checkpoint's offsets", first)
	}
}
