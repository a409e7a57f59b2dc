package powercut

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// FS is a mounted power-cut file system.
type FS struct {
	tb  testing.TB
	mnt string

	mu     sync.Mutex // guards st, gen and every backing operation
	st     *state
	gen    *generation
	closed bool
	// detached are cut generations that still had open files; their
	// servers answer EIO until the last descriptor is closed.
	detached []*generation
}

// Mount mounts a power-cut file system over the directory backing at a new
// temporary directory, and unmounts it when the test ends. It skips the test
// when FUSE cannot be mounted here (no /dev/fuse, not root).
func Mount(tb testing.TB, backing string) *FS {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("powercut: needs root to mount a FUSE file system (mount(2) is called directly, not fusermount)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		tb.Skipf("powercut: FUSE is not available: %v", err)
	}
	abs, err := filepath.Abs(backing)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(abs, hiddenName)); err != nil {
		tb.Fatal(err)
	}
	st, err := newState(abs)
	if err != nil {
		tb.Fatal(err)
	}
	f := &FS{tb: tb, mnt: tb.TempDir(), st: st}
	if err := f.mount(); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENODEV) {
			tb.Skipf("powercut: cannot mount FUSE here: %v", err)
		}
		tb.Fatalf("powercut: mount: %v", err)
	}
	tb.Cleanup(f.Unmount)
	return f
}

// Dir is the mount point: the directory to work in.
func (f *FS) Dir() string { return f.mnt }

// Backing is the backing directory.
func (f *FS) Backing() string { return f.st.backing }

func (f *FS) mount() error {
	g := &generation{}
	root := &node{fsys: f, gen: g}
	zero := time.Duration(0)
	srv, err := fs.Mount(f.mnt, root, &fs.Options{
		MountOptions: fuse.MountOptions{
			DirectMountStrict: true,
			AllowOther:        true,
			FsName:            "powercut:" + f.st.backing,
			Name:              "powercut",
		},
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
	})
	if err != nil {
		return err
	}
	g.srv = srv
	var st syscall.Stat_t
	if err := syscall.Stat(f.mnt, &st); err != nil {
		return errors.Join(fmt.Errorf("powercut: stat new mount: %w", err), syscall.Unmount(f.mnt, syscall.MNT_DETACH))
	}
	g.conn = strconv.FormatUint(uint64(unix.Major(st.Dev))<<20|uint64(unix.Minor(st.Dev)), 10)
	f.mu.Lock()
	f.gen = g
	f.mu.Unlock()
	return nil
}

// end kills the current generation and unmounts it. When files are still
// open on it, it is detached (MNT_DETACH) and its FUSE connection aborted,
// so that those descriptors fail with ENOTCONN from then on and nothing is
// left waiting on this process (a process that serves FUSE and exits with
// files open on it would otherwise hang in close). Without fusectl the
// detached generation keeps answering EIO until its files are closed.
func (f *FS) end() error {
	f.mu.Lock()
	g := f.gen
	f.gen = nil
	if g != nil {
		g.dead = true
	}
	f.mu.Unlock()
	if g == nil {
		return nil
	}
	err := syscall.Unmount(f.mnt, 0)
	if errors.Is(err, syscall.EBUSY) {
		if err := syscall.Unmount(f.mnt, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("powercut: unmount %s: %w", f.mnt, err)
		}
		if err := abort(g.conn); err != nil {
			f.tb.Logf("powercut: %v; files open at the cut keep getting EIO until closed", err)
			f.mu.Lock()
			f.detached = append(f.detached, g)
			f.mu.Unlock()
			return nil
		}
		err = nil
	}
	if err != nil {
		return fmt.Errorf("powercut: unmount %s: %w", f.mnt, err)
	}
	g.srv.Wait()
	return nil
}

const fusectl = "/sys/fs/fuse/connections"

// abort aborts FUSE connection conn through fusectl, mounting it if need be.
func abort(conn string) error {
	p := filepath.Join(fusectl, conn, "abort")
	err := os.WriteFile(p, []byte("1"), 0)
	if errors.Is(err, os.ErrNotExist) {
		if merr := syscall.Mount("fusectl", fusectl, "fusectl", 0, ""); merr != nil && !errors.Is(merr, syscall.EBUSY) {
			return fmt.Errorf("abort FUSE connection %s: mount fusectl: %w", conn, merr)
		}
		err = os.WriteFile(p, []byte("1"), 0)
	}
	if err != nil {
		return fmt.Errorf("abort FUSE connection %s: %w", conn, err)
	}
	return nil
}

// Cut is a power cut followed by a reboot: everything not yet durable is
// dropped (see the package doc), and a fresh mount replaces the old one at
// Dir(). Descriptors opened before fail (ENOTCONN, or EIO without fusectl).
func (f *FS) Cut() error {
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return errors.New("powercut: cut after unmount")
	}
	if err := f.end(); err != nil {
		return err
	}
	f.mu.Lock()
	err := f.st.cut()
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if err := f.mount(); err != nil {
		return fmt.Errorf("powercut: remount: %w", err)
	}
	return nil
}

// Unmount unmounts the file system, keeping the backing directory as it is
// (nothing is cut). It waits for mounts detached by Cut to be released and
// fails the test if they are still in use 30 s later. Calling it again
// does nothing.
func (f *FS) Unmount() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	f.mu.Unlock()
	if err := f.end(); err != nil {
		f.tb.Error(err)
	}
	f.mu.Lock()
	det := f.detached
	f.detached = nil
	f.mu.Unlock()
	if len(det) > 0 {
		runtime.GC() // closes files a failed test dropped without closing
	}
	for _, g := range det {
		done := make(chan struct{})
		go func() {
			g.srv.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			f.tb.Errorf("powercut: a mount detached by Cut still has open files 30 s after the test")
			if err := abort(g.conn); err != nil {
				f.tb.Error(err)
			}
		}
	}
}
