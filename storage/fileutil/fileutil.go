// Package fileutil holds the durable-write helpers every eddy store uses:
// atomic file replacement, directory fsync, creation of directory chains,
// copying a file durably, removal of *.tmp leftovers, quarantine of broken
// files, the one corruption error of every store (CorruptionError), and
// the FS seam that lets tests fail any single file-system operation
// (ErrorFS) or cut the power at any step (CrashFS).
//
// The rule they implement: a file that must survive a power cut is written
// as X.tmp, fsynced, renamed to X, and then X's directory is fsynced. A
// reader therefore sees either the old X (or none) or the complete new X,
// never a prefix of it; a crash leaves at most an X.tmp, which RemoveTmp
// deletes at the next start.
//
// Each helper Foo has a FooFS form taking the FS to use; Foo is FooFS on
// OSFS{} (no slow-fsync logging).
package fileutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

const tmpSuffix = ".tmp"

// WriteFileAtomic replaces path with data (see WriteFileAtomicFS).
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return WriteFileAtomicFS(OSFS{}, path, data, perm)
}

// WriteFileAtomicFS writes data to path+".tmp", fsyncs it, renames it to
// path and fsyncs path's directory. When it fails, path holds either its
// previous content (or does not exist) or, if only the final directory
// fsync failed, all of data; the .tmp file is removed where possible.
func WriteFileAtomicFS(fsys FS, path string, data []byte, perm os.FileMode) error {
	tmp := path + tmpSuffix
	f, err := fsys.Create(tmp, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err != nil {
		return errors.Join(err, fsys.Remove(tmp))
	}
	return fsys.SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs dir, making the creation, renaming and removal of its
// entries durable.
func SyncDir(dir string) error { return OSFS{}.SyncDir(dir) }

// CreateDirAll creates dir and any missing parents (see CreateDirAllFS).
func CreateDirAll(dir string) error { return CreateDirAllFS(OSFS{}, dir) }

// CreateDirAllFS is mkdir -p that also fsyncs the parent of every
// directory it creates, so the whole chain survives a power cut. An
// existing dir is not an error.
func CreateDirAllFS(fsys FS, dir string) error {
	var created []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		_, err := fsys.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		created = append(created, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if len(created) == 0 {
		return nil
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range created {
		if err := fsys.SyncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// RemoveTmp removes *.tmp leftovers under root (see RemoveTmpFS).
func RemoveTmp(root string) ([]string, error) { return RemoveTmpFS(OSFS{}, root) }

// RemoveTmpFS walks root and removes every file or directory whose name
// ends in ".tmp" (a directory with all its content), returning the paths
// removed. It stops at the first error.
func RemoveTmpFS(fsys FS, root string) ([]string, error) {
	var removed []string
	var walk func(dir string) error
	walk = func(dir string) error {
		entries, err := fsys.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			switch {
			case strings.HasSuffix(e.Name(), tmpSuffix):
				if err := fsys.RemoveAll(p); err != nil {
					return err
				}
				removed = append(removed, p)
			case e.IsDir():
				if err := walk(p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := walk(root)
	return removed, err
}

// RenameBroken moves path aside (see RenameBrokenFS).
func RenameBroken(path string) (string, error) { return RenameBrokenFS(OSFS{}, path) }

// RenameBrokenFS renames path to path+".broken", or to path+".broken.N"
// with the smallest N ≥ 1 that does not exist yet, fsyncs the directory
// and returns the new name. A file that fails verification is kept for a
// person to inspect, never deleted.
func RenameBrokenFS(fsys FS, path string) (string, error) {
	to := path + ".broken"
	for i := 1; ; i++ {
		_, err := fsys.Stat(to)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return "", err
		}
		to = fmt.Sprintf("%s.broken.%d", path, i)
	}
	if err := fsys.Rename(path, to); err != nil {
		return "", err
	}
	return to, fsys.SyncDir(filepath.Dir(path))
}

// SameFilesystem reports whether a and b are on one file system, so that
// hard links and renames between them work. A path that does not exist
// yet is judged by its nearest existing ancestor; nothing is created.
func SameFilesystem(a, b string) (bool, error) {
	da, err := device(a)
	if err != nil {
		return false, err
	}
	db, err := device(b)
	if err != nil {
		return false, err
	}
	return da == db, nil
}

func device(path string) (uint64, error) {
	p, err := filepath.Abs(path)
	if err != nil {
		return 0, err
	}
	for {
		fi, err := os.Stat(p)
		if err == nil {
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return 0, fmt.Errorf("fileutil: no device number for %s", p)
			}
			return uint64(st.Dev), nil
		}
		if !errors.Is(err, fs.ErrNotExist) || filepath.Dir(p) == p {
			return 0, err
		}
		p = filepath.Dir(p)
	}
}

// CopyFile copies src to the new file dst (see CopyFileFS).
func CopyFile(src, dst string, perm os.FileMode) error {
	return CopyFileFS(OSFS{}, src, dst, perm)
}

// CopyFileFS copies src to dst, which must not exist, and fsyncs dst. It
// does not fsync dst's directory: a caller copying several files into a
// directory calls SyncDir once at the end. On failure dst is removed
// where possible.
func CopyFileFS(fsys FS, src, dst string, perm os.FileMode) (err error) {
	in, err := fsys.OpenFile(src, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, in.Close()) }()
	out, err := fsys.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errors.Join(err, fsys.Remove(dst))
	}
	return nil
}

// ReadFileFS reads the whole file at path through fsys.
func ReadFileFS(fsys FS, path string) ([]byte, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(f)
	return data, errors.Join(err, f.Close())
}
