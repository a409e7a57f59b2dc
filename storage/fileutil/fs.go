package fileutil

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"time"
)

// SlowSync is the fsync duration above which OSFS logs a warning.
const SlowSync = time.Second

// File is an open file of an FS. *os.File implements it.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.Closer
	Stat() (os.FileInfo, error)
	Sync() error
	Truncate(size int64) error
}

// FS is the seam between durable-write code and the file system, so that
// tests can inject faults (see ErrorFS) and power cuts (see CrashFS).
// Every eddy store takes the FS it writes through. Methods mean what
// their os namesakes mean; SyncDir fsyncs a directory so that entries
// created, renamed or removed in it survive a power cut.
type FS interface {
	Create(name string, perm os.FileMode) (File, error) // read-write, created or truncated
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	RemoveAll(path string) error
	MkdirAll(dir string, perm os.FileMode) error
	ReadDir(dir string) ([]os.DirEntry, error)
	Stat(name string) (os.FileInfo, error)
	SyncDir(dir string) error
}

// OSFS is the operating system's file system. Every fsync it performs
// that takes longer than SlowSync is logged at warn level to Logger
// (nil: not logged), and every fsync's duration is passed to OnSync
// (nil: not observed), e.g. a Prometheus histogram.
type OSFS struct {
	Logger *slog.Logger
	OnSync func(time.Duration)
}

var _ FS = OSFS{}

func (fs OSFS) Create(name string, perm os.FileMode) (File, error) {
	return fs.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, perm)
}

func (fs OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f, fs}, nil
}

func (OSFS) Rename(oldpath, newpath string) error        { return os.Rename(oldpath, newpath) }
func (OSFS) Remove(name string) error                    { return os.Remove(name) }
func (OSFS) RemoveAll(path string) error                 { return os.RemoveAll(path) }
func (OSFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }
func (OSFS) ReadDir(dir string) ([]os.DirEntry, error)   { return os.ReadDir(dir) }
func (OSFS) Stat(name string) (os.FileInfo, error)       { return os.Stat(name) }

func (fs OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(osFile{d, fs}.Sync(), d.Close())
}

// osFile times Sync.
type osFile struct {
	*os.File
	fs OSFS
}

func (f osFile) Sync() error {
	start := time.Now()
	err := f.File.Sync()
	d := time.Since(start)
	if f.fs.OnSync != nil {
		f.fs.OnSync(d)
	}
	if d > SlowSync && f.fs.Logger != nil {
		f.fs.Logger.Warn("slow fsync", "path", f.Name(), "duration", d.String())
	}
	return err
}
