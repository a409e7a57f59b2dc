package state

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// CreateCheckpoint writes a native RocksDB checkpoint of every column
// family into dir, which must not exist (its parent is created). Memtables
// are flushed first (log_size_for_flush 0), SST files are hard-linked, and
// MANIFEST, CURRENT and OPTIONS are copied. RocksDB builds the checkpoint
// in dir+".tmp", renames it and syncs dir; the parent is synced here.
//
// The checkpoint is consistent across column families as long as no other
// goroutine writes to d meanwhile: the task calls it from its own goroutine
// between records.
func (d *DB) CreateCheckpoint(dir string) error {
	start := time.Now()
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return ErrClosed
	}
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("state: create checkpoint: %s already exists", dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("state: create checkpoint: %w", err)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("state: create checkpoint: %w", err)
	}
	cp, err := d.db.NewCheckpoint()
	if err != nil {
		return fmt.Errorf("state: create checkpoint object: %w", err)
	}
	defer cp.Destroy()
	if err := cp.CreateCheckpoint(dir, 0); err != nil {
		return fmt.Errorf("state: create checkpoint %s: %w", dir, err)
	}
	if err := syncDir(parent); err != nil {
		return fmt.Errorf("state: create checkpoint: %w", err)
	}
	d.log.Debug("state: created checkpoint", "dir", dir, "took", time.Since(start))
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
func OpenFromCheckpoint(checkpointDir, workDir string, o Options) (_ *DB, err error) {
	start := time.Now()
	if _, err := os.Lstat(workDir); err == nil {
		return nil, fmt.Errorf("state: restore checkpoint: %s already exists", workDir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("state: restore checkpoint: %w", err)
	}
	entries, err := os.ReadDir(checkpointDir)
	if err != nil {
		return nil, fmt.Errorf("state: restore checkpoint: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(workDir), 0o755); err != nil {
		return nil, fmt.Errorf("state: restore checkpoint: %w", err)
	}
	if err := os.Mkdir(workDir, 0o755); err != nil {
		return nil, fmt.Errorf("state: restore checkpoint: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, os.RemoveAll(workDir))
		}
	}()
	var linked, copied int
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
		default:
			if err := copyFile(src, dst); err != nil {
				return nil, fmt.Errorf("state: copy checkpoint file: %w", err)
			}
			copied++
		}
	}
	if err := syncDir(workDir); err != nil {
		return nil, fmt.Errorf("state: restore checkpoint: %w", err)
	}
	if err := syncDir(filepath.Dir(workDir)); err != nil {
		return nil, fmt.Errorf("state: restore checkpoint: %w", err)
	}
	o.Dir = workDir
	d, err := Open(o)
	if err != nil {
		return nil, err
	}
	d.log.Info("state: restored checkpoint", "checkpoint", checkpointDir, "dir", workDir,
		"linked", linked, "copied", copied, "took", time.Since(start))
	return d, nil
}

// copyFile copies src to the new file dst and syncs it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	return errors.Join(err, out.Close())
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}
