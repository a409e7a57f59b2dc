package diskspace

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeFS struct {
	mu    sync.Mutex
	usage map[string]Usage
	err   map[string]error
}

func (f *fakeFS) set(path string, free, total uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.usage[path] = Usage{Free: free, Total: total}
}

func (f *fakeFS) statfs(path string) (Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err[path]; err != nil {
		return Usage{}, err
	}
	return f.usage[path], nil
}

func TestThresholdMin(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		name  string
		th    Threshold
		total uint64
		want  uint64
	}{
		{"bytes", Threshold{Bytes: 100}, 1000, 100},
		{"percent", Threshold{Percent: 5}, 1000, 50},
		{"smaller of both, percent", Threshold{Bytes: gib, Percent: 5}, 10 * gib, gib / 2},
		{"smaller of both, bytes", Threshold{Bytes: gib, Percent: 5}, 100 * gib, gib},
		{"zero", Threshold{}, 1000, 0},
	} {
		if got := tc.th.Min(tc.total); got != tc.want {
			t.Errorf("%s: Min(%d) = %d, want %d", tc.name, tc.total, got, tc.want)
		}
	}
}

// TestWatcher drives the watcher with a fake statfs and ticks sent by
// hand: it reports going low once, stays low while any path is low,
// recovers when all have room, and keeps a path's state when statfs
// fails.
func TestWatcher(t *testing.T) {
	fs := &fakeFS{usage: map[string]Usage{}, err: map[string]error{}}
	fs.set("/data", 500, 1000)
	fs.set("/sink", 500, 1000)
	changes := make(chan []string, 10)
	tick := make(chan time.Time)
	w, err := New(Options{
		Paths: []string{"/data", "/sink"}, Threshold: Threshold{Bytes: 100},
		Statfs: fs.statfs, Tick: tick, OnChange: func(low []string) { changes <- low },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	// step returns once Run took the tick; the sample after it follows.
	// Run takes a tick only after a sample, so two steps prove that the
	// sample after the first one is complete.
	step := func() { tick <- time.Time{} }
	expect := func(want []string) {
		t.Helper()
		select {
		case got := <-changes:
			if !slices.Equal(got, want) {
				t.Fatalf("OnChange(%v), want %v", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no OnChange, want %v", want)
		}
	}
	noChange := func() {
		t.Helper()
		step()
		step()
		select {
		case got := <-changes:
			t.Fatalf("unexpected OnChange(%v)", got)
		default:
		}
	}

	noChange()
	fs.set("/sink", 99, 1000)
	step()
	expect([]string{"/sink"})
	fs.set("/data", 10, 1000) // still low: no second report
	noChange()
	if !w.Low() {
		t.Fatal("Low() = false while two paths are low")
	}
	fs.set("/sink", 100, 1000) // at the budget is enough
	noChange()                 // /data is still low
	fs.mu.Lock()
	fs.err["/data"] = errors.New("EIO")
	fs.mu.Unlock()
	noChange() // a failed statfs keeps /data low
	st := w.Status()
	if !st[0].Low || st[0].Error == "" || st[1].Low || st[1].Free != 100 || st[1].MinFree != 100 {
		t.Fatalf("Status() = %+v", st)
	}
	fs.mu.Lock()
	delete(fs.err, "/data")
	fs.mu.Unlock()
	fs.set("/data", 900, 1000)
	step()
	expect(nil)
	if w.Low() {
		t.Fatal("Low() = true after every path recovered")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestStatfs reads the real file system of the test's temporary directory.
func TestStatfs(t *testing.T) {
	u, err := Statfs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if u.Total == 0 || u.Free > u.Total {
		t.Fatalf("Statfs = %+v", u)
	}
	if _, err := Statfs("/does/not/exist"); err == nil {
		t.Fatal("Statfs of a missing path succeeded")
	}
}

// TestRealTmpfs samples a real 8 MiB tmpfs: a hog file takes it below a
// 2 MiB budget, removing the hog brings it back.
func TestRealTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root; skipped")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	w, err := New(Options{Paths: []string{dir}, Threshold: Threshold{Bytes: 2 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	if low := w.Sample(); len(low) != 0 {
		t.Fatalf("empty tmpfs low: %+v", w.Status())
	}
	hog := filepath.Join(dir, "hog")
	if err := os.WriteFile(hog, make([]byte, 7<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if low := w.Sample(); !slices.Equal(low, []string{dir}) {
		t.Fatalf("tmpfs with a 7 MiB hog not low: %+v", w.Status())
	}
	if err := os.Remove(hog); err != nil {
		t.Fatal(err)
	}
	if low := w.Sample(); len(low) != 0 {
		t.Fatalf("tmpfs still low after removing the hog: %+v", w.Status())
	}
}
