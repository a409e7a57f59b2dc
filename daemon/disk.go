package daemon

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oklog/run"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/storage/diskspace"
	"github.com/eddy-stream/eddy/storage/ingestlog"
)

// The disk budget: a watcher samples the free space of data_dir's file
// system and of each file sink's directory every second; while one is
// below disk.min_free every ingest log is paused (PauseDiskFull), so the
// ingests stop acknowledging and the broker holds new messages. Records
// already appended still become durable and are acknowledged; checkpoints
// and truncation go on. Intake resumes when every path has room again.

// PauseDiskFull is the reason an ingest log is paused while a watched
// file system is below disk.min_free.
const PauseDiskFull = "disk_full"

// pauseReasons are the values of eddy_intake_paused's reason label.
var pauseReasons = []string{PauseDiskFull, ingestlog.PauseFull, ingestlog.PauseError, PauseSpoolFull}

// diskState is the daemon's disk watcher and the hooks tests inject.
type diskState struct {
	statfs func(string) (diskspace.Usage, error) // nil: the real statfs
	tick   <-chan time.Time                      // nil: every second

	mu      sync.Mutex
	watcher *diskspace.Watcher // set by the disk actor
	low     bool               // a watched path is below disk.min_free
	room    chan struct{}      // closed when low turns false; nil while not low
}

// waitRoom returns true at once if no watched path is below
// disk.min_free, or when none is any more; false if done or stop closes
// first.
func (s *diskState) waitRoom(done, stop <-chan struct{}) bool {
	s.mu.Lock()
	room := s.room
	s.mu.Unlock()
	if room == nil {
		return true
	}
	select {
	case <-room:
		return true
	case <-done:
		return false
	case <-stop:
		return false
	}
}

// setLow records whether a watched path is below disk.min_free, waking
// waitRoom when none is any more.
func (s *diskState) setLow(low bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case low && !s.low:
		s.room = make(chan struct{})
	case !low && s.low:
		close(s.room)
		s.room = nil
	}
	s.low = low
}

// isLow reports whether a watched path is below disk.min_free.
func (s *diskState) isLow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.low
}

// diskPaths returns data_dir and the directory of every file sink, once
// each.
func diskPaths(cfg *config.Config) []string {
	paths := []string{filepath.Clean(cfg.DataDir)}
	for _, s := range cfg.Sinks {
		if s.File != nil {
			if dir := filepath.Dir(cfg.Path(s.File.Path)); !slices.Contains(paths, dir) {
				paths = append(paths, dir)
			}
		}
	}
	return paths
}

// addDisk runs the disk watcher (disk.min_free and disk.reserve 0 turn
// it off). It also makes the disk reserve (reserve.go) when there is room.
func (d *Daemon) addDisk(g *run.Group, r *runState) {
	bytes, pct, err := d.cfg.Disk.MinFreeBudget()
	if err != nil || (bytes == 0 && pct == 0 && d.reserve.r == nil) {
		return // Validate refused err already
	}
	w, err := diskspace.New(diskspace.Options{
		Paths:     diskPaths(d.cfg),
		Threshold: diskspace.Threshold{Bytes: uint64(bytes), Percent: pct},
		Statfs:    d.disk.statfs, Tick: d.disk.tick,
		OnChange: func(low []string) { d.setDiskLow(len(low) > 0) },
		Missing:  d.reserveMissing,
		OnSample: d.reserveSample,
		Logger:   d.log.With("component", "disk"),
	})
	if err != nil {
		d.log.Warn("disk watcher not started", "err", err)
		return
	}
	d.disk.mu.Lock()
	d.disk.watcher = w
	d.disk.mu.Unlock()
	ctx, interrupt := r.actorContext()
	g.Add(func() error { return w.Run(ctx) }, interrupt)
}

// setDiskLow pauses or resumes every ingest log for PauseDiskFull.
func (d *Daemon) setDiskLow(low bool) {
	d.disk.setLow(low)
	for _, l := range d.logs {
		if low {
			l.Pause(PauseDiskFull)
		} else {
			l.Resume(PauseDiskFull)
		}
	}
	d.notify.statusNow()
}

func (d *Daemon) diskStatus() []diskspace.PathStatus {
	d.disk.mu.Lock()
	w := d.disk.watcher
	d.disk.mu.Unlock()
	if w == nil {
		return nil
	}
	return w.Status()
}

// intakePaused returns, sorted, why some source does not take messages
// now (pauseReasons), and one line saying where.
func (d *Daemon) intakePaused() (reasons []string, detail string) {
	var parts []string
	for _, s := range d.cfg.Sources {
		l := d.logs[s.Name]
		if l == nil {
			continue
		}
		for _, r := range l.Paused() {
			if !slices.Contains(reasons, r) {
				reasons = append(reasons, r)
			}
			switch r {
			case ingestlog.PauseFull:
				parts = append(parts, fmt.Sprintf("ingest log of source %s is full (ingest_log.max_size)", s.Name))
			case ingestlog.PauseError:
				parts = append(parts, fmt.Sprintf("ingest log of source %s recovers from: %v", s.Name, l.Broken()))
			}
		}
	}
	if slices.Contains(reasons, PauseDiskFull) {
		for _, p := range d.diskStatus() {
			if p.Low {
				if p.Missing > 0 {
					parts = append(parts, fmt.Sprintf("%s has %s free, below disk.min_free %s plus %s to make the disk reserve again",
						p.Path, humanBytes(p.Free), humanBytes(p.MinFree-p.Missing), humanBytes(p.Missing)))
				} else {
					parts = append(parts, fmt.Sprintf("%s has %s free, below disk.min_free %s",
						p.Path, humanBytes(p.Free), humanBytes(p.MinFree)))
				}
			}
		}
	}
	if slices.Contains(reasons, PauseSpoolFull) {
		parts = append(parts, d.spoolPaused()...)
	}
	slices.Sort(reasons)
	return reasons, strings.Join(parts, "; ")
}

// humanBytes renders 1.5GiB, 12.0MiB, 512B.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f%s", v, []string{"KiB", "MiB", "GiB", "TiB", "PiB"}[i])
}

// noSpace reports whether err is for lack of space: ENOSPC, or a RocksDB
// status saying so (RocksDB's errors are text).
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || strings.Contains(strings.ToLower(err.Error()), "no space left on device")
}
