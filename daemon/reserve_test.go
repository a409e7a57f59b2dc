package daemon

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/storage/diskspace"
)

// sizedDisk is a fakeDisk of a given total.
type sizedDisk struct {
	fakeDisk
	total uint64
}

func (f *sizedDisk) statfs(string) (diskspace.Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return diskspace.Usage{Free: f.free, Total: f.total}, nil
}

// TestDiskReserve runs the daemon with disk.reserve 1MiB, disk.min_free
// 5 % and a fake statfs of a 100 MiB disk: the first sample with room makes
// data_dir/_reserve (metric, overview); a checkpoint that fails for lack of
// space releases it (warning) and a checkpoint is retried at once and
// completes; while the disk has min_free but not min_free plus the reserve
// free, intake stays paused and the reserve is not made; with room for
// both it is made again and intake resumes.
func TestDiskReserve(t *testing.T) {
	const mib = 1 << 20
	dir := t.TempDir()
	var logs lockedBuffer
	cfg := inProcessConfig(t, dir, "disk:\n  min_free: 5%\n  reserve: 1MiB\n")
	d, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	disk := &sizedDisk{fakeDisk: fakeDisk{free: 90 * mib}, total: 100 * mib}
	tick := make(chan time.Time)
	d.disk.statfs, d.disk.tick = disk.statfs, tick
	done := startRun(t, d)
	base := "http://" + d.HTTPAddr()
	get := func(path string) string {
		t.Helper()
		_, body := httpGet(t, base+path)
		return body
	}
	overview := func() Overview {
		var o Overview
		if err := json.Unmarshal([]byte(get("/api/v1/overview")), &o); err != nil {
			t.Fatal(err)
		}
		return o
	}
	reserve := d.layout.Reserve()
	fileSize := func() int64 {
		st, err := os.Stat(reserve)
		if err != nil {
			return -1
		}
		return st.Size()
	}

	eventually(t, 30*time.Second, "the reserve to be made on the first sample", func() bool {
		return fileSize() == mib && d.reserve.r.Size() == mib
	})
	if m := get("/metrics"); !strings.Contains(m, "eddy_disk_reserve_bytes 1.048576e+06") {
		t.Errorf("/metrics lacks eddy_disk_reserve_bytes 1.048576e+06")
	}
	if r := overview().DiskReserve; r == nil || r.Bytes != mib || r.Want != mib || r.Released || r.Path != filepath.Join(dir, "_reserve") {
		t.Errorf("overview disk_reserve %+v", r)
	}
	eventually(t, 30*time.Second, "the job to run", func() bool {
		d.mu.RLock()
		defer d.mu.RUnlock()
		return d.job != nil
	})

	// A checkpoint failed for lack of space (what the coordinator calls).
	d.reserveOnNoSpace(7, fmt.Errorf("write _metadata: %w", syscall.ENOSPC))
	if fileSize() != -1 || d.reserve.r.Size() != 0 {
		t.Fatalf("reserve still there after a release: file %d bytes", fileSize())
	}
	eventually(t, 60*time.Second, "the retried checkpoint to complete", func() bool {
		return strings.Contains(logs.String(), "checkpoint retried on the disk reserve completed")
	})
	if !strings.Contains(logs.String(), "level=WARN msg=\"disk full: released the disk reserve for checkpoint 7") {
		t.Errorf("no warning about the release in the log:\n%s", logs.String())
	}
	if m := get("/metrics"); !strings.Contains(m, "eddy_disk_reserve_bytes 0") {
		t.Errorf("/metrics lacks eddy_disk_reserve_bytes 0")
	}
	if r := overview().DiskReserve; r == nil || r.Bytes != 0 || !r.Released || r.Releases != 1 {
		t.Errorf("overview disk_reserve after the release %+v", r)
	}
	if d.releaseReserve("checkpoint 8", syscall.ENOSPC) {
		t.Error("a released reserve was released again")
	}

	// min_free (5 MiB) but not min_free plus the reserve: paused, not made.
	disk.set(5*mib + mib/2)
	tick <- time.Time{}
	eventually(t, 10*time.Second, "intake paused for the missing reserve", func() bool {
		o := overview()
		return slices.Equal(o.IntakePaused, []string{PauseDiskFull}) && strings.Contains(o.IntakePausedReason, "to make the disk reserve again")
	})
	if fileSize() != -1 {
		t.Fatalf("reserve made with only %d bytes free", 5*mib+mib/2)
	}
	if m := get("/metrics"); !strings.Contains(m, fmt.Sprintf("eddy_disk_min_free_bytes{path=%q} %g", dir, float64(6*mib))) {
		t.Errorf("/metrics lacks eddy_disk_min_free_bytes %d (min_free plus the reserve)", 6*mib)
	}

	disk.set(6*mib + 1)
	tick <- time.Time{}
	eventually(t, 10*time.Second, "the reserve made again and intake resumed", func() bool {
		return fileSize() == mib && len(overview().IntakePaused) == 0
	})
	if !strings.Contains(logs.String(), "disk reserve made again") {
		t.Error("no log line about the reserve made again")
	}
	if r := overview().DiskReserve; r == nil || r.Bytes != mib || r.Released {
		t.Errorf("overview disk_reserve after it was made again %+v", r)
	}
	d.Stop()
	if err := runResult(t, done); err != nil {
		t.Fatal(err)
	}
}

// TestAutoReserve: write buffers plus new bytes, rounded up to a MiB,
// within [16MiB, min(1GiB, 10 % of the file system)].
func TestAutoReserve(t *testing.T) {
	const mib = int64(config.MiB)
	for _, tc := range []struct {
		need  int64
		total uint64
		want  int64
	}{
		{0, 0, 16 * mib},
		{20*mib + 1, 0, 21 * mib},
		{20 * mib, 100 << 30, 20 * mib},
		{5 << 30, 0, 1 << 30},
		{64 * mib, 128 << 20, 12 * mib}, // 10 % of a 128 MiB disk, below the minimum
	} {
		if got := autoReserve(tc.need, tc.total); got != tc.want {
			t.Errorf("autoReserve(%d, %d) = %d, want %d", tc.need, tc.total, got, tc.want)
		}
	}
}

// TestReserveOff: disk.reserve 0 makes no file and releases nothing.
func TestReserveOff(t *testing.T) {
	dir := t.TempDir()
	d, err := New(inProcessConfig(t, dir, "disk:\n  reserve: \"0\"\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.reserve.r != nil || d.releaseReserve("the restore", syscall.ENOSPC) || d.reserveStatus() != nil {
		t.Fatal("disk.reserve 0 has a reserve")
	}
	if _, err := os.Stat(filepath.Join(dir, "_reserve")); !os.IsNotExist(err) {
		t.Fatalf("_reserve with disk.reserve 0: %v", err)
	}
}
