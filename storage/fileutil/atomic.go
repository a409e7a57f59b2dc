package fileutil

import (
	"errors"
	"os"
	"path/filepath"
)

// AtomicFile is a file being written to replace path in one step: the
// bytes go to path+".tmp", and Commit fsyncs them, renames the tmp file to
// path and fsyncs path's directory. Until Commit returns nil a reader (and
// a power cut) sees the old path or none, never part of the new one. Abort
// (or a failed Commit) removes the tmp file; Abort after Commit is a no-op,
// so `defer f.Abort()` is the usual pattern.
type AtomicFile struct {
	fs   FS
	f    File
	path string
	tmp  string
	done bool
}

// CreateAtomic starts an atomic replacement of path through fsys.
func CreateAtomic(fsys FS, path string, perm os.FileMode) (*AtomicFile, error) {
	tmp := path + tmpSuffix
	f, err := fsys.Create(tmp, perm)
	if err != nil {
		return nil, err
	}
	return &AtomicFile{fs: fsys, f: f, path: path, tmp: tmp}, nil
}

// Write appends p to the pending file.
func (a *AtomicFile) Write(p []byte) (int, error) { return a.f.Write(p) }

// Name returns the final path.
func (a *AtomicFile) Name() string { return a.path }

// Commit makes the written bytes path's content durably. When it fails,
// path holds either its previous content (or does not exist) or, if only
// the final directory fsync failed, all of the new bytes.
func (a *AtomicFile) Commit() error {
	if a.done {
		return errors.New("fileutil: atomic file already committed or aborted")
	}
	a.done = true
	err := a.f.Sync()
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = a.fs.Rename(a.tmp, a.path)
	}
	if err != nil {
		return errors.Join(err, a.fs.Remove(a.tmp))
	}
	return a.fs.SyncDir(filepath.Dir(a.path))
}

// Abort discards the pending file. It is a no-op after Commit or Abort.
func (a *AtomicFile) Abort() error {
	if a.done {
		return nil
	}
	a.done = true
	return errors.Join(a.f.Close(), a.fs.Remove(a.tmp))
}

// Rename renames oldpath to newpath (see RenameFS).
func Rename(oldpath, newpath string) error { return RenameFS(OSFS{}, oldpath, newpath) }

// RenameFS renames oldpath to newpath and fsyncs the directory of newpath
// (and that of oldpath when it differs), so the rename survives a power
// cut. The caller fsyncs the file's content first where that matters.
func RenameFS(fsys FS, oldpath, newpath string) error {
	if err := fsys.Rename(oldpath, newpath); err != nil {
		return err
	}
	od, nd := filepath.Dir(oldpath), filepath.Dir(newpath)
	if err := fsys.SyncDir(nd); err != nil {
		return err
	}
	if od != nd {
		return fsys.SyncDir(od)
	}
	return nil
}
