package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// CreateCheckpoint writes a native RocksDB checkpoint of every column
// family into dir, which must not exist (its parent is created). Memtables
// are flushed first (log_size_for_flush 0), SST files are hard-linked, and
// MANIFEST, CURRENT and OPTIONS are copied. RocksDB builds the checkpoint
// in dir+".tmp", renames it and syncs dir; the parent is synced here,
// through the DB's Options.FS.
//
// An error flushing the memtables marks d failed (see DB); other errors
// fail only the checkpoint.
//
// The checkpoint is consistent across column families as long as no other
// goroutine writes to d meanwhile: the task calls it from its own goroutine
// between records.
func (d *DB) CreateCheckpoint(dir string) error {
	start := time.Now()
	d.mu.RLock()
	defer d.mu.RUnlock()
	if err := d.usable(); err != nil {
		return err
	}
	if _, err := d.fs.Stat(dir); err == nil {
		return fmt.Errorf("state: create checkpoint: %s already exists", dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("state: create checkpoint: %w", err)
	}
	parent := filepath.Dir(dir)
	if err := fileutil.CreateDirAllFS(d.fs, parent); err != nil {
		return fmt.Errorf("state: create checkpoint: %w", err)
	}
	// The flush writes through the DB's own file writers: an error marks d
	// failed. After it, RocksDB's checkpoint has nothing to flush (no
	// other goroutine writes meanwhile), and what it writes are new files
	// in the checkpoint directory; its errors fail the checkpoint only.
	if err := d.flush(); err != nil {
		return err
	}
	flushed := time.Since(start)
	cp, err := d.db.NewCheckpoint()
	if err != nil {
		return fmt.Errorf("state: create checkpoint object: %w", err)
	}
	defer cp.Destroy()
	if err := cp.CreateCheckpoint(dir, 0); err != nil {
		return fmt.Errorf("state: create checkpoint %s: %w", dir, err)
	}
	if err := d.fs.SyncDir(parent); err != nil {
		return fmt.Errorf("state: create checkpoint: %w", err)
	}
	d.log.Debug("state: created checkpoint", "dir", dir, "took", time.Since(start), "flush", flushed)
	return nil
}

// immutable reports whether RocksDB never changes the file called name
// once written, so that a restore may hard-link it.
func immutable(name string) bool {
	return strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".blob")
}

// OpenFromCheckpoint restores a checkpoint made by CreateCheckpoint into
// the new working directory workDir and opens it with o (o.Dir is
// ignored). This is task-local recovery without copying data: every SST is
// hard-linked, and only the small mutable files (MANIFEST, CURRENT,
// OPTIONS, an empty WAL) are copied, because the working DB rewrites them.
// The checkpoint stays intact and can be restored again. workDir must not
// exist; it is removed again if the restore fails. When checkpointDir and
// workDir are on different filesystems the error wraps ErrCrossDevice.
// Copies, fsyncs and directory operations go through o.FS (the copies
// with fileutil.CopyFileFS, and workDir and its new parents are fsynced
// in their directories), so the working DB survives a power cut whole.
// Once open, the SST files are read into the page cache in the background
// if they fit in half the available memory (warmPageCache), so that the
// replay after a recovery does not pay a disk read per key.
func OpenFromCheckpoint(checkpointDir, workDir string, o Options) (_ *DB, err error) {
	start := time.Now()
	fsys := o.fs(o.Logger)
	if _, err := fsys.Stat(workDir); err == nil {
		return nil, fmt.Errorf("state: restore checkpoint: %s already exists", workDir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("state: restore checkpoint: %w", err)
	}
	entries, err := fsys.ReadDir(checkpointDir)
	if err != nil {
		return nil, fmt.Errorf("state: restore checkpoint: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, fsys.RemoveAll(workDir))
		}
	}()
	if err := fileutil.CreateDirAllFS(fsys, workDir); err != nil {
		return nil, fmt.Errorf("state: restore checkpoint: %w", err)
	}
	var linked, copied int
	var ssts []string
	var sstBytes int64
	for _, e := range entries {
		src, dst := filepath.Join(checkpointDir, e.Name()), filepath.Join(workDir, e.Name())
		switch {
		case !e.Type().IsRegular():
			return nil, fmt.Errorf("state: restore checkpoint: %s is not a regular file", src)
		case immutable(e.Name()):
			if err := os.Link(src, dst); errors.Is(err, syscall.EXDEV) {
				return nil, fmt.Errorf("state: link sst file %s: %w: %w", src, ErrCrossDevice, err)
			} else if err != nil {
				return nil, fmt.Errorf("state: link sst file: %w", err)
			}
			linked++
			if info, err := e.Info(); err == nil {
				ssts = append(ssts, dst)
				sstBytes += info.Size()
			}
		default:
			if err := fileutil.CopyFileFS(fsys, src, dst, 0o644); err != nil {
				return nil, fmt.Errorf("state: copy checkpoint file: %w", err)
			}
			copied++
		}
	}
	if err := fsys.SyncDir(workDir); err != nil {
		return nil, fmt.Errorf("state: restore checkpoint: %w", err)
	}
	o.Dir = workDir
	d, err := Open(o)
	if err != nil {
		return nil, err
	}
	d.log.Info("state: restored checkpoint", "checkpoint", checkpointDir, "dir", workDir,
		"linked", linked, "copied", copied, "took", time.Since(start))
	warmPageCache(ssts, sstBytes, d.log)
	return d, nil
}
