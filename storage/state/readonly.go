package state

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/linxGnu/grocksdb"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// OpenCheckpointReadOnly opens a copy of the native checkpoint in
// checkpointDir (what CreateCheckpoint made) read-only, for looking at
// the state (eddy state inspect). It never writes under checkpointDir: it
// builds scratchDir (which must not exist) from it, hard-linking the
// immutable SST and blob files, or copying them when scratchDir is on
// another filesystem, and copying the small files (MANIFEST, CURRENT,
// OPTIONS, WAL), and opens that copy with RocksDB's read-only mode, which
// takes no lock that a running eddy holds. The caller removes scratchDir
// after Close. Every write on the returned DB fails.
func OpenCheckpointReadOnly(checkpointDir, scratchDir string, log *slog.Logger) (*DB, error) {
	if _, err := os.Stat(scratchDir); err == nil {
		return nil, fmt.Errorf("state: open checkpoint read-only: %s already exists", scratchDir)
	}
	entries, err := os.ReadDir(checkpointDir)
	if err != nil {
		return nil, fmt.Errorf("state: open checkpoint read-only: %w", err)
	}
	if err := os.MkdirAll(scratchDir, 0o755); err != nil {
		return nil, fmt.Errorf("state: open checkpoint read-only: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		src, dst := filepath.Join(checkpointDir, e.Name()), filepath.Join(scratchDir, e.Name())
		if immutable(e.Name()) {
			err := os.Link(src, dst)
			if errors.Is(err, syscall.EXDEV) {
				err = fileutil.CopyFile(src, dst, 0o444)
			}
			if err != nil {
				return nil, fmt.Errorf("state: open checkpoint read-only: %w", err)
			}
			continue
		}
		if err := fileutil.CopyFile(src, dst, 0o644); err != nil {
			return nil, fmt.Errorf("state: open checkpoint read-only: %w", err)
		}
	}
	return openReadOnly(scratchDir, log)
}

// openReadOnly opens the RocksDB instance in dir read-only, every column
// family it has.
func openReadOnly(dir string, log *slog.Logger) (_ *DB, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mem, err := NewMemory(MemoryOptions{Managed: 8 << 20})
	if err != nil {
		return nil, fmt.Errorf("state: open db read-only: %w", err)
	}
	d := &DB{dir: dir, log: log, fs: fileutil.OSFS{Logger: log}, mem: mem, ownMem: true,
		readOnly: true, byName: map[string]*CF{}, iters: map[*Iterator]struct{}{}}
	defer func() {
		if err != nil {
			d.destroyOptions()
			mem.Close()
		}
	}()
	table := grocksdb.NewDefaultBlockBasedTableOptions()
	defer table.Destroy()
	table.SetBlockSize(blockSize)
	if _, err := mem.acquire(table); err != nil {
		return nil, fmt.Errorf("state: open db read-only: %w", err)
	}
	defer func() {
		if err != nil {
			mem.release()
		}
	}()
	dbOpts := grocksdb.NewDefaultOptions()
	d.opts = append(d.opts, dbOpts)
	setInfoLog(dbOpts, filepath.Join(dir, "LOG"), 1<<20, grocksdb.WarnInfoLogLevel)
	names, err := grocksdb.ListColumnFamilies(dbOpts, dir)
	if err != nil {
		return nil, fmt.Errorf("state: open db read-only %s: %w", dir, err)
	}
	for range names {
		d.opts = append(d.opts, d.cfOptions(CFOptions{}, table))
	}
	db, handles, err := grocksdb.OpenDbForReadOnlyColumnFamilies(dbOpts, dir, names, d.opts[1:], false)
	if err != nil {
		return nil, fmt.Errorf("state: open db read-only %s: %w", dir, err)
	}
	d.attach(db, names, handles)
	return d, nil
}
