package fileutil

import (
	"errors"
	"os"
	"sync/atomic"
)

// ErrInjected is the error ErrorFS injects, wrapped in an *os.PathError
// naming the operation and path.
var ErrInjected = errors.New("fileutil: injected error")

// ErrorFS wraps an FS and fails exactly one operation: the one numbered
// failAt, counting from 0 every call of an FS method and of a method of a
// File it opened. The failed operation is not performed. Tests loop over
// failAt = 0, 1, 2, ... until a run completes with Injected() false, which
// fails every step of a durable write in turn (pebble's vfs/errorfs).
type ErrorFS struct {
	fs       FS
	failAt   int64
	ops      atomic.Int64
	injected atomic.Bool
}

var _ FS = (*ErrorFS)(nil)

// NewErrorFS returns an ErrorFS over fs that fails operation failAt; a
// negative failAt fails nothing and just counts.
func NewErrorFS(fs FS, failAt int) *ErrorFS {
	return &ErrorFS{fs: fs, failAt: int64(failAt)}
}

// Injected reports whether the error has been injected.
func (e *ErrorFS) Injected() bool { return e.injected.Load() }

// Ops returns the number of operations so far.
func (e *ErrorFS) Ops() int { return int(e.ops.Load()) }

func (e *ErrorFS) fail(op, path string) error {
	if e.ops.Add(1)-1 != e.failAt {
		return nil
	}
	e.injected.Store(true)
	return &os.PathError{Op: op, Path: path, Err: ErrInjected}
}

func (e *ErrorFS) Create(name string, perm os.FileMode) (File, error) {
	if err := e.fail("create", name); err != nil {
		return nil, err
	}
	f, err := e.fs.Create(name, perm)
	return e.wrap(f, name, err)
}

func (e *ErrorFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if err := e.fail("open", name); err != nil {
		return nil, err
	}
	f, err := e.fs.OpenFile(name, flag, perm)
	return e.wrap(f, name, err)
}

func (e *ErrorFS) wrap(f File, name string, err error) (File, error) {
	if err != nil {
		return nil, err
	}
	return &errorFile{f, e, name}, nil
}

func (e *ErrorFS) Rename(oldpath, newpath string) error {
	if err := e.fail("rename", oldpath); err != nil {
		return err
	}
	return e.fs.Rename(oldpath, newpath)
}

func (e *ErrorFS) Remove(name string) error {
	if err := e.fail("remove", name); err != nil {
		return err
	}
	return e.fs.Remove(name)
}

func (e *ErrorFS) RemoveAll(path string) error {
	if err := e.fail("removeall", path); err != nil {
		return err
	}
	return e.fs.RemoveAll(path)
}

func (e *ErrorFS) MkdirAll(dir string, perm os.FileMode) error {
	if err := e.fail("mkdir", dir); err != nil {
		return err
	}
	return e.fs.MkdirAll(dir, perm)
}

func (e *ErrorFS) ReadDir(dir string) ([]os.DirEntry, error) {
	if err := e.fail("readdir", dir); err != nil {
		return nil, err
	}
	return e.fs.ReadDir(dir)
}

func (e *ErrorFS) Stat(name string) (os.FileInfo, error) {
	if err := e.fail("stat", name); err != nil {
		return nil, err
	}
	return e.fs.Stat(name)
}

func (e *ErrorFS) SyncDir(dir string) error {
	if err := e.fail("syncdir", dir); err != nil {
		return err
	}
	return e.fs.SyncDir(dir)
}

type errorFile struct {
	f    File
	e    *ErrorFS
	name string
}

func (f *errorFile) Read(p []byte) (int, error) {
	if err := f.e.fail("read", f.name); err != nil {
		return 0, err
	}
	return f.f.Read(p)
}

func (f *errorFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.e.fail("read", f.name); err != nil {
		return 0, err
	}
	return f.f.ReadAt(p, off)
}

func (f *errorFile) Write(p []byte) (int, error) {
	if err := f.e.fail("write", f.name); err != nil {
		return 0, err
	}
	return f.f.Write(p)
}

func (f *errorFile) Stat() (os.FileInfo, error) {
	if err := f.e.fail("stat", f.name); err != nil {
		return nil, err
	}
	return f.f.Stat()
}

func (f *errorFile) Sync() error {
	if err := f.e.fail("sync", f.name); err != nil {
		return err
	}
	return f.f.Sync()
}

func (f *errorFile) Truncate(size int64) error {
	if err := f.e.fail("truncate", f.name); err != nil {
		return err
	}
	return f.f.Truncate(size)
}

// Close always closes the underlying file, so that an injected failure
// leaks no descriptor.
func (f *errorFile) Close() error {
	return errors.Join(f.e.fail("close", f.name), f.f.Close())
}
