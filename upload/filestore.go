package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// FileStore is a Store on a directory, typically a mounted network or
// removable file system (upload.remote: file:///mnt/backup/eddy). A key
// is a path below the root.
//
// Put streams the object through fileutil.CreateAtomic: <key>.tmp is
// written and fsynced, renamed to <key> and the directory fsynced. The
// rename is the commit, so a reader never sees a partial object and a
// crash leaves at most a *.tmp file. List reports such leftovers like any
// other object, so the uploader's orphan sweep removes them once they are
// older than its grace period. (One uploader writes an appliance's keys,
// so no two Puts of one key overlap.)
type FileStore struct {
	root string
	fs   fileutil.FS
}

// NewFileStore returns a store rooted at dir on the OS file system,
// creating it if needed.
func NewFileStore(dir string) (*FileStore, error) { return NewFileStoreFS(fileutil.OSFS{}, dir) }

// NewFileStoreFS returns a store rooted at dir that reads and writes
// through fsys (nil: the OS), creating dir if needed.
func NewFileStoreFS(fsys fileutil.FS, dir string) (*FileStore, error) {
	if fsys == nil {
		fsys = fileutil.OSFS{}
	}
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("upload: file store %q: need an absolute path", dir)
	}
	if err := fileutil.CreateDirAllFS(fsys, dir); err != nil {
		return nil, fmt.Errorf("upload: file store: %w", err)
	}
	return &FileStore{root: filepath.Clean(dir), fs: fsys}, nil
}

func (s *FileStore) String() string { return "file://" + s.root }

func (s *FileStore) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || slices.Contains(strings.Split(key, "/"), "..") {
		return "", fmt.Errorf("upload: bad key %q", key)
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

func (s *FileStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := s.put(ctx, p, r, size); err != nil {
		return fmt.Errorf("upload: put %s: %w", key, err)
	}
	return nil
}

func (s *FileStore) put(ctx context.Context, p string, r io.Reader, size int64) error {
	if err := fileutil.CreateDirAllFS(s.fs, filepath.Dir(p)); err != nil {
		return err
	}
	f, err := fileutil.CreateAtomic(s.fs, p, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("read %d bytes, want %d", n, size)
	}
	return f.Commit()
}

func (s *FileStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := s.fs.OpenFile(p, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("upload: get %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("upload: get %s: %w", key, err)
	}
	return f, nil
}

func (s *FileStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	fi, err := s.fs.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || err == nil && !fi.Mode().IsRegular() {
		return ObjectInfo{}, fmt.Errorf("upload: stat %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("upload: stat %s: %w", key, err)
	}
	return ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

func (s *FileStore) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	// Walk only the deepest directory that contains every match.
	start := s.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		p, err := s.path(prefix[:i])
		if err != nil {
			return nil, err
		}
		start = p
	}
	var out []ObjectInfo
	if err := s.walk(ctx, start, prefix, &out); err != nil {
		return nil, fmt.Errorf("upload: list %s: %w", prefix, err)
	}
	slices.SortFunc(out, func(a, b ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// walk appends the regular files below dir whose key starts with prefix.
// Entries that vanish during the walk are skipped.
func (s *FileStore) walk(ctx context.Context, dir, prefix string, out *[]ObjectInfo) error {
	entries, err := s.fs.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			if err := s.walk(ctx, p, prefix, out); err != nil {
				return err
			}
			continue
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		*out = append(*out, ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
	}
	return nil
}

// Delete removes the object and then the directories it leaves empty.
func (s *FileStore) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := s.fs.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("upload: delete %s: %w", key, err)
	}
	for d := filepath.Dir(p); d != s.root && strings.HasPrefix(d, s.root); d = filepath.Dir(d) {
		if s.fs.Remove(d) != nil {
			break
		}
	}
	return nil
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
