package fileutil

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, data := range []string{"first", "second, longer", ""} {
		if err := WriteFileAtomic(p, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
		assertFile(t, p, data)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("perm = %v, want 0640", fi.Mode().Perm())
	}
	assertDir(t, dir, "f")
}

// TestWriteFileAtomicFS fails each operation of the write in turn and
// checks that the target holds its old content (or none) or the full new
// content, never a part, and that no .tmp file is left.
func TestWriteFileAtomicFS(t *testing.T) {
	newData := bytes.Repeat([]byte("new content "), 1000)
	for _, tc := range []struct {
		name string
		old  *string
	}{
		{"no previous file", nil},
		{"previous file", ptr("old content")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; ; i++ {
				dir := t.TempDir()
				p := filepath.Join(dir, "_metadata")
				if tc.old != nil {
					if err := os.WriteFile(p, []byte(*tc.old), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				efs := NewErrorFS(OSFS{}, i)
				err := WriteFileAtomicFS(efs, p, newData, 0o644)
				if !efs.Injected() {
					if err != nil {
						t.Fatalf("no fault injected, got %v", err)
					}
					assertFile(t, p, string(newData))
					if i != 6 {
						t.Errorf("succeeded after %d injected faults, want 6 steps", i)
					}
					return
				}
				if !errors.Is(err, ErrInjected) {
					t.Fatalf("op %d: err = %v, want ErrInjected", i, err)
				}
				got, rerr := os.ReadFile(p)
				switch {
				case errors.Is(rerr, fs.ErrNotExist) && tc.old == nil:
				case rerr == nil && tc.old != nil && string(got) == *tc.old:
				case rerr == nil && bytes.Equal(got, newData):
				default:
					t.Fatalf("op %d: target holds %d bytes (err %v): neither old nor new content", i, len(got), rerr)
				}
				if rerr == nil {
					assertDir(t, dir, "_metadata")
				} else {
					assertDir(t, dir)
				}
			}
		})
	}
}

func TestCreateDirAll(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		dir       string
		wantSyncs int
		wantErr   bool
	}{
		{"existing", root, 0, false},
		{"one level", "a", 1, false},
		{"three levels", "b/c/d", 3, false},
		{"below created", "b/c/d/e", 1, false},
		{"file in the way", "file/x", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir
			if !filepath.IsAbs(dir) {
				dir = filepath.Join(root, dir)
			}
			rec := &syncRecorder{FS: OSFS{}}
			err := CreateDirAllFS(rec, dir)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				t.Fatalf("%s not a directory: %v", dir, err)
			}
			if len(rec.synced) != tc.wantSyncs {
				t.Errorf("synced %v, want %d directories", rec.synced, tc.wantSyncs)
			}
		})
	}
}

type syncRecorder struct {
	FS
	synced []string
}

func (s *syncRecorder) SyncDir(dir string) error {
	s.synced = append(s.synced, dir)
	return s.FS.SyncDir(dir)
}

func TestRemoveTmp(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"keep", "a.tmp", "x.tmpl", "sub/b.tmp", "sub/keep", "chk-1.tmp/data", "chk-2/_metadata"} {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := RemoveTmp(root)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{filepath.Join(root, "a.tmp"), filepath.Join(root, "chk-1.tmp"), filepath.Join(root, "sub/b.tmp")}
	if !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	for _, f := range []string{"keep", "x.tmpl", "sub/keep", "chk-2/_metadata"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := RemoveTmp(filepath.Join(root, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing root: err = %v, want ErrNotExist", err)
	}
}

func TestSameFilesystem(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		a, b string
		want bool
	}{
		{"same dir", dir, dir, true},
		{"missing subdir", dir, filepath.Join(dir, "x/y/z"), true},
		{"relative", ".", "./not-yet", true},
		{"proc", dir, "/proc/self", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SameFilesystem(tc.a, tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("SameFilesystem(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
	assertDir(t, dir)
}

func TestRenameBroken(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "chk-7")
	for _, want := range []string{p + ".broken", p + ".broken.1", p + ".broken.2"} {
		if err := os.WriteFile(p, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := RenameBroken(p)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("renamed to %s, want %s", got, want)
		}
		assertFile(t, got, want)
	}
	if _, err := RenameBroken(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want ErrNotExist", err)
	}
}

func TestErrorFS(t *testing.T) {
	dir := t.TempDir()
	count := NewErrorFS(OSFS{}, -1)
	if err := WriteFileAtomicFS(count, filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if count.Ops() != 6 || count.Injected() {
		t.Fatalf("ops = %d, injected = %v; want 6, false", count.Ops(), count.Injected())
	}
	efs := NewErrorFS(OSFS{}, 1)
	if _, err := efs.Stat(dir); err != nil {
		t.Fatalf("op 0: %v", err)
	}
	_, err := efs.Stat(dir)
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Op != "stat" || pe.Path != dir || !errors.Is(err, ErrInjected) {
		t.Fatalf("op 1: err = %v, want injected stat error", err)
	}
	if _, err := efs.Stat(dir); err != nil || !efs.Injected() {
		t.Fatalf("op 2: err = %v, injected = %v", err, efs.Injected())
	}
}

func assertFile(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s holds %d bytes, want %d", path, len(got), len(want))
	}
}

// assertDir checks that dir holds exactly the entries names.
func assertDir(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, names) {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
}

func ptr[T any](v T) *T { return &v }
