package sink

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/ingestlog"
)

func epochOut(id int64, n int) Epoch {
	e := Epoch{ID: id}
	for i := range n {
		e.Outputs = append(e.Outputs, Output{Topic: "t", ID: fmt.Sprintf("r%d-%d", id, i), Payload: []byte(fmt.Sprintf(`{"v":%d}`, i))})
	}
	return e
}

func openSpool(t *testing.T, o SpoolOptions, restored int64) (*Spool, int64) {
	t.Helper()
	s, d, err := OpenSpool(o, restored)
	if err != nil {
		t.Fatal(err)
	}
	return s, d
}

// readAll publishes everything in s and returns the ids, confirming.
func readAll(t *testing.T, s *Spool, confirm bool) (ids []string, upTo int64) {
	t.Helper()
	upTo = -1
	for {
		b, err := s.Read(100)
		if err != nil {
			t.Fatal(err)
		}
		if b.UpTo < 0 {
			return ids, upTo
		}
		for _, o := range b.Outputs {
			ids = append(ids, o.ID)
		}
		upTo = b.UpTo
		if !confirm {
			return ids, upTo
		}
		if err := s.Confirm(b); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSpoolAppendReadConfirmReopen(t *testing.T) {
	o := SpoolOptions{Dir: t.TempDir(), MaxSize: 1 << 10, SegmentSize: 512}
	s, d := openSpool(t, o, -1)
	if d != -1 {
		t.Fatalf("dedupe %d on an empty spool", d)
	}
	for id := int64(1); id <= 5; id++ {
		if err := s.Append(id, []Epoch{epochOut(id, 10)}); err != nil {
			t.Fatal(err)
		}
	}
	if !s.Full() || s.Spooled() != 5 {
		t.Fatalf("full %v (size %d), spooled %d", s.Full(), s.Size(), s.Spooled())
	}
	b, err := s.Read(1)
	if err != nil || b.UpTo != 1 || len(b.Outputs) != 10 || b.Outputs[3].ID != "r1-3" || string(b.Outputs[3].Payload) != `{"v":3}` {
		t.Fatalf("first batch %+v %v", b, err)
	}
	if err := s.Confirm(b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Restored from checkpoint 5: nothing cut, epochs <= 5 not staged again.
	s, d = openSpool(t, o, 5)
	if d != 5 || s.Confirmed() != 1 {
		t.Fatalf("dedupe %d, confirmed %d", d, s.Confirmed())
	}
	ids, upTo := readAll(t, s, true)
	if len(ids) != 40 || ids[0] != "r2-0" || upTo != 5 {
		t.Fatalf("after reopen read %d ids from %v, up to %d", len(ids), ids[:1], upTo)
	}
	if s.Full() {
		t.Fatalf("still full after draining: %d bytes", s.Size())
	}
	s.Close()
}

// A restore from an older checkpoint cuts the newer batches off, keeps
// the confirmed position at or below the end, and dedupes only what is
// left or published.
func TestSpoolRestoreOlderCutsNewer(t *testing.T) {
	o := SpoolOptions{Dir: t.TempDir(), MaxSize: 1 << 20, SegmentSize: 512}
	s, _ := openSpool(t, o, -1)
	s.Append(2, []Epoch{epochOut(1, 3), epochOut(2, 3)})
	s.Append(5, []Epoch{epochOut(3, 3), epochOut(5, 3)})
	s.Append(7, []Epoch{epochOut(7, 3)})
	s.Close()
	s, d := openSpool(t, o, 4) // checkpoint 4 restored: batch 5 (holding 3) is void
	if d != 2 {
		t.Fatalf("dedupe %d, want 2: epoch 3 is not in the spool any more", d)
	}
	ids, upTo := readAll(t, s, true)
	if len(ids) != 6 || upTo != 2 {
		t.Fatalf("read %v up to %d", ids, upTo)
	}
	s.Append(4, []Epoch{epochOut(3, 1), epochOut(4, 1)})
	ids, upTo = readAll(t, s, true)
	if len(ids) != 2 || ids[0] != "r3-0" || upTo != 4 {
		t.Fatalf("after re-append read %v up to %d", ids, upTo)
	}
	s.Close()
	// Published beyond the restored checkpoint: clamped, everything <= 3 published.
	s, _ = openSpool(t, o, 10)
	s.Append(9, []Epoch{epochOut(9, 2)})
	readAll(t, s, true)
	s.Close()
	s, d = openSpool(t, o, 6)
	if d != 6 || s.Confirmed() != 6 {
		t.Fatalf("dedupe %d confirmed %d, want 6 6", d, s.Confirmed())
	}
	s.Append(8, []Epoch{epochOut(8, 1)})
	if ids, _ := readAll(t, s, true); len(ids) != 1 || ids[0] != "r8-0" {
		t.Fatalf("after clamp read %v", ids)
	}
	s.Close()
}

// A batch without its mark (a crash in Append) is cut off on open.
func TestSpoolTornBatch(t *testing.T) {
	o := SpoolOptions{Dir: t.TempDir(), MaxSize: 1 << 20, SegmentSize: 300}
	s, _ := openSpool(t, o, -1)
	s.Append(1, []Epoch{epochOut(1, 2)})
	s.Close()
	l, err := ingestlog.Open(o.logOptions())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 { // across segments, no mark
		l.Append(&ingestlog.Record{Timestamp: 2, Topic: "t", Payload: append([]byte{spoolOutput, 1, 'x'}, fmt.Sprint(i)...)})
	}
	l.Close()
	s, d := openSpool(t, o, 2)
	if d != 1 {
		t.Fatalf("dedupe %d, want 1", d)
	}
	if ids, upTo := readAll(t, s, true); len(ids) != 2 || upTo != 1 {
		t.Fatalf("read %v up to %d", ids, upTo)
	}
	s.Close()
}

func TestSpoolCorruptFrame(t *testing.T) {
	o := SpoolOptions{Dir: t.TempDir(), MaxSize: 1 << 20, SegmentSize: 300}
	s, _ := openSpool(t, o, -1)
	for id := int64(1); id <= 4; id++ {
		s.Append(id, []Epoch{epochOut(id, 5)})
	}
	s.Close()
	seg := filepath.Join(o.Dir, spoolLogDir, fmt.Sprintf("%020d.seg", 0))
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data[40] ^= 0xff // inside the body of a record of a sealed segment
	os.WriteFile(seg, data, 0o644)
	s, _, err = OpenSpool(o, 4)
	ce, ok := errors.AsType[*fileutil.CorruptionError](err)
	if !ok || ce.Path != seg || ce.Offset <= 0 {
		t.Fatalf("open of a damaged spool: %v (%T), want a CorruptionError naming %s and an offset", err, err, seg)
	}
	if s != nil {
		s.Close()
	}
}

// TestSpoolCrash cuts the power after every file-system operation of
// appending, publishing and reopening, and checks on what survived that
// every batch whose Append returned is there or was confirmed, nothing
// half a batch is read, and nothing confirmed is read again.
func TestSpoolCrash(t *testing.T) {
	o := func(fsys fileutil.FS) SpoolOptions {
		return SpoolOptions{Dir: "/data/spool/cloud", MaxSize: 1 << 20, SegmentSize: 256, FS: fsys}
	}
	type step struct {
		ops       int
		spooled   int64 // Append returned for this epoch
		confirmed int64 // Confirm returned for this mark
	}
	workload := func(fsys *fileutil.CrashFS, steps *[]step) {
		s, _, err := OpenSpool(o(fsys), -1)
		if err != nil {
			t.Fatal(err)
		}
		var conf int64 = -1
		for id := int64(1); id <= 8; id++ {
			if err := s.Append(id, []Epoch{epochOut(id, 4)}); err != nil {
				t.Fatal(err)
			}
			*steps = append(*steps, step{fsys.Ops(), id, conf})
			if id%3 == 0 {
				b, err := s.Read(1)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Confirm(b); err != nil {
					t.Fatal(err)
				}
				conf = b.UpTo
				*steps = append(*steps, step{fsys.Ops(), id, conf})
			}
		}
		s.Close()
	}
	full := fileutil.NewCrashFS()
	var steps []step
	workload(full, &steps)
	total := full.Ops()
	for n := 1; n <= total; n++ {
		fsys := fileutil.NewCrashFS()
		fsys.CrashAfter(n)
		var st []step
		workload(fsys, &st)
		img := fsys.Crashed()
		if img == nil {
			t.Fatalf("crash %d: no image", n)
		}
		want := step{spooled: -1, confirmed: -1}
		for _, s := range st {
			if s.ops <= n {
				want = s
			}
		}
		s, d, err := OpenSpool(o(img), 100) // restore: a newer checkpoint than all
		if err != nil {
			t.Fatalf("crash after op %d: reopen: %v", n, err)
		}
		if d < want.spooled {
			t.Errorf("crash after op %d: dedupe %d, but Append(%d) had returned", n, d, want.spooled)
		}
		if s.Confirmed() < want.confirmed {
			t.Errorf("crash after op %d: confirmed %d, Confirm(%d) had returned", n, s.Confirmed(), want.confirmed)
		}
		c0 := s.Confirmed()
		ids, upTo := readAll(t, s, true)
		if len(ids)%4 != 0 || (upTo >= 0 && upTo < want.spooled) {
			t.Errorf("crash after op %d: read %d ids up to %d, want whole batches up to at least %d", n, len(ids), upTo, want.spooled)
		}
		if first := fmt.Sprintf("r%d-0", max(c0+1, 1)); len(ids) > 0 && ids[0] != first {
			t.Errorf("crash after op %d: first unconfirmed id %s, want %s (confirmed %d)", n, ids[0], first, c0)
		}
		s.Close()
	}
}
