package ingestlog

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// eioFS fails the next failSyncs fsyncs of segment files with EIO and
// then behaves the way Linux does after a failed writeback: the dirty
// pages are gone (the file is cut back to what its last good fsync
// covered) and a later fsync of the same handle reports success without
// writing anything. crash cuts every file back to what a good fsync
// covered. A log that retried the fsync, or trusted what it wrote before
// the failure, loses records that crash shows.
type eioFS struct {
	fileutil.FS
	mu        sync.Mutex
	failSyncs int
	synced    map[string]int64 // per file, the size its last honest fsync covered
}

func newEIOFS() *eioFS { return &eioFS{FS: fileutil.OSFS{}, synced: map[string]int64{}} }

func (e *eioFS) arm(n int) { e.mu.Lock(); e.failSyncs = n; e.mu.Unlock() }

func (e *eioFS) OpenFile(name string, flag int, perm os.FileMode) (fileutil.File, error) {
	f, err := e.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &eioFile{File: f, fs: e, path: name}, nil
}

func (e *eioFS) crash(t *testing.T, dir string) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range segments(t, dir) {
		if err := os.Truncate(p, e.synced[p]); err != nil {
			t.Fatal(err)
		}
	}
}

type eioFile struct {
	fileutil.File
	fs       *eioFS
	path     string
	poisoned bool
}

func (f *eioFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.poisoned {
		return nil // the kernel reported the error once; the pages are clean now
	}
	if f.fs.failSyncs > 0 && filepath.Ext(f.path) == segSuffix {
		f.fs.failSyncs--
		f.poisoned = true
		if err := os.Truncate(f.path, f.fs.synced[f.path]); err != nil {
			return err
		}
		return &os.PathError{Op: "fsync", Path: f.path, Err: syscall.EIO}
	}
	if err := f.File.Sync(); err != nil {
		return err
	}
	fi, err := f.File.Stat()
	if err != nil {
		return err
	}
	f.fs.synced[f.path] = fi.Size()
	return nil
}

// TestFsyncEIO: an fsync of the active segment fails with EIO. The log
// takes no more records (ErrUnavailable, Paused says why), does not
// acknowledge the ones the failed fsync should have covered, never fsyncs
// that handle again, and on the next Sync recovers: it reopens the
// segment from disk, cuts it at the durable end and writes the records
// again. After a simulated power cut every acknowledged record is there,
// intact.
func TestFsyncEIO(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fails int // failed fsyncs in a row
	}{{"one", 1}, {"three", 3}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			efs := newEIOFS()
			l := openLog(t, dir, segmentSize(64<<10), func(o *Options) { o.FS = efs })
			var acked atomic.Uint64
			l.OnSync(func(next uint64) { acked.Store(next) })
			appendN(t, l, 0, 100, 50)
			must(t, l.Sync())
			if acked.Load() != 100 {
				t.Fatalf("acked %d, want 100", acked.Load())
			}
			efs.arm(tc.fails)
			appendN(t, l, 100, 10, 50) // accepted: the log holds them
			if err := l.Sync(); !errors.Is(err, syscall.EIO) {
				t.Fatalf("Sync = %v, want EIO", err)
			}
			if acked.Load() != 100 || l.SyncedOffset() != 100 {
				t.Fatalf("after the failed fsync: acked %d, synced %d, want 100", acked.Load(), l.SyncedOffset())
			}
			r := testRecord(110, 50)
			if _, err := l.Append(&r); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Append while broken = %v, want ErrUnavailable", err)
			}
			if p := l.Paused(); !slices.Equal(p, []string{PauseError}) {
				t.Fatalf("Paused() = %v, want [%s]", p, PauseError)
			}
			for range tc.fails - 1 { // recovery itself fsyncs (roll) or the next round fails again
				if err := l.Sync(); err == nil {
					break
				}
			}
			must(t, l.Sync())
			if acked.Load() != 110 || len(l.Paused()) != 0 {
				t.Fatalf("after recovery: acked %d, paused %v; want 110 and none", acked.Load(), l.Paused())
			}
			// The records refused while broken come back (the broker
			// redelivers what was not acknowledged): append them now.
			appendN(t, l, 110, 90, 50)
			must(t, l.Sync())
			if acked.Load() != 200 {
				t.Fatalf("acked %d, want 200", acked.Load())
			}
			got, err := readAll(t, l, 0)
			must(t, err)
			checkRecords(t, got, 0, 200, 50)
			must(t, l.Close())

			efs.crash(t, dir)
			l2 := openLog(t, dir, segmentSize(64<<10))
			if l2.NextOffset() < 200 {
				t.Fatalf("after the power cut the log ends at %d, but 200 records were acknowledged", l2.NextOffset())
			}
			got, err = readAll(t, l2, 0)
			must(t, err)
			checkRecords(t, got, 0, 200, 50)
		})
	}
}

// TestSyncEachAppend: with SyncInterval 0 every Append returns with its
// record durable and acknowledged (no Sync call, no goroutine timing).
func TestSyncEachAppend(t *testing.T) {
	dir := t.TempDir()
	efs := newEIOFS()
	l := openLog(t, dir, segmentSize(4<<10), func(o *Options) { o.SyncInterval, o.ManualSync, o.FS = 0, false, efs })
	var acked atomic.Uint64
	l.OnSync(func(next uint64) { acked.Store(next) })
	for i := range 100 {
		r := testRecord(i, 50)
		off, err := l.Append(&r)
		must(t, err)
		if acked.Load() != off+1 || l.SyncedOffset() != off+1 {
			t.Fatalf("Append %d returned with acked %d, synced %d", off, acked.Load(), l.SyncedOffset())
		}
	}
	must(t, l.Close())
	efs.crash(t, dir) // only what an honest fsync covered survives
	l2 := openLog(t, dir)
	got, err := readAll(t, l2, 0)
	must(t, err)
	checkRecords(t, got, 0, 100, 50)
}

// TestRealDiskFull puts a log on a real 8 MiB tmpfs and fills the rest
// with a hog file. Appends fail with ENOSPC: the log takes no more
// records, loses no acknowledged one, and once the hog is removed it
// recovers by itself (the background retry) and takes records again,
// without being reopened.
func TestRealDiskFull(t *testing.T) {
	mnt := mountTmpfs(t, "8m")
	dir := filepath.Join(mnt, "ingest")
	l := openLog(t, dir, func(o *Options) {
		o.SegmentSize, o.MaxSize = 1<<20, 1<<30
		o.SyncInterval, o.ManualSync, o.RetryInterval = time.Millisecond, false, time.Millisecond
	})
	var acked atomic.Uint64
	l.OnSync(func(next uint64) { acked.Store(next) })
	hog := filepath.Join(mnt, "hog")
	fillUp(t, hog, 6<<20)

	const payload = 1000
	n := 0
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := testRecord(n, payload)
		_, err := l.Append(&r)
		if errors.Is(err, ErrUnavailable) {
			break
		}
		must(t, err)
		n++
		if time.Now().After(deadline) {
			t.Fatalf("appended %d records to a full tmpfs without an error", n)
		}
	}
	if !slices.Contains(l.Paused(), PauseError) || !errors.Is(l.Broken(), syscall.ENOSPC) {
		t.Fatalf("Paused() = %v, Broken() = %v; want %s and ENOSPC", l.Paused(), l.Broken(), PauseError)
	}
	ack := acked.Load()
	t.Logf("disk full after %d records, %d acknowledged: %v", n, ack, l.Broken())
	got, err := readAll(t, l, 0)
	must(t, err)
	checkRecords(t, got, 0, int(l.SyncedOffset()), payload)

	must(t, os.Remove(hog))
	waitFor(t, "the log to recover", func() bool { return len(l.Paused()) == 0 })
	waitFor(t, "every accepted record to be acknowledged", func() bool { return acked.Load() == uint64(n) })
	for i := n; i < n+100; i++ {
		r := testRecord(i, payload)
		_, err := l.Append(&r)
		must(t, err)
	}
	waitFor(t, "the new records to be acknowledged", func() bool { return acked.Load() == uint64(n+100) })
	must(t, l.Close())
	l2 := openLog(t, dir, segmentSize(1<<20))
	got, err = readAll(t, l2, 0)
	must(t, err)
	checkRecords(t, got, 0, n+100, payload)
}

// mountTmpfs mounts a tmpfs of the given size on a new directory and
// unmounts it at cleanup. It skips the test when not root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a real full disk needs a tmpfs mount, which needs root; skipped")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillUp writes a hog file of at most n bytes, stopping early at ENOSPC.
func fillUp(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	must(t, err)
	defer f.Close()
	buf := make([]byte, 64<<10)
	for w := 0; w < n; w += len(buf) {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

// waitFor polls cond until it holds, failing the test after 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(fmt.Sprintf("timed out waiting for %s", what))
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPause: while paused, Append refuses records and appends nothing;
// records appended before still become durable; Resume takes records
// again. Paused lists every reason, PauseFull included.
func TestPause(t *testing.T) {
	l := openLog(t, t.TempDir(), func(o *Options) { o.SegmentSize, o.MaxSize = 64<<10, 128<<10 })
	appendN(t, l, 0, 10, 50)
	l.Pause("disk_full")
	l.Pause("other")
	r := testRecord(10, 50)
	if _, err := l.Append(&r); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Append while paused = %v, want ErrUnavailable", err)
	}
	if _, err := l.AppendBatch([]Record{testRecord(10, 50)}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("AppendBatch while paused = %v, want ErrUnavailable", err)
	}
	must(t, l.Sync())
	if l.SyncedOffset() != 10 || l.NextOffset() != 10 {
		t.Fatalf("synced %d, next %d; want 10, 10", l.SyncedOffset(), l.NextOffset())
	}
	if p := l.Paused(); !slices.Equal(p, []string{"disk_full", "other"}) {
		t.Fatalf("Paused() = %v", p)
	}
	l.Resume("other")
	if _, err := l.Append(&r); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Append with one reason left = %v, want ErrUnavailable", err)
	}
	l.Resume("disk_full")
	for i := 10; ; i++ {
		r := testRecord(i, 1000)
		if _, err := l.Append(&r); errors.Is(err, ErrFull) {
			break
		} else {
			must(t, err)
		}
	}
	if p := l.Paused(); !slices.Equal(p, []string{PauseFull}) {
		t.Fatalf("Paused() of a full log = %v, want [%s]", p, PauseFull)
	}
}

// TestReaderAcrossRecovery: a Reader created at an offset beyond the
// durable end, in a segment that recovery removes and recreates, reads
// the rewritten records once they are durable.
func TestReaderAcrossRecovery(t *testing.T) {
	efs := newEIOFS()
	l := openLog(t, t.TempDir(), segmentSize(64<<10), func(o *Options) { o.FS = efs })
	appendN(t, l, 0, 10, 50)
	must(t, l.Sync())
	appendN(t, l, 10, 3000, 300) // ~1 MiB: several buffer chunks and segments, not yet durable
	r, err := l.NewReader(3005)  // in the active segment, whose failed fsync loses its pages
	must(t, err)
	defer r.Close()
	efs.arm(1)
	if err := l.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync = %v, want EIO", err)
	}
	must(t, l.Sync())
	var rec Record
	for i := 3005; i < 3010; i++ {
		must(t, r.Next(&rec))
		want := testRecord(i, 300)
		if rec.Offset != uint64(i) || string(rec.Payload) != string(want.Payload) {
			t.Fatalf("record %d: offset %d payload %q", i, rec.Offset, rec.Payload)
		}
	}
	if err := r.Next(&rec); !errors.Is(err, ErrNoData) {
		t.Fatalf("Next at the end = %v, want ErrNoData", err)
	}
	got, err := readAll(t, l, 0)
	must(t, err)
	checkRecords(t, got[:10], 0, 10, 50)
	checkRecords(t, got[10:], 10, 3000, 300)
}
