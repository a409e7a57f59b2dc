// Package diskfull gives tests a real, small file system and a way to fill
// it, so that writes fail with a real ENOSPC from the kernel rather than an
// injected error.
//
// Tmpfs mounts a size-limited tmpfs; Ext4Image loop-mounts an ext4 image
// (no reserved blocks, so root gets ENOSPC too). Both need root and skip the
// test otherwise; both unmount when the test ends. FillHog (or Fill) writes a
// hog file until the file system is full; Free gives some space back and
// Release all of it. Fill refuses to run on a file system with more than
// MaxFill bytes free, so a wrong path cannot fill the real disk.
package diskfull

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// MaxFill is the most free space Fill will consume.
const MaxFill = 4 << 30

func needRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("diskfull: needs root to mount a small file system")
	}
}

// Tmpfs mounts a tmpfs of size bytes at a new temporary directory and
// returns it. It is unmounted when the test ends.
func Tmpfs(tb testing.TB, size int64) string {
	tb.Helper()
	needRoot(tb)
	dir := tb.TempDir()
	opts := "size=" + strconv.FormatInt(size, 10) + ",mode=0755"
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		if errors.Is(err, syscall.EPERM) {
			tb.Skipf("diskfull: cannot mount tmpfs here: %v", err)
		}
		tb.Fatalf("diskfull: mount tmpfs %s: %v", dir, err)
	}
	tb.Cleanup(func() { unmount(tb, dir) })
	return dir
}

// Ext4Image makes a sparse ext4 image of size bytes, loop-mounts it at a
// new temporary directory and returns that directory. It is unmounted (and
// the loop device freed) when the test ends.
func Ext4Image(tb testing.TB, size int64) string {
	tb.Helper()
	needRoot(tb)
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		tb.Skipf("diskfull: mkfs.ext4 not found: %v", err)
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		tb.Skipf("diskfull: no loop devices: %v", err)
	}
	tmp := tb.TempDir()
	img := filepath.Join(tmp, "ext4.img")
	f, err := os.Create(img)
	if err != nil {
		tb.Fatal(err)
	}
	if err := errors.Join(f.Truncate(size), f.Close()); err != nil {
		tb.Fatal(err)
	}
	// -m 0: no blocks reserved for root, who runs these tests.
	if out, err := exec.Command(mkfs, "-F", "-q", "-m", "0", "-E", "lazy_itable_init=0,lazy_journal_init=0", img).CombinedOutput(); err != nil {
		tb.Fatalf("diskfull: mkfs.ext4: %v\n%s", err, out)
	}
	dir := filepath.Join(tmp, "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "ext4", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		tb.Skipf("diskfull: cannot loop-mount an ext4 image here: %v\n%s", err, out)
	}
	tb.Cleanup(func() { unmount(tb, dir) })
	return dir
}

// unmount unmounts dir. A file system that is busy is retried for a while
// after a garbage collection: a FUSE server stacked on it (test/powercut)
// whose connection a cut aborted closes the backing files it still had open
// only when their *os.File is collected. Still busy after that, a file is
// really left open, and the test fails.
func unmount(tb testing.TB, dir string) {
	err := syscall.Unmount(dir, 0)
	for deadline := time.Now().Add(20 * time.Second); errors.Is(err, syscall.EBUSY) && time.Now().Before(deadline); {
		runtime.GC()
		time.Sleep(50 * time.Millisecond) // finalizers run on their own goroutine
		err = syscall.Unmount(dir, 0)
	}
	if err != nil {
		tb.Errorf("diskfull: unmount %s: %v (a file is still open?)", dir, err)
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			tb.Errorf("diskfull: lazy unmount %s: %v", dir, err)
		}
	}
}

// Hog is a file that takes up the free space of a file system.
type Hog struct {
	tb   testing.TB
	path string
	size int64
}

// chunks are the write sizes Fill steps down through, so that even the last
// partial block ends up used.
var chunks = []int{1 << 20, 64 << 10, 4 << 10, 512, 1}

// FillHog writes a hog file into dir until the file system is full (ENOSPC),
// fsyncs it, and returns it. The hog is removed when the test ends, if
// Release has not done so.
func FillHog(tb testing.TB, dir string) *Hog {
	tb.Helper()
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(dir, &sfs); err != nil {
		tb.Fatal(err)
	}
	if free := int64(sfs.Bavail) * sfs.Bsize; free > MaxFill {
		tb.Fatalf("diskfull: refusing to fill %s: %d bytes free (more than %d); use Tmpfs or Ext4Image", dir, free, MaxFill)
	}
	h := &Hog{tb: tb}
	f, err := os.CreateTemp(dir, "diskfull-hog-*")
	if err != nil {
		tb.Fatalf("diskfull: create hog: %v", err)
	}
	h.path = f.Name()
	tb.Cleanup(h.Release)
	buf := make([]byte, chunks[0])
	for _, c := range chunks {
		for {
			n, err := f.Write(buf[:c])
			h.size += int64(n)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				f.Close()
				tb.Fatalf("diskfull: write hog: %v", err)
			}
		}
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		tb.Fatalf("diskfull: sync hog: %v", err)
	}
	return h
}

// Fill fills the file system of dir with a hog file and returns the
// function that removes it.
func Fill(tb testing.TB, dir string) (release func()) {
	tb.Helper()
	return FillHog(tb, dir).Release
}

// Path is the hog file.
func (h *Hog) Path() string { return h.path }

// Size is the hog's size in bytes.
func (h *Hog) Size() int64 { return h.size }

// Free shrinks the hog by n bytes (at most its size), giving about that much
// space back.
func (h *Hog) Free(n int64) error {
	if h.path == "" {
		return errors.New("diskfull: hog already released")
	}
	h.size = max(0, h.size-n)
	if err := os.Truncate(h.path, h.size); err != nil {
		return fmt.Errorf("diskfull: free %d bytes: %w", n, err)
	}
	return nil
}

// Release removes the hog. Calling it again does nothing.
func (h *Hog) Release() {
	if h.path == "" {
		return
	}
	if err := os.Remove(h.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		h.tb.Errorf("diskfull: remove hog: %v", err)
	}
	h.path = ""
	h.size = 0
}
