package fileutil

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"syscall"
	"testing"
)

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, c *CrashFS, name, data string, sync bool) {
	t.Helper()
	f, err := c.Create(name, 0o644)
	must(t, err)
	_, err = f.Write([]byte(data))
	must(t, err)
	if sync {
		must(t, f.Sync())
	}
	must(t, f.Close())
}

// content returns the file's content, or "<none>" if it does not exist.
func content(t *testing.T, c *CrashFS, name string) string {
	t.Helper()
	b, err := c.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return "<none>"
	}
	must(t, err)
	return string(b)
}

func TestCrashFSDurability(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(t *testing.T, c *CrashFS)
		want map[string]string // path → content after a crash
	}{
		{
			name: "unsynced write is lost",
			do: func(t *testing.T, c *CrashFS) {
				writeFile(t, c, "/d/a", "one", true)
				must(t, c.SyncDir("/d"))
				f, err := c.OpenFile("/d/a", os.O_WRONLY|os.O_APPEND, 0)
				must(t, err)
				_, err = f.Write([]byte("two"))
				must(t, err)
				must(t, f.Close())
			},
			want: map[string]string{"/d/a": "one"},
		},
		{
			name: "fsynced write is kept",
			do: func(t *testing.T, c *CrashFS) {
				writeFile(t, c, "/d/a", "one", true)
				must(t, c.SyncDir("/d"))
				f, err := c.OpenFile("/d/a", os.O_WRONLY|os.O_APPEND, 0)
				must(t, err)
				_, err = f.Write([]byte("two"))
				must(t, err)
				must(t, f.Sync())
				_, err = f.Write([]byte("three"))
				must(t, err)
				must(t, f.Close())
			},
			want: map[string]string{"/d/a": "onetwo"},
		},
		{
			name: "create is lost without a directory fsync",
			do: func(t *testing.T, c *CrashFS) {
				writeFile(t, c, "/d/a", "one", true)
			},
			want: map[string]string{"/d/a": "<none>"},
		},
		{
			name: "created file without an fsync survives empty",
			do: func(t *testing.T, c *CrashFS) {
				writeFile(t, c, "/d/a", "one", false)
				must(t, c.SyncDir("/d"))
			},
			want: map[string]string{"/d/a": ""},
		},
		{
			name: "rename is undone without a directory fsync",
			do: func(t *testing.T, c *CrashFS) {
				writeFile(t, c, "/d/a", "old", true)
				must(t, c.SyncDir("/d"))
				writeFile(t, c, "/d/a.tmp", "new", true)
				must(t, c.Rename("/d/a.tmp", "/d/a"))
			},
			// a.tmp's entry was never synced either: only the old a is left.
			want: map[string]string{"/d/a": "old", "/d/a.tmp": "<none>"},
		},
		{
			name: "rename is kept with a directory fsync",
			do: func(t *testing.T, c *CrashFS) {
				writeFile(t, c, "/d/a", "old", true)
				must(t, c.SyncDir("/d"))
				writeFile(t, c, "/d/a.tmp", "new", true)
				must(t, c.Rename("/d/a.tmp", "/d/a"))
				must(t, c.SyncDir("/d"))
			},
			want: map[string]string{"/d/a": "new", "/d/a.tmp": "<none>"},
		},
		{
			name: "rename across directories needs both fsyncs",
			do: func(t *testing.T, c *CrashFS) {
				must(t, c.MkdirAll("/x", 0o755))
				must(t, c.MkdirAll("/y", 0o755))
				must(t, c.SyncDir("/"))
				writeFile(t, c, "/x/a", "data", true)
				must(t, c.SyncDir("/x"))
				must(t, c.Rename("/x/a", "/y/a"))
				must(t, c.SyncDir("/y")) // /x not synced: a is in both
			},
			want: map[string]string{"/x/a": "data", "/y/a": "data"},
		},
		{
			name: "directory lost without a parent fsync takes its files along",
			do: func(t *testing.T, c *CrashFS) {
				must(t, c.MkdirAll("/d/e", 0o755))
				writeFile(t, c, "/d/e/a", "data", true)
				must(t, c.SyncDir("/d/e"))
			},
			want: map[string]string{"/d/e/a": "<none>"},
		},
		{
			name: "remove is undone without a directory fsync",
			do: func(t *testing.T, c *CrashFS) {
				writeFile(t, c, "/d/a", "data", true)
				must(t, c.SyncDir("/d"))
				must(t, c.Remove("/d/a"))
			},
			want: map[string]string{"/d/a": "data"},
		},
		{
			name: "truncate is lost without an fsync",
			do: func(t *testing.T, c *CrashFS) {
				writeFile(t, c, "/d/a", "data", true)
				must(t, c.SyncDir("/d"))
				f, err := c.OpenFile("/d/a", os.O_RDWR, 0)
				must(t, err)
				must(t, f.Truncate(1))
				must(t, f.Close())
			},
			want: map[string]string{"/d/a": "data"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCrashFS()
			must(t, c.MkdirAll("/d", 0o755))
			must(t, c.SyncDir("/"))
			tc.do(t, c)
			crashed := c.CrashClone()
			for p, want := range tc.want {
				if got := content(t, crashed, p); got != want {
					t.Errorf("after the crash %s = %q, want %q", p, got, want)
				}
			}
			// The crashed FS is fully durable: crashing again changes nothing.
			again := crashed.CrashClone()
			for p, want := range tc.want {
				if got := content(t, again, p); got != want {
					t.Errorf("after a second crash %s = %q, want %q", p, got, want)
				}
			}
		})
	}
}

func TestCrashFSAtomicHelpersSurvive(t *testing.T) {
	c := NewCrashFS()
	must(t, CreateDirAllFS(c, "/data/sub"))
	must(t, WriteFileAtomicFS(c, "/data/sub/a", []byte("one"), 0o644))
	a, err := CreateAtomic(c, "/data/sub/b", 0o644)
	must(t, err)
	_, err = a.Write([]byte("two"))
	must(t, err)
	must(t, a.Commit())
	crashed := c.CrashClone()
	if got := content(t, crashed, "/data/sub/a"); got != "one" {
		t.Errorf("a = %q", got)
	}
	if got := content(t, crashed, "/data/sub/b"); got != "two" {
		t.Errorf("b = %q", got)
	}
	must(t, CopyFileFS(c, "/data/sub/a", "/data/sub/c", 0o644))
	must(t, c.SyncDir("/data/sub"))
	if got := content(t, c.CrashClone(), "/data/sub/c"); got != "one" {
		t.Errorf("c = %q", got)
	}
}

// TestCrashFSCrashAfter checks that CrashAfter(i) sees exactly the first
// i mutating operations.
func TestCrashFSCrashAfter(t *testing.T) {
	var seen []string
	for i := 1; ; i++ {
		c := NewCrashFS()
		c.CrashAfter(i)
		must(t, WriteFileAtomicFS(c, "/a", []byte("x"), 0o644))
		crashed := c.Crashed()
		if crashed == nil {
			if i != c.Ops()+1 {
				t.Fatalf("no crash clone after op %d of %d", i, c.Ops())
			}
			break
		}
		seen = append(seen, content(t, crashed, "/a"))
	}
	// create, write, sync, rename: a does not exist yet; syncdir: it does.
	if want := []string{"<none>", "<none>", "<none>", "<none>", "x"}; !slices.Equal(seen, want) {
		t.Fatalf("after each op: %q, want %q", seen, want)
	}
}

func TestCrashFSFileSemantics(t *testing.T) {
	c := NewCrashFS()
	must(t, c.MkdirAll("/d", 0o755))
	if _, err := c.OpenFile("/d/a", os.O_RDONLY, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open missing: %v", err)
	}
	f, err := c.OpenFile("/d/a", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	must(t, err)
	if _, err := c.OpenFile("/d/a", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("O_EXCL on existing: %v", err)
	}
	_, err = f.Write([]byte("hello world"))
	must(t, err)
	buf := make([]byte, 5)
	if n, err := f.ReadAt(buf, 6); n != 5 || err != nil || string(buf) != "world" {
		t.Fatalf("ReadAt = %d %v %q", n, err, buf)
	}
	if n, err := f.ReadAt(buf, 8); n != 3 || err != io.EOF {
		t.Fatalf("ReadAt past end = %d %v", n, err)
	}
	must(t, f.Truncate(5))
	fi, err := f.Stat()
	must(t, err)
	if fi.Size() != 5 || fi.Name() != "a" || fi.IsDir() {
		t.Fatalf("Stat = %v %v %v", fi.Size(), fi.Name(), fi.IsDir())
	}
	must(t, f.Close())
	if err := f.Close(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("double close: %v", err)
	}

	r, err := c.OpenFile("/d/a", os.O_RDONLY, 0)
	must(t, err)
	if _, err := r.Write([]byte("x")); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("write to read-only: %v", err)
	}
	b, err := io.ReadAll(r)
	must(t, err)
	if string(b) != "hello" {
		t.Fatalf("read %q", b)
	}
	must(t, r.Close())

	w, err := c.OpenFile("/d/a", os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = w.Write([]byte("!"))
	must(t, err)
	must(t, w.Close())
	if got := content(t, c, "/d/a"); got != "hello!" {
		t.Fatalf("after append %q", got)
	}

	if err := c.Remove("/d"); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("remove non-empty dir: %v", err)
	}
	if err := c.Rename("/d", "/d/e"); err == nil {
		t.Fatal("renamed a directory into itself")
	}
	must(t, c.MkdirAll("/d/e/f", 0o755))
	if err := c.MkdirAll("/d/a/x", 0o755); !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("mkdir under a file: %v", err)
	}
	es, err := c.ReadDir("/d")
	must(t, err)
	if len(es) != 2 || es[0].Name() != "a" || es[0].IsDir() || es[1].Name() != "e" || !es[1].IsDir() {
		t.Fatalf("ReadDir = %v", es)
	}
	must(t, c.RemoveAll("/d/e"))
	must(t, c.RemoveAll("/d/missing"))
	must(t, c.RemoveAll("/nowhere/at/all"))
	if _, err := c.Stat("/d/e/f"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat after RemoveAll: %v", err)
	}
	must(t, c.Rename("/d/a", "/d/b"))
	if _, err := c.Stat("/d/a"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("old name after rename: %v", err)
	}
	if got := content(t, c, "/d/b"); got != "hello!" {
		t.Fatalf("after rename %q", got)
	}
}

func TestCorruptionError(t *testing.T) {
	cause := errors.New("checksum mismatch")
	var err error = &CorruptionError{Path: "/x/seg", Offset: 12, Err: cause}
	if got, want := err.Error(), "corrupt file /x/seg at byte 12: checksum mismatch"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	wrapped := errors.Join(errors.New("open"), err)
	if !IsCorruption(wrapped) || !errors.Is(wrapped, cause) {
		t.Errorf("IsCorruption/Is on %v", wrapped)
	}
	err = &CorruptionError{Path: "/x/_metadata", Offset: -1, Reason: "missing"}
	if got, want := err.Error(), "corrupt file /x/_metadata: missing"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
