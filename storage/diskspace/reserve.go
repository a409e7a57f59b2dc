package diskspace

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// Reserve is a preallocated file that holds disk space back so that it
// can be given to an operation that must not fail for lack of space (a
// checkpoint, a restore): Release deletes it, Ensure makes it again.
//
// The file's blocks are really allocated (fallocate(2), or zeros written
// where the file system does not support it) and fsynced, so the space is
// taken from the file system at once, not on a later write. Ensure writes
// path.tmp and renames it over path (fileutil.Rename fsyncs the
// directory): a crash leaves either no reserve, the old one, or a *.tmp
// leftover that eddy's start removes.
type Reserve struct {
	path string
	// fallocate is unix.Fallocate (tests inject ENOSPC or EOPNOTSUPP).
	fallocate func(fd int, mode uint32, off, size int64) error

	mu   sync.Mutex
	size int64 // bytes the file holds; 0: there is none
}

// OpenReserve returns the reserve at path, adopting a file that is already
// there (from an earlier run) with the blocks it holds.
func OpenReserve(path string) (*Reserve, error) {
	r := &Reserve{path: path, fallocate: unix.Fallocate}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("diskspace: reserve %s: %w", path, err)
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("diskspace: reserve %s is not a regular file", path)
	default:
		r.size = allocated(st)
	}
	return r, nil
}

// allocated returns the bytes of st's file that are really allocated, at
// most its size (a sparse file holds back nothing).
func allocated(st os.FileInfo) int64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return min(st.Size(), s.Blocks*512)
	}
	return st.Size()
}

// Path is the reserve file.
func (r *Reserve) Path() string { return r.path }

// Size returns the bytes the reserve holds now (0: released or never made).
func (r *Reserve) Size() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.size
}

// Ensure makes the reserve hold size bytes: it creates the file, or
// replaces one of another size (removing the old one first, so growing
// needs room only for size). It fails with ENOSPC (errors.Is) when the
// file system has no room; after a failure there is no reserve (Size 0).
func (r *Reserve) Ensure(size int64) error {
	if size <= 0 {
		_, err := r.Release()
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.size == size {
		return nil
	}
	if r.size > 0 {
		// Growing beside the old file would need room for both: give the
		// old one back first (the caller checked there is room for size).
		if err := r.removeLocked(); err != nil {
			return err
		}
	}
	tmp := r.path + ".tmp"
	if err := r.write(tmp, size); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := fileutil.Rename(tmp, r.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("diskspace: reserve: %w", err)
	}
	r.size = size
	return nil
}

// write allocates size bytes to a new file at name and fsyncs it.
func (r *Reserve) write(name string, size int64) error {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("diskspace: reserve: %w", err)
	}
	err = r.fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		err = writeZeros(f, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("diskspace: reserve %s of %d bytes: %w", name, size, err)
	}
	return nil
}

// writeZeros fills f with size zero bytes, for file systems without
// fallocate.
func writeZeros(f *os.File, size int64) error {
	buf := make([]byte, min(size, 1<<20))
	for done := int64(0); done < size; {
		n, err := f.Write(buf[:min(int64(len(buf)), size-done)])
		done += int64(n)
		if err != nil {
			return err
		}
	}
	return nil
}

// Release deletes the reserve file, giving its space back to the file
// system, and returns how many bytes it held (0: there was none).
func (r *Reserve) Release() (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.size
	if err := r.removeLocked(); err != nil {
		return 0, err
	}
	return n, nil
}

func (r *Reserve) removeLocked() error {
	err := os.Remove(r.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("diskspace: release reserve: %w", err)
	}
	r.size = 0
	if err == nil {
		// The space is free once the unlink is done; the directory fsync
		// only keeps a crash from bringing the file back.
		if err := fileutil.SyncDir(filepath.Dir(r.path)); err != nil {
			return fmt.Errorf("diskspace: release reserve: %w", err)
		}
	}
	return nil
}
