package powercut_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/eddy-stream/eddy/test/diskfull"
	"github.com/eddy-stream/eddy/test/powercut"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(rocksChildEnv); dir != "" {
		if err := rocksChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "rocksdb child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// writeFile writes data to p, fsyncing it when sync is set; the directory
// entry is not synced.
func writeFile(t *testing.T, p string, data string, sync bool) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	must(t, err)
	_, err = f.WriteString(data)
	must(t, err)
	if sync {
		must(t, f.Sync())
	}
	must(t, f.Close())
}

func syncPath(t *testing.T, p string) {
	t.Helper()
	f, err := os.Open(p)
	must(t, err)
	must(t, f.Sync())
	must(t, f.Close())
}

func cut(t *testing.T, fsys *powercut.FS) {
	t.Helper()
	must(t, fsys.Cut())
}

func wantContent(t *testing.T, p, want string) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v (want %q)", p, err, want)
	}
	if string(got) != want {
		t.Fatalf("%s = %q, want %q", p, got, want)
	}
}

func wantMissing(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s: want it gone, stat says %v", p, err)
	}
}

// mountTest mounts over a fresh backing directory.
func mountTest(t *testing.T) (*powercut.FS, string) {
	t.Helper()
	fsys := powercut.Mount(t, t.TempDir())
	return fsys, fsys.Dir()
}

// durableFile creates name in dir with data, synced with its entry.
func durableFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	writeFile(t, p, data, true)
	syncPath(t, dir)
	return p
}

func TestUnsyncedWriteLost(t *testing.T) {
	fsys, d := mountTest(t)
	p := durableFile(t, d, "a", "one")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString("two")
	must(t, err)
	must(t, f.Close())
	wantContent(t, p, "onetwo")
	cut(t, fsys)
	wantContent(t, p, "one")
	wantContent(t, filepath.Join(fsys.Backing(), "a"), "one")
}

func TestFsyncedWriteKept(t *testing.T) {
	fsys, d := mountTest(t)
	p := durableFile(t, d, "a", "one")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString("two")
	must(t, err)
	must(t, f.Sync())
	_, err = f.WriteString("three")
	must(t, err)
	must(t, f.Close())
	cut(t, fsys)
	wantContent(t, p, "onetwo")
}

func TestOverwriteUndone(t *testing.T) {
	fsys, d := mountTest(t)
	p := durableFile(t, d, "a", "hello world")
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("J"), 0)
	must(t, err)
	_, err = f.WriteAt([]byte("W"), 6)
	must(t, err)
	_, err = f.WriteAt([]byte("ELLO"), 1)
	must(t, err)
	must(t, f.Close())
	wantContent(t, p, "JELLO World")
	cut(t, fsys)
	wantContent(t, p, "hello world")
}

func TestRenameLostWithoutDirSync(t *testing.T) {
	fsys, d := mountTest(t)
	durableFile(t, d, "a", "x")
	must(t, os.Rename(filepath.Join(d, "a"), filepath.Join(d, "b")))
	cut(t, fsys)
	wantContent(t, filepath.Join(d, "a"), "x")
	wantMissing(t, filepath.Join(d, "b"))
}

func TestRenameKeptWithDirSync(t *testing.T) {
	fsys, d := mountTest(t)
	durableFile(t, d, "a", "x")
	must(t, os.Rename(filepath.Join(d, "a"), filepath.Join(d, "b")))
	syncPath(t, d)
	cut(t, fsys)
	wantMissing(t, filepath.Join(d, "a"))
	wantContent(t, filepath.Join(d, "b"), "x")
}

// TestAtomicReplace is the commit point every durable write in eddy uses:
// write a tmp file, fsync, rename over the old one, fsync the directory.
func TestAtomicReplace(t *testing.T) {
	fsys, d := mountTest(t)
	durableFile(t, d, "CURRENT", "v1")
	writeFile(t, filepath.Join(d, "CURRENT.tmp"), "v2", true)
	must(t, os.Rename(filepath.Join(d, "CURRENT.tmp"), filepath.Join(d, "CURRENT")))
	cut(t, fsys)
	wantContent(t, filepath.Join(d, "CURRENT"), "v1")
	wantMissing(t, filepath.Join(d, "CURRENT.tmp"))

	writeFile(t, filepath.Join(d, "CURRENT.tmp"), "v2", true)
	must(t, os.Rename(filepath.Join(d, "CURRENT.tmp"), filepath.Join(d, "CURRENT")))
	syncPath(t, d)
	cut(t, fsys)
	wantContent(t, filepath.Join(d, "CURRENT"), "v2")
	wantMissing(t, filepath.Join(d, "CURRENT.tmp"))
}

func TestCreateLostWithoutDirSync(t *testing.T) {
	fsys, d := mountTest(t)
	writeFile(t, filepath.Join(d, "a"), "data", true) // file synced, entry not
	must(t, os.Mkdir(filepath.Join(d, "sub"), 0o755))
	cut(t, fsys)
	wantMissing(t, filepath.Join(d, "a"))
	wantMissing(t, filepath.Join(d, "sub"))
}

func TestCreateWithDirSyncButNoFileSync(t *testing.T) {
	fsys, d := mountTest(t)
	writeFile(t, filepath.Join(d, "a"), "data", false)
	syncPath(t, d)
	cut(t, fsys)
	wantContent(t, filepath.Join(d, "a"), "")
}

func TestUnlinkUndoneWithoutDirSync(t *testing.T) {
	fsys, d := mountTest(t)
	p := durableFile(t, d, "a", "keep me")
	must(t, os.Remove(p))
	wantMissing(t, p)
	cut(t, fsys)
	wantContent(t, p, "keep me")

	must(t, os.Remove(p))
	syncPath(t, d)
	cut(t, fsys)
	wantMissing(t, p)
}

func TestRmdirUndone(t *testing.T) {
	fsys, d := mountTest(t)
	sub := filepath.Join(d, "sub")
	must(t, os.Mkdir(sub, 0o750))
	syncPath(t, d)
	durableFile(t, sub, "f", "inner")
	must(t, os.Remove(filepath.Join(sub, "f")))
	must(t, os.Remove(sub))
	cut(t, fsys)
	wantContent(t, filepath.Join(sub, "f"), "inner")
	fi, err := os.Stat(sub)
	must(t, err)
	if fi.Mode().Perm() != 0o750 {
		t.Fatalf("sub mode %v, want 0750", fi.Mode().Perm())
	}
}

func TestRenameOverUndone(t *testing.T) {
	fsys, d := mountTest(t)
	durableFile(t, d, "a", "A")
	durableFile(t, d, "b", "B")
	must(t, os.Rename(filepath.Join(d, "a"), filepath.Join(d, "b")))
	wantContent(t, filepath.Join(d, "b"), "A")
	cut(t, fsys)
	wantContent(t, filepath.Join(d, "a"), "A")
	wantContent(t, filepath.Join(d, "b"), "B")
}

func TestHardLinkLostWithoutDirSync(t *testing.T) {
	fsys, d := mountTest(t)
	durableFile(t, d, "a", "sst")
	must(t, os.Mkdir(filepath.Join(d, "chk"), 0o755))
	syncPath(t, d)
	must(t, os.Link(filepath.Join(d, "a"), filepath.Join(d, "chk", "a")))
	cut(t, fsys)
	wantContent(t, filepath.Join(d, "a"), "sst")
	wantMissing(t, filepath.Join(d, "chk", "a"))
}

func TestTruncateUndone(t *testing.T) {
	fsys, d := mountTest(t)
	p := durableFile(t, d, "a", "hello world")
	must(t, os.Truncate(p, 3))
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("XY"), 1)
	must(t, err)
	must(t, f.Truncate(20))
	must(t, f.Close())
	cut(t, fsys)
	wantContent(t, p, "hello world")

	writeFile(t, p, "new", false) // O_TRUNC, unsynced
	cut(t, fsys)
	wantContent(t, p, "hello world")
}

// TestRocksDBCheckpointSequence is what a RocksDB checkpoint and eddy's
// _metadata do: SSTs written and fsynced, hard-linked into a new directory,
// that directory fsynced, then the source unlinked (compaction) without a
// directory fsync.
func TestRocksDBCheckpointSequence(t *testing.T) {
	fsys, d := mountTest(t)
	db := filepath.Join(d, "db")
	must(t, os.Mkdir(db, 0o755))
	syncPath(t, d)
	writeFile(t, filepath.Join(db, "000007.sst"), strings.Repeat("s", 100000), true)
	writeFile(t, filepath.Join(db, "MANIFEST-000001"), "manifest", true)
	syncPath(t, db)

	chk := filepath.Join(d, "chk-1")
	must(t, os.Mkdir(chk, 0o755))
	must(t, os.Link(filepath.Join(db, "000007.sst"), filepath.Join(chk, "000007.sst")))
	writeFile(t, filepath.Join(chk, "MANIFEST-000001"), "manifest", true)
	writeFile(t, filepath.Join(chk, "_metadata.tmp"), "meta", true)
	must(t, os.Rename(filepath.Join(chk, "_metadata.tmp"), filepath.Join(chk, "_metadata")))
	syncPath(t, chk)
	syncPath(t, d)
	must(t, os.Remove(filepath.Join(db, "000007.sst")))

	cut(t, fsys)
	wantContent(t, filepath.Join(chk, "000007.sst"), strings.Repeat("s", 100000))
	wantContent(t, filepath.Join(chk, "_metadata"), "meta")
	wantContent(t, filepath.Join(chk, "MANIFEST-000001"), "manifest")
	wantContent(t, filepath.Join(db, "000007.sst"), strings.Repeat("s", 100000))
	var a, b syscall.Stat_t
	must(t, syscall.Stat(filepath.Join(chk, "000007.sst"), &a))
	must(t, syscall.Stat(filepath.Join(db, "000007.sst"), &b))
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Fatalf("checkpoint SST and source: inodes %d and %d, nlink %d; want one inode, two links", a.Ino, b.Ino, a.Nlink)
	}
}

func TestOpenHandleFailsAfterCut(t *testing.T) {
	fsys, d := mountTest(t)
	p := durableFile(t, d, "a", "x")
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	must(t, err)
	_, err = f.WriteString("y")
	must(t, err)
	cut(t, fsys)
	if _, err := f.WriteString("z"); !errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, syscall.EIO) {
		t.Fatalf("write on a handle from before the cut: %v, want ENOTCONN or EIO", err)
	}
	_ = f.Close() // works, whatever it reports
	wantContent(t, p, "x")
	// The file system works after the cut.
	writeFile(t, filepath.Join(d, "b"), "after", true)
	syncPath(t, d)
	cut(t, fsys)
	wantContent(t, filepath.Join(d, "b"), "after")
}

func TestHiddenDirectory(t *testing.T) {
	_, d := mountTest(t)
	p := durableFile(t, d, "a", "x")
	must(t, os.Remove(p)) // moves the durable inode into the hidden directory
	ents, err := os.ReadDir(d)
	must(t, err)
	if len(ents) != 0 {
		t.Fatalf("root lists %v, want nothing", ents)
	}
	if _, err := os.Stat(filepath.Join(d, ".powercut")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("hidden directory visible: %v", err)
	}
	if err := os.Mkdir(filepath.Join(d, ".powercut"), 0o755); err == nil {
		t.Fatal("mkdir .powercut in the root succeeded")
	}
}

func TestUnmountLeavesNoMount(t *testing.T) {
	fsys := powercut.Mount(t, t.TempDir())
	writeFile(t, filepath.Join(fsys.Dir(), "a"), "x", false)
	must(t, fsys.Cut())
	fsys.Unmount()
	mounts, err := os.ReadFile("/proc/mounts")
	must(t, err)
	if bytes.Contains(mounts, []byte(fsys.Dir())) {
		t.Fatalf("%s still mounted after Unmount", fsys.Dir())
	}
}

// TestFullBackingDisk: a power-cut file system over a full tmpfs reports
// ENOSPC to its users, and a cut still works.
func TestFullBackingDisk(t *testing.T) {
	fsys := powercut.Mount(t, diskfull.Tmpfs(t, 8<<20))
	d := fsys.Dir()
	durableFile(t, d, "a", "kept")
	release := diskfull.Fill(t, d)
	f, err := os.OpenFile(filepath.Join(d, "a"), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.Write(make([]byte, 64<<10))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write to a full disk: %v, want ENOSPC", err)
	}
	must(t, f.Close())
	release()
	cut(t, fsys)
	wantContent(t, filepath.Join(d, "a"), "kept")
}

// TestFlock: eddy's LOCK file works on the mount (the kernel keeps the
// locks), and a cut releases it, as a reboot does.
func TestFlock(t *testing.T) {
	fsys, d := mountTest(t)
	p := durableFile(t, d, "LOCK", "")
	lock := func() (*os.File, error) {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		must(t, err)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
	a, err := lock()
	must(t, err)
	if _, err := lock(); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Fatalf("second flock: %v, want EWOULDBLOCK", err)
	}
	cut(t, fsys)
	b, err := lock()
	if err != nil {
		t.Fatalf("flock after the cut: %v", err)
	}
	_ = a.Close()
	must(t, b.Close())
}

// TestCopyFileRange: io.Copy between two files uses copy_file_range; the
// copy goes through the journal like any write.
func TestCopyFileRange(t *testing.T) {
	fsys, d := mountTest(t)
	src := durableFile(t, d, "src", strings.Repeat("s", 70000))
	dst := durableFile(t, d, "dst", "old")
	in, err := os.Open(src)
	must(t, err)
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	must(t, err)
	n, err := io.Copy(out, in)
	must(t, err)
	must(t, errors.Join(in.Close(), out.Close()))
	if n != 70000 {
		t.Fatalf("copied %d bytes", n)
	}
	wantContent(t, dst, strings.Repeat("s", 70000))
	cut(t, fsys)
	wantContent(t, dst, "old")
}
