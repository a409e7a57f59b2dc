package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/diskspace"
)

// The disk reserve (disk.reserve): data_dir/_reserve, a preallocated file
// holding back the space a checkpoint, a state-store rebuild or a restore
// needs, so that eddy can recover on a disk something else filled. When
// one of them fails for lack of space the reserve is deleted and the
// operation retried at once; the disk watcher counts the missing reserve
// as part of disk.min_free (intake stays paused until there is room for
// both) and makes the file again on the first sample with that much free.

// reserveState is the disk reserve and what sizes it.
type reserveState struct {
	r            *diskspace.Reserve // nil: disk.reserve 0
	auto         bool
	fixed        int64 // with !auto
	writeBuffers int64 // managed memory for memtables: what a checkpoint flushes at most

	mu       sync.Mutex
	maxNew   int64  // largest checkpointed size (new bytes) of a checkpoint seen
	total    uint64 // size of data_dir's file system at the last sample
	releases int    // times released for an operation
	released bool   // released, not made again yet
	failed   bool   // the last attempt to make it failed (logged once)
}

// ReserveStatus is the disk reserve in /api/v1/overview.
type ReserveStatus struct {
	Path string `json:"path"`
	// Bytes is what the file holds now: 0 after a release until the disk
	// has disk.min_free plus Want free again.
	Bytes int64 `json:"bytes"`
	Want  int64 `json:"want_bytes"`
	// Released: the reserve was given to a checkpoint, a state-store
	// rebuild or a restore and is not made again yet.
	Released bool `json:"released"`
	Releases int  `json:"releases"`
}

// openReserve adopts or prepares data_dir/_reserve (disk.reserve); the
// disk watcher makes it.
func (d *Daemon) openReserve() error {
	auto, size, err := d.cfg.Disk.ReserveSize()
	if err != nil || (!auto && size == 0) {
		return nil // Validate refused err already; 0: no reserve
	}
	r, err := diskspace.OpenReserve(d.layout.Reserve())
	if err != nil {
		return err
	}
	d.reserve.r, d.reserve.auto, d.reserve.fixed = r, auto, int64(size)
	if d.memory != nil {
		d.reserve.writeBuffers = d.memory.DBWriteBufferSize() * int64(d.memory.Options().NumDBs)
	}
	return nil
}

// want returns the size the reserve should have on a file system of total
// bytes (0: not known yet).
func (s *reserveState) want() int64 {
	if !s.auto {
		return s.fixed
	}
	s.mu.Lock()
	n, total := s.writeBuffers+s.maxNew, s.total
	s.mu.Unlock()
	return autoReserve(n, total)
}

// autoReserve is disk.reserve auto for need bytes (write buffers plus the
// largest checkpointed size) on a file system of total bytes.
func autoReserve(need int64, total uint64) int64 {
	const mib = int64(config.MiB)
	n := max((need+mib-1)/mib*mib, int64(config.ReserveAutoMin))
	n = min(n, int64(config.ReserveAutoMax))
	if total > 0 {
		n = min(n, int64(float64(total)*config.ReserveAutoMaxPercent/100)/mib*mib)
	}
	return n
}

// noteCheckpoint records the new bytes of a completed (or restored)
// checkpoint, which disk.reserve auto sizes the reserve for.
func (s *reserveState) noteCheckpoint(md *checkpoint.Metadata) {
	if md == nil || s.r == nil {
		return
	}
	s.mu.Lock()
	s.maxNew = max(s.maxNew, md.CheckpointedSize())
	s.mu.Unlock()
}

// reserveMissing is the part of the reserve that is not held now: the disk
// watcher adds it to data_dir's disk.min_free.
func (d *Daemon) reserveMissing(path string, u diskspace.Usage) uint64 {
	s := &d.reserve
	if s.r == nil || path != filepath.Clean(d.cfg.DataDir) {
		return 0
	}
	s.mu.Lock()
	s.total = u.Total
	s.mu.Unlock()
	return uint64(max(0, s.want()-s.r.Size()))
}

// reserveSample makes or resizes the reserve when data_dir's file system
// has disk.min_free plus the missing part free (the watcher's OnSample).
func (d *Daemon) reserveSample(status []diskspace.PathStatus) {
	s := &d.reserve
	if s.r == nil {
		return
	}
	dir := filepath.Clean(d.cfg.DataDir)
	for _, p := range status {
		if p.Path != dir || p.Error != "" {
			continue
		}
		want, have := s.want(), s.r.Size()
		// Grow when there is room beyond disk.min_free for the rest
		// (p.MinFree counts what was missing at this sample); an auto
		// reserve never shrinks while eddy runs, a fixed one follows
		// disk.reserve.
		if want == have || (have > want && s.auto) || (have < want && (p.Free < p.MinFree || p.Missing < uint64(want-have))) {
			return
		}
		err := s.r.Ensure(want)
		s.mu.Lock()
		logFail := err != nil && !s.failed
		s.failed = err != nil
		released := s.released
		if err == nil {
			s.released = false
		}
		s.mu.Unlock()
		switch {
		case logFail:
			d.log.Warn("cannot make the disk reserve; retrying when the disk has room", "path", s.r.Path(), "bytes", want, "err", err)
		case err == nil && released:
			d.log.Info("disk reserve made again: the disk has room", "path", s.r.Path(), "bytes", want, "free_bytes", p.Free)
		case err == nil:
			d.log.Info("disk reserve made", "path", s.r.Path(), "bytes", want, "was_bytes", have)
		}
		return
	}
}

// releaseReserve gives the reserve's space to op (a checkpoint, a state
// store rebuild, a restore) that failed for lack of space with err, and
// reports whether there was any to give: then op is retried at once.
func (d *Daemon) releaseReserve(op string, err error) bool {
	s := &d.reserve
	if s.r == nil || s.r.Size() == 0 {
		return false
	}
	n, rerr := s.r.Release()
	if rerr != nil {
		d.log.Error("cannot release the disk reserve", "path", s.r.Path(), "err", rerr)
		return false
	}
	s.mu.Lock()
	s.releases++
	s.released = true
	s.mu.Unlock()
	d.log.Warn("disk full: released the disk reserve for "+op+"; retrying it now, the reserve is made again when the disk has disk.min_free plus the reserve free",
		"path", s.r.Path(), "bytes", n, "err", err)
	d.notify.statusNow()
	return true
}

// reserveOnNoSpace is the job's OnNoSpace hook: a checkpoint failed for
// lack of space. The reserve is released and a checkpoint triggered at
// once (on its own goroutine: the hook runs on the coordinator's).
func (d *Daemon) reserveOnNoSpace(id int64, err error) {
	if !d.releaseReserve(fmt.Sprintf("checkpoint %d", id), err) {
		return
	}
	d.mu.RLock()
	job := d.job
	d.mu.RUnlock()
	if job == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*d.cfg.Checkpointing.Timeout+time.Minute)
		defer cancel()
		id, err := job.TriggerCheckpoint(ctx)
		if err != nil {
			d.log.Warn("checkpoint retried on the disk reserve failed", "checkpoint", id, "err", err)
			return
		}
		d.log.Info("checkpoint retried on the disk reserve completed", "checkpoint", id)
	}()
}

// reserveStatus is the reserve for the overview (nil: disk.reserve 0).
func (d *Daemon) reserveStatus() *ReserveStatus {
	s := &d.reserve
	if s.r == nil {
		return nil
	}
	st := &ReserveStatus{Path: s.r.Path(), Bytes: s.r.Size(), Want: s.want()}
	s.mu.Lock()
	st.Releases, st.Released = s.releases, s.released
	s.mu.Unlock()
	return st
}
