package checkpoint

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// Verify checks the files of checkpoint md.ID against md. Every listed
// file must exist as a regular file with the recorded size. With full,
// the CRC32C of every file is recomputed; without, only that of the
// non-SST files (MANIFEST, CURRENT, OPTIONS, the task state file: small,
// and of the kind that is rewritten rather than created once), so a
// damaged SST of unchanged size goes unnoticed. Files are checked in
// parallel, at most GOMAXPROCS at a time.
//
// Damage is reported as a *fileutil.CorruptionError naming the first bad
// file in (task, file) order; a file that cannot be read because of an I/O error
// (EIO) counts as damaged. Other errors, such as permission denied, are
// returned as they are.
func (s *Store) Verify(md *Metadata, full bool) error {
	type check struct {
		path string
		f    File
	}
	var checks []check
	for _, task := range md.TaskNames() {
		dir := s.TaskDir(md.ID, task)
		for _, f := range md.Tasks[task].Files {
			checks = append(checks, check{filepath.Join(dir, f.Name), f})
		}
	}
	errs := make([]error, len(checks))
	var next atomic.Int64
	var first atomic.Int64 // lowest index that failed so far
	first.Store(int64(len(checks)))
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(checks)) {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= first.Load() { // also i ≥ len(checks)
					return
				}
				c := checks[i]
				if err := s.verifyFile(c.path, c.f, full || !c.f.SST); err != nil {
					errs[i] = err
					for {
						cur := first.Load()
						if i >= cur || first.CompareAndSwap(cur, i) {
							break
						}
					}
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) verifyFile(path string, f File, sum bool) error {
	corrupt := func(off int64, format string, args ...any) error {
		return &fileutil.CorruptionError{Path: path, Offset: off, Reason: fmt.Sprintf(format, args...)}
	}
	fi, err := s.fs.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return corrupt(-1, "missing")
	case errors.Is(err, syscall.EIO):
		return corrupt(-1, "cannot stat: %v", err)
	case err != nil:
		return fmt.Errorf("checkpoint: verify: %w", err)
	case !fi.Mode().IsRegular():
		return corrupt(-1, "not a regular file (%s)", fi.Mode().Type())
	case fi.Size() != f.Size:
		return corrupt(min(fi.Size(), f.Size), "size %d, metadata says %d", fi.Size(), f.Size)
	case !sum:
		return nil
	}
	crc, n, err := ChecksumFileFS(s.fs, path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return corrupt(-1, "missing")
	case errors.Is(err, syscall.EIO):
		return corrupt(n, "cannot read: %v", err)
	case err != nil:
		return fmt.Errorf("checkpoint: verify: %w", err)
	case n != f.Size:
		return corrupt(min(n, f.Size), "size %d, metadata says %d", n, f.Size)
	case crc != f.CRC32C:
		return corrupt(-1, "crc32c %08x, metadata says %08x", crc, f.CRC32C)
	}
	return nil
}
