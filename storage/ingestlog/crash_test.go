package ingestlog

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// crashRun is one run of a workload over a CrashFS: the acknowledgements
// the log gave (OnSync), each with the number of file-system operations
// done when it was given.
type crashRun struct {
	mu   sync.Mutex
	fs   *fileutil.CrashFS
	acks []ack
}

type ack struct {
	ops  int    // CrashFS.Ops() when OnSync ran
	next uint64 // SyncedOffset it reported
}

// acked returns the highest offset acknowledged by the time of file-system
// operation op: every record below it must survive a power cut then.
func (r *crashRun) acked(op int) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var next uint64
	for _, a := range r.acks {
		if a.ops <= op {
			next = max(next, a.next)
		}
	}
	return next
}

const crashDir = "/data/ingest/readings"

func crashOpts(fsys fileutil.FS) Options {
	o := DefaultOptions(crashDir)
	o.ManualSync = true // the workload syncs; no goroutine races the crash point
	o.SegmentSize, o.MaxSize = 400, 1<<20
	o.FS = fsys
	return o
}

// TestCrash cuts the power after every file-system operation of a
// workload (open a new log, append across several segment rolls with a
// sync now and then, truncate the front, close), reopens the log on what
// survived and checks that it opens, that its records are exactly the
// workload's records from FirstOffset on with no gap and nothing
// invented, and that no record acknowledged before the cut (OnSync) is
// lost.
func TestCrash(t *testing.T) {
	const n, payload = 40, 30
	workload := func(t *testing.T, run *crashRun) {
		l, err := Open(crashOpts(run.fs))
		if err != nil {
			t.Fatal(err)
		}
		l.OnSync(func(next uint64) {
			ops := run.fs.Ops() // the fsyncs behind this ack are done
			run.mu.Lock()
			run.acks = append(run.acks, ack{ops, next})
			run.mu.Unlock()
		})
		for i := range n {
			r := testRecord(i, payload)
			if _, err := l.Append(&r); err != nil {
				t.Fatal(err)
			}
			if i%3 == 2 {
				if err := l.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			if i == 25 {
				if err := l.TruncateFront(12); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, crashed *fileutil.CrashFS, acked uint64) {
		t.Helper()
		l, err := Open(crashOpts(crashed))
		if err != nil {
			t.Fatalf("reopen after the power cut: %v", err)
		}
		defer l.Close()
		first, next := l.FirstOffset(), l.NextOffset()
		if next < acked {
			t.Fatalf("log ends at %d, but offsets below %d were acknowledged", next, acked)
		}
		got, err := readAll(t, l, first)
		if err != nil {
			t.Fatalf("read from %d: %v", first, err)
		}
		checkRecords(t, got, int(first), int(next-first), payload)
	}

	var total int
	for i := 1; ; i++ {
		run := &crashRun{fs: fileutil.NewCrashFS()}
		run.fs.CrashAfter(i)
		workload(t, run)
		crashed := run.fs.Crashed()
		if crashed == nil {
			// The whole workload ran: everything was acknowledged, and a
			// power cut now must keep it all.
			total = run.fs.Ops()
			if got := run.acked(total); got != n {
				t.Fatalf("acknowledged up to %d, want %d", got, n)
			}
			check(t, run.fs.CrashClone(), n)
			break
		}
		t.Run(fmt.Sprint("after op ", i), func(t *testing.T) { check(t, crashed, run.acked(i)) })
		if t.Failed() {
			t.Fatalf("power cut after file-system operation %d", i)
		}
	}
	t.Logf("power cut after each of %d file-system operations", total)
}

// TestCrashDuringRecovery fails each file-system operation of the
// workload in turn (fileutil.ErrorFS over a CrashFS) and, for each, cuts
// the power after every operation of the run, recovery included. The
// workload retries as the ingest does: a refused Append after a Sync.
// Whatever failed and wherever the power went, the reopened log holds
// every acknowledged record, contiguous and intact.
func TestCrashDuringRecovery(t *testing.T) {
	const n, payload = 40, 30
	workload := func(t *testing.T, run *crashRun, fsys fileutil.FS) {
		l, err := Open(crashOpts(fsys))
		if err != nil {
			return // the fault hit Open: nothing was acknowledged
		}
		l.OnSync(func(next uint64) {
			ops := run.fs.Ops()
			run.mu.Lock()
			run.acks = append(run.acks, ack{ops, next})
			run.mu.Unlock()
		})
		for i := 0; i < n; {
			r := testRecord(i, payload)
			_, err := l.Append(&r)
			if errors.Is(err, ErrUnavailable) {
				_ = l.Sync()
				continue
			}
			if err != nil {
				t.Fatalf("Append %d: %v", i, err)
			}
			i++
			if i%3 == 0 {
				_ = l.Sync()
			}
			if i == 26 {
				_ = l.TruncateFront(12)
			}
		}
		if err := l.Sync(); err != nil && l.Sync() != nil { // one fault per run: the retry succeeds
			t.Fatalf("last Sync: %v", err)
		}
		_ = l.Close()
		if got := run.acked(run.fs.Ops()); got != n {
			t.Fatalf("acknowledged up to %d, want %d", got, n)
		}
	}
	check := func(t *testing.T, crashed *fileutil.CrashFS, acked uint64) {
		t.Helper()
		l, err := Open(crashOpts(crashed))
		if err != nil {
			t.Fatalf("reopen after the power cut: %v", err)
		}
		defer l.Close()
		first, next := l.FirstOffset(), l.NextOffset()
		if next < acked {
			t.Fatalf("log ends at %d, but offsets below %d were acknowledged", next, acked)
		}
		got, err := readAll(t, l, first)
		if err != nil {
			t.Fatalf("read from %d: %v", first, err)
		}
		checkRecords(t, got, int(first), int(next-first), payload)
	}
	runs := 0
	for fail := 0; ; fail++ {
		probe := &crashRun{fs: fileutil.NewCrashFS()}
		efs := fileutil.NewErrorFS(probe.fs, fail)
		workload(t, probe, efs)
		if !efs.Injected() {
			t.Logf("%d faults × every power-cut point: %d runs", fail, runs)
			return
		}
		for cut := 1; cut <= probe.fs.Ops(); cut++ {
			run := &crashRun{fs: fileutil.NewCrashFS()}
			run.fs.CrashAfter(cut)
			workload(t, run, fileutil.NewErrorFS(run.fs, fail))
			crashed := run.fs.Crashed()
			if crashed == nil {
				t.Fatalf("fault %d: no power cut after op %d of %d", fail, cut, probe.fs.Ops())
			}
			check(t, crashed, run.acked(cut))
			if t.Failed() {
				t.Fatalf("fault at operation %d, power cut after file-system operation %d", fail, cut)
			}
			runs++
		}
	}
}
