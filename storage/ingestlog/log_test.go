package ingestlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/storage/fileutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testRecord returns the i-th record of a test stream, Offset unset.
func testRecord(i, payloadSize int) Record {
	p := fmt.Appendf(nil, `{"i":%d,"v":%d}`, i, i*i)
	for len(p) < payloadSize {
		p = append(p, byte('a'+(i+len(p))%26))
	}
	return Record{
		Timestamp: 1_700_000_000_000 + int64(i),
		Topic:     fmt.Sprintf("sensors/%d/temp", i%7),
		PacketID:  uint16(i),
		Dup:       i%5 == 0,
		QoS:       byte(i % 3),
		Payload:   p,
	}
}

func openLog(t testing.TB, dir string, mods ...func(*Options)) *Log {
	t.Helper()
	o := DefaultOptions(dir)
	o.ManualSync = true
	for _, m := range mods {
		m(&o)
	}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func segmentSize(n int64) func(*Options) {
	return func(o *Options) { o.SegmentSize, o.MaxSize = n, 1<<30 }
}

func appendN(t testing.TB, l *Log, from, n, payloadSize int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		r := testRecord(i, payloadSize)
		off, err := l.Append(&r)
		if err != nil {
			t.Fatal(err)
		}
		if off != uint64(i) || r.Offset != off {
			t.Fatalf("Append returned offset %d, record offset %d, want %d", off, r.Offset, i)
		}
	}
}

// readAll reads from offset from until ErrNoData and returns copies.
func readAll(t testing.TB, l *Log, from uint64) ([]Record, error) {
	t.Helper()
	r, err := l.NewReader(from)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []Record
	var rec Record
	for {
		err := r.Next(&rec)
		if errors.Is(err, ErrNoData) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		rec.Payload = slices.Clone(rec.Payload)
		out = append(out, rec)
	}
}

// checkRecords checks that got holds test records from, from+1, ...
func checkRecords(t testing.TB, got []Record, from, n, payloadSize int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("read %d records, want %d", len(got), n)
	}
	for i, r := range got {
		want := testRecord(from+i, payloadSize)
		want.Offset = uint64(from + i)
		if r.Offset != want.Offset || r.Timestamp != want.Timestamp || r.Topic != want.Topic ||
			r.PacketID != want.PacketID || r.Dup != want.Dup || r.QoS != want.QoS || !bytes.Equal(r.Payload, want.Payload) {
			t.Fatalf("record %d = %+v, want %+v", from+i, r, want)
		}
	}
}

func segments(t testing.TB, dir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// frames returns the byte offsets of the records in a segment file.
func frames(t testing.TB, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	var rec Record
	for p := 0; p < len(b); {
		n, err := decodeFrame(b[p:], &rec, nil)
		if err != nil {
			t.Fatalf("%s at %d: %v", path, p, err)
		}
		offs = append(offs, int64(p))
		p += n
	}
	return offs
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want []string
	}{
		{"default", func(*Options) {}, nil},
		{"no dir", func(o *Options) { o.Dir = "" }, []string{"Dir"}},
		{"max below two segments", func(o *Options) { o.MaxSize = o.SegmentSize }, []string{"MaxSize"}},
		{"all wrong", func(o *Options) { o.SegmentSize, o.SyncInterval = 0, -1 }, []string{"SegmentSize", "SyncInterval"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions("x")
			tc.mod(&o)
			err := o.Validate()
			if (err != nil) != (tc.want != nil) {
				t.Fatalf("err = %v, want errors naming %v", err, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, does not name %s", err, w)
				}
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name        string
		segmentSize int64
		n           int
		payloadSize int
		batch       bool
		minSegs     int
	}{
		{"one segment", 64 << 20, 1000, 150, false, 1},
		{"rolls", 4 << 10, 1000, 150, false, 30},
		{"batches with rolls", 4 << 10, 1000, 150, true, 30},
		{"record bigger than segment", 1 << 10, 20, 3000, false, 20},
		{"record bigger than read buffer", 4 << 20, 5, 3 << 20, false, 5},
		{"empty payload", 1 << 10, 300, 0, false, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, segmentSize(tc.segmentSize))
			if tc.batch {
				for i := 0; i < tc.n; i += 64 {
					var rs []Record
					for j := i; j < min(i+64, tc.n); j++ {
						rs = append(rs, testRecord(j, tc.payloadSize))
					}
					last, err := l.AppendBatch(rs)
					if err != nil {
						t.Fatal(err)
					}
					if want := uint64(i + len(rs) - 1); last != want || rs[len(rs)-1].Offset != want {
						t.Fatalf("AppendBatch returned %d, want %d", last, want)
					}
				}
			} else {
				appendN(t, l, 0, tc.n, tc.payloadSize)
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			if got := len(segments(t, dir)); got < tc.minSegs {
				t.Errorf("%d segments, want at least %d", got, tc.minSegs)
			}
			if l.SyncedOffset() != uint64(tc.n) || l.NextOffset() != uint64(tc.n) {
				t.Errorf("SyncedOffset %d, NextOffset %d, want %d", l.SyncedOffset(), l.NextOffset(), tc.n)
			}
			for _, from := range []int{0, tc.n / 3, tc.n - 1, tc.n} {
				got, err := readAll(t, l, uint64(from))
				if err != nil {
					t.Fatal(err)
				}
				checkRecords(t, got, from, tc.n-from, tc.payloadSize)
			}
		})
	}
}

func TestReaderSeesOnlySyncedRecords(t *testing.T) {
	l := openLog(t, t.TempDir(), segmentSize(1<<10))
	r, err := l.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var rec Record
	read := func(want int) {
		t.Helper()
		for i := range want {
			if err := r.Next(&rec); err != nil {
				t.Fatalf("record %d of %d: %v", i, want, err)
			}
		}
		if err := r.Next(&rec); !errors.Is(err, ErrNoData) {
			t.Fatalf("after %d records: err = %v, want ErrNoData", want, err)
		}
	}
	read(0)
	appendN(t, l, 0, 10, 50)
	read(0)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	read(10)
	appendN(t, l, 10, 100, 50) // rolls several segments, none synced
	if l.SyncedOffset() != 10 {
		t.Fatalf("SyncedOffset = %d, want 10", l.SyncedOffset())
	}
	read(0)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	read(100)
	if r.Offset() != 110 {
		t.Errorf("Offset() = %d, want 110", r.Offset())
	}
}

func TestNotifyWakesReader(t *testing.T) {
	l := openLog(t, t.TempDir(), func(o *Options) { o.SyncInterval, o.ManualSync = time.Millisecond, false })
	synced := make(chan uint64, 100)
	l.OnSync(func(next uint64) { synced <- next })
	r, err := l.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	got := make(chan error)
	go func() {
		var rec Record
		if err := r.Wait(context.Background()); err != nil {
			got <- err
			return
		}
		got <- r.Next(&rec)
	}()
	select {
	case err := <-got:
		t.Fatalf("Wait returned %v before any append", err)
	case <-time.After(20 * time.Millisecond):
	}
	appendN(t, l, 0, 1, 10) // no Sync: the group commit makes it durable
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reader not woken by the group commit")
	}
	select {
	case next := <-synced:
		if next != 1 {
			t.Errorf("OnSync called with %d, want 1", next)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnSync not called")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := r.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with nothing new = %v, want DeadlineExceeded", err)
	}
	go func() { got <- r.Wait(context.Background()) }()
	time.Sleep(5 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Errorf("Wait across Close = %v, want ErrClosed", err)
	}
	var rec Record
	if err := r.Next(&rec); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Close = %v, want ErrClosed", err)
	}
}

func TestReopenContinuesOffsets(t *testing.T) {
	dir := t.TempDir()
	for round := range 3 {
		l := openLog(t, dir, segmentSize(2<<10))
		if l.NextOffset() != uint64(round*50) || l.SyncedOffset() != l.NextOffset() {
			t.Fatalf("round %d: NextOffset %d, SyncedOffset %d, want %d", round, l.NextOffset(), l.SyncedOffset(), round*50)
		}
		appendN(t, l, round*50, 50, 100)
		if err := l.Close(); err != nil { // Close syncs
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := l.Append(&Record{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Append after Close = %v, want ErrClosed", err)
		}
	}
	l := openLog(t, dir, segmentSize(2<<10))
	got, err := readAll(t, l, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, got, 0, 150, 100)
}

func TestTruncateFront(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, segmentSize(1<<10))
	appendN(t, l, 0, 100, 50)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	lagging, err := l.NewReader(0) // will find its next segment removed
	if err != nil {
		t.Fatal(err)
	}
	defer lagging.Close()
	inside, err := l.NewReader(40) // will read its removed segment to the end
	if err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	var rec Record
	if err := inside.Next(&rec); err != nil || rec.Offset != 40 {
		t.Fatalf("Next = %v, offset %d", err, rec.Offset)
	}
	sizeBefore, segsBefore := l.Size(), len(segments(t, dir))

	if err := l.TruncateFront(50); err != nil {
		t.Fatal(err)
	}
	first := l.FirstOffset()
	if first == 0 || first > 50 {
		t.Fatalf("FirstOffset = %d, want in (0, 50]", first)
	}
	if l.Size() >= sizeBefore || len(segments(t, dir)) >= segsBefore {
		t.Errorf("Size %d → %d, segments %d → %d: nothing freed", sizeBefore, l.Size(), segsBefore, len(segments(t, dir)))
	}
	if _, err := l.NewReader(first - 1); !errors.Is(err, ErrOffsetTruncated) {
		t.Errorf("NewReader(%d) = %v, want ErrOffsetTruncated", first-1, err)
	}
	if _, err := l.NewReader(101); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Errorf("NewReader(101) = %v, want ErrOffsetOutOfRange", err)
	}
	got, err := readAll(t, l, first)
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, got, int(first), 100-int(first), 50)

	for i := 41; i < 100; i++ {
		if err := inside.Next(&rec); err != nil || rec.Offset != uint64(i) {
			t.Fatalf("reader inside removed segment: Next = %v, offset %d, want %d", err, rec.Offset, i)
		}
	}
	for err = nil; err == nil; err = lagging.Next(&rec) {
	}
	if !errors.Is(err, ErrOffsetTruncated) {
		t.Errorf("lagging reader: err = %v, want ErrOffsetTruncated", err)
	}

	if err := l.TruncateFront(1000); err != nil {
		t.Fatal(err)
	}
	if n := len(segments(t, dir)); n != 1 {
		t.Errorf("%d segments after truncating everything, want the active one", n)
	}
	appendN(t, l, 100, 5, 50)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, segmentSize(1<<10))
	got, err = readAll(t, l, l.FirstOffset())
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, got, int(l.FirstOffset()), 105-int(l.FirstOffset()), 50)
}

func TestFull(t *testing.T) {
	l := openLog(t, t.TempDir(), func(o *Options) { o.SegmentSize, o.MaxSize = 1<<10, 4<<10 })
	n := 0
	for ; ; n++ {
		r := testRecord(n, 100)
		_, err := l.Append(&r)
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if l.Size() < 4<<10 || l.NextOffset() != uint64(n) {
		t.Fatalf("full at Size %d, NextOffset %d after %d appends", l.Size(), l.NextOffset(), n)
	}
	if _, err := l.AppendBatch([]Record{testRecord(n, 100)}); !errors.Is(err, ErrFull) {
		t.Fatalf("AppendBatch when full = %v, want ErrFull", err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateFront(uint64(n)); err != nil {
		t.Fatal(err)
	}
	if l.Size() >= 4<<10 {
		t.Fatalf("Size %d after TruncateFront, still full", l.Size())
	}
	appendN(t, l, n, 3, 100)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	first := int(l.FirstOffset())
	got, err := readAll(t, l, uint64(first))
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, got, first, n+3-first, 100)
}

// writeTemplate writes n records in 1 KiB segments and returns the dir.
func writeTemplate(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	l := openLog(t, dir, segmentSize(1<<10))
	appendN(t, l, 0, n, 60)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "log")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestTornTail cuts or damages the last record at every byte; each must
// be treated as a torn write: cut off, logged, and appending goes on.
func TestTornTail(t *testing.T) {
	const n = 40
	tmpl := writeTemplate(t, n)
	segs := segments(t, tmpl)
	last := filepath.Base(segs[len(segs)-1])
	offs := frames(t, segs[len(segs)-1])
	start := offs[len(offs)-1]
	fi, err := os.Stat(segs[len(segs)-1])
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		damage func(path string, at int64) error
	}{
		{"cut", os.Truncate},
		{"flipped byte", func(path string, at int64) error { return flipByte(path, at) }},
		{"zeros appended", func(path string, at int64) error {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			_, err = f.Write(make([]byte, at-start+1))
			return errors.Join(err, f.Close())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for at := start; at < fi.Size(); at++ {
				dir := copyDir(t, tmpl)
				path := filepath.Join(dir, last)
				if err := tc.damage(path, at); err != nil {
					t.Fatal(err)
				}
				var logged bytes.Buffer
				l := openLog(t, dir, segmentSize(1<<10), func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logged, nil)) })
				want, cleanCut := n-1, tc.name == "cut" && at == start
				if tc.name == "zeros appended" {
					want = n
				}
				if l.NextOffset() != uint64(want) || l.SyncedOffset() != uint64(want) {
					t.Fatalf("damage at byte %d: NextOffset %d, SyncedOffset %d, want %d", at, l.NextOffset(), l.SyncedOffset(), want)
				}
				if !cleanCut && !strings.Contains(logged.String(), "torn tail") {
					t.Fatalf("damage at byte %d: torn tail not logged: %q", at, logged.String())
				}
				appendN(t, l, want, 1, 60)
				if err := l.Sync(); err != nil {
					t.Fatal(err)
				}
				got, err := readAll(t, l, 0)
				if err != nil {
					t.Fatalf("damage at byte %d: %v", at, err)
				}
				checkRecords(t, got, 0, want+1, 60)
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func flipByte(path string, at int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		return errors.Join(err, f.Close())
	}
	b[0] ^= 0x40
	_, err = f.WriteAt(b, at)
	return errors.Join(err, f.Close())
}

// TestCorruption damages a log in ways a torn write cannot, and checks
// that Open or a Reader reports a *fileutil.CorruptionError naming file and byte.
func TestCorruption(t *testing.T) {
	const n = 60
	tmpl := writeTemplate(t, n)
	if len(segments(t, tmpl)) < 5 {
		t.Fatal("template needs at least 5 segments")
	}
	for _, tc := range []struct {
		name string
		// corrupt damages the log whose segment files are segs and returns
		// the file and byte offset the error must name.
		corrupt func(t *testing.T, segs []string) (string, int64)
		atOpen  bool // reported by Open, else by a Reader
		wantErr string
	}{
		{"flipped body byte mid last segment", func(t *testing.T, segs []string) (string, int64) {
			return flip(t, segs[len(segs)-1], 1, headerSize+3)
		}, true, "checksum mismatch; an intact record follows"},
		{"flipped length mid last segment", func(t *testing.T, segs []string) (string, int64) {
			return flip(t, segs[len(segs)-1], 1, 1)
		}, true, "an intact record follows"},
		{"flipped checksum mid last segment", func(t *testing.T, segs []string) (string, int64) {
			return flip(t, segs[len(segs)-1], 1, 5)
		}, true, "checksum mismatch"},
		{"flipped byte in sealed segment", func(t *testing.T, segs []string) (string, int64) {
			return flip(t, segs[1], 2, headerSize+10)
		}, false, "checksum mismatch"},
		{"flipped byte in first record of sealed segment", func(t *testing.T, segs []string) (string, int64) {
			return flip(t, segs[2], 0, headerSize)
		}, true, "checksum mismatch"},
		{"sealed segment cut short", func(t *testing.T, segs []string) (string, int64) {
			offs := frames(t, segs[1])
			must(t, os.Truncate(segs[1], offs[len(offs)-1]+5))
			return segs[1], offs[len(offs)-1]
		}, false, "incomplete record"},
		{"sealed segment emptied", func(t *testing.T, segs []string) (string, int64) {
			must(t, os.Truncate(segs[2], 0))
			return segs[2], 0
		}, true, "empty"},
		{"segment missing", func(t *testing.T, segs []string) (string, int64) {
			must(t, os.Remove(segs[2]))
			return segs[3], 0
		}, false, "offset gap"},
		{"segment misnamed", func(t *testing.T, segs []string) (string, int64) {
			var base uint64
			fmt.Sscanf(filepath.Base(segs[2]), "%d.seg", &base)
			to := filepath.Join(filepath.Dir(segs[2]), fmt.Sprintf("%020d.seg", base+1))
			must(t, os.Rename(segs[2], to))
			return to, 0
		}, true, "record offset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, tmpl)
			path, off := tc.corrupt(t, segments(t, dir))
			l, err := Open(Options{Dir: dir, SegmentSize: 1 << 10, MaxSize: 1 << 30})
			if !tc.atOpen {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				_, err = readAll(t, l, 0)
				must(t, l.Close())
			}
			var ce *fileutil.CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want *fileutil.CorruptionError", err)
			}
			if ce.Path != path || ce.Offset != off || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v\nwant file %s, byte %d, %q", err, path, off, tc.wantErr)
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, fmt.Sprintf("byte %d", off)) {
				t.Errorf("message %q does not name file and byte", msg)
			}
		})
	}
}

// flip flips the byte at delta within record i of a segment and returns
// the segment and the record's byte offset.
func flip(t *testing.T, path string, i int, delta int64) (string, int64) {
	t.Helper()
	off := frames(t, path)[i]
	must(t, flipByte(path, off+delta))
	return path, off
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestFaults fails every file-system operation of a run in turn. Whatever
// fails, the log recovers by itself: an Append refused while it recovers
// is retried after a Sync, and at the end every one of the 200 records is
// durable, acknowledged and intact after reopening.
func TestFaults(t *testing.T) {
	for i := 0; ; i++ {
		dir := filepath.Join(t.TempDir(), "log")
		efs := fileutil.NewErrorFS(fileutil.OSFS{}, i)
		acked, err := runFaulty(t, dir, efs)
		if !efs.Injected() {
			if err != nil || acked != 200 {
				t.Fatalf("run without fault: acked %d, err %v", acked, err)
			}
			t.Logf("%d operations failed in turn", i)
			return
		}
		if err != nil && !errors.Is(err, fileutil.ErrInjected) {
			t.Fatalf("op %d: %v, want the injected error", i, err)
		}
		l := openLog(t, dir, segmentSize(2<<10))
		if l.NextOffset() < acked {
			t.Fatalf("op %d: reopened at %d, but %d records were acknowledged", i, l.NextOffset(), acked)
		}
		if err == nil && acked != 200 {
			t.Fatalf("op %d: run succeeded with %d records acknowledged, want 200", i, acked)
		}
		got, rerr := readAll(t, l, 0)
		if rerr != nil {
			t.Fatalf("op %d: %v", i, rerr)
		}
		checkRecords(t, got, 0, int(l.NextOffset()), 100)
		must(t, l.Close())
	}
}

// runFaulty appends and syncs 200 records through fs, retrying an Append
// refused while the log recovers after a Sync, and returns the durable
// offset acknowledged (OnSync) and the error of Open, if it failed.
func runFaulty(t *testing.T, dir string, fs fileutil.FS) (acked uint64, err error) {
	t.Helper()
	l, err := Open(Options{Dir: dir, SegmentSize: 2 << 10, MaxSize: 1 << 30, FS: fs, ManualSync: true})
	if err != nil {
		return 0, err
	}
	l.OnSync(func(next uint64) { acked = next })
	for i := 0; i < 200; {
		r := testRecord(i, 100)
		_, err := l.Append(&r)
		switch {
		case errors.Is(err, ErrUnavailable):
			if !slices.Contains(l.Paused(), PauseError) {
				t.Fatalf("Append refused with %v, but Paused() = %v", err, l.Paused())
			}
			if err := l.Sync(); err != nil && !errors.Is(err, fileutil.ErrInjected) {
				t.Fatalf("Sync: %v", err)
			}
			continue
		case err != nil:
			t.Fatalf("Append %d: %v", i, err)
		}
		i++
		if i%25 == 0 {
			if err := l.Sync(); err != nil && !errors.Is(err, fileutil.ErrInjected) {
				t.Fatalf("Sync: %v", err)
			}
		}
	}
	// One fault per run: if the last Sync failed, this one recovers.
	if err := l.Sync(); err != nil && !errors.Is(err, fileutil.ErrInjected) {
		t.Fatalf("Sync: %v", err)
	}
	if err := l.Close(); err != nil && !errors.Is(err, fileutil.ErrInjected) {
		t.Fatalf("Close: %v", err) // an injected close error after the last sync is fine
	}
	if acked != 200 {
		t.Fatalf("acknowledged %d of 200 records", acked)
	}
	return acked, nil
}

// TestConcurrent appends from several goroutines while a reader follows.
func TestConcurrent(t *testing.T) {
	const writers, each = 4, 2000
	l := openLog(t, t.TempDir(), segmentSize(64<<10), func(o *Options) { o.SyncInterval, o.ManualSync = time.Millisecond, false })
	r, err := l.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				rec := Record{Topic: fmt.Sprint(w), Payload: fmt.Append(nil, i)}
				if _, err := l.Append(&rec); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	next := make([]int, writers) // per writer, the sequence number expected next
	var rec Record
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for n := uint64(0); n < writers*each; n++ {
		err := r.Next(&rec)
		for errors.Is(err, ErrNoData) {
			if err = r.Wait(ctx); err == nil {
				err = r.Next(&rec)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		var w, i int
		fmt.Sscan(rec.Topic, &w)
		fmt.Sscan(string(rec.Payload), &i)
		if rec.Offset != n || i != next[w] {
			t.Fatalf("record %d: offset %d, writer %d sequence %d, want %d", n, rec.Offset, w, i, next[w])
		}
		next[w]++
	}
	wg.Wait()
}
