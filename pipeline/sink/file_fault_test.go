package sink

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// syncFS tracks what a power cut would keep: a file written or truncated
// since its last fsync is dirty, and so is a directory whose entries
// changed (create, rename, remove) since its last fsync.
type syncFS struct {
	fileutil.FS
	mu    sync.Mutex
	files map[string]*syncNode // path → file
	dirs  map[string]bool      // dirty directories
}

type syncNode struct{ dirty bool }

func newSyncFS() *syncFS {
	return &syncFS{FS: fileutil.OSFS{}, files: map[string]*syncNode{}, dirs: map[string]bool{}}
}

// undurable describes what is not durable yet; "" when everything is.
func (s *syncFS) undurable() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for p, n := range s.files {
		if n.dirty {
			out = append(out, "unsynced data in "+filepath.Base(p))
		}
	}
	for d, dirty := range s.dirs {
		if dirty {
			out = append(out, "unsynced entries in "+d)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func (s *syncFS) node(name string, created bool) *syncNode {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.files[name]
	if n == nil {
		n = &syncNode{}
		s.files[name] = n
		if created {
			s.dirs[filepath.Dir(name)] = true
		}
	}
	return n
}

func (s *syncFS) Create(name string, perm os.FileMode) (fileutil.File, error) {
	return s.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, perm)
}

func (s *syncFS) OpenFile(name string, flag int, perm os.FileMode) (fileutil.File, error) {
	_, statErr := os.Stat(name)
	f, err := s.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &syncFile{File: f, fs: s, n: s.node(name, statErr != nil)}, nil
}

func (s *syncFS) Rename(oldpath, newpath string) error {
	if err := s.FS.Rename(oldpath, newpath); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.files[oldpath]
	if n == nil {
		n = &syncNode{}
	}
	delete(s.files, oldpath)
	s.files[newpath] = n
	s.dirs[filepath.Dir(oldpath)], s.dirs[filepath.Dir(newpath)] = true, true
	return nil
}

func (s *syncFS) Remove(name string) error {
	if err := s.FS.Remove(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.files, name)
	s.dirs[filepath.Dir(name)] = true
	return nil
}

func (s *syncFS) SyncDir(dir string) error {
	if err := s.FS.SyncDir(dir); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirs[dir] = false
	return nil
}

type syncFile struct {
	fileutil.File
	fs *syncFS
	n  *syncNode
}

func (f *syncFile) mark(dirty bool) {
	f.fs.mu.Lock()
	f.n.dirty = dirty
	f.fs.mu.Unlock()
}

func (f *syncFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if n > 0 {
		f.mark(true)
	}
	return n, err
}

func (f *syncFile) Truncate(size int64) error {
	err := f.File.Truncate(size)
	if err == nil {
		f.mark(true)
	}
	return err
}

func (f *syncFile) Sync() error {
	err := f.File.Sync()
	if err == nil {
		f.mark(false)
	}
	return err
}

// readLines returns the lines of path.N … path.1, path: oldest first.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	var files []string
	for i := 1; ; i++ {
		p := fmt.Sprintf("%s.%d", path, i)
		if _, err := os.Stat(p); err != nil {
			break
		}
		files = append(files, p)
	}
	slices.Reverse(files)
	files = append(files, path)
	var lines []string
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s ends in a torn line: %q", filepath.Base(p), b)
		}
		for l := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
	}
	return lines
}

// TestFileFailEveryOperation fails each file-system operation of a run that
// rotates several times per batch, in turn, and retries each batch as the
// job's release loop does (Write, then Flush, again until both succeed).
// After every confirmed batch everything written is durable (fsynced data,
// fsynced directory entries), and in the end every line is in the files
// exactly once, in order.
func TestFileFailEveryOperation(t *testing.T) {
	const maxSize, perBatch, batches = 100, 4, 6
	var lines []Output
	for i := range perBatch * batches {
		lines = append(lines, Output{Payload: fmt.Appendf(nil, `{"id":"r%02d","pad":"%s"}`, i, strings.Repeat("x", 10))})
	}
	ctx := context.Background()
	for failAt := 0; ; failAt++ {
		path := filepath.Join(t.TempDir(), "out", "results.jsonl")
		track := newSyncFS()
		efs := fileutil.NewErrorFS(track, failAt)
		s, err := NewFile(path, maxSize, 100, WithFS(efs))
		if err != nil {
			if !errors.Is(err, fileutil.ErrInjected) {
				t.Fatalf("fail at %d: open: %v", failAt, err)
			}
			if s, err = NewFile(path, maxSize, 100, WithFS(efs)); err != nil {
				t.Fatalf("fail at %d: open again: %v", failAt, err)
			}
		}
		if d := track.undurable(); d != "" {
			t.Fatalf("fail at %d: opened, but %s", failAt, d)
		}
		for b := range batches {
			batch := lines[b*perBatch : (b+1)*perBatch]
			for attempt := 0; ; attempt++ {
				err := s.Write(ctx, batch)
				if err == nil {
					err = s.Flush(ctx)
				}
				if err == nil {
					break
				}
				if !errors.Is(err, fileutil.ErrInjected) || attempt > 0 {
					t.Fatalf("fail at %d: batch %d attempt %d: %v", failAt, b, attempt, err)
				}
			}
			if d := track.undurable(); d != "" {
				t.Fatalf("fail at %d: batch %d confirmed, but %s", failAt, b, d)
			}
		}
		if err := s.Close(); err != nil && !errors.Is(err, fileutil.ErrInjected) {
			t.Fatalf("fail at %d: close: %v", failAt, err)
		}
		var want []string
		for _, o := range lines {
			want = append(want, string(o.Payload))
		}
		if got := readLines(t, path); !slices.Equal(got, want) {
			t.Fatalf("fail at %d: the files hold\n%s\nwant\n%s", failAt, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if !efs.Injected() {
			if failAt < 20 {
				t.Fatalf("only %d operations: the run did not rotate", failAt)
			}
			return
		}
	}
}
