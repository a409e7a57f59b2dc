// Package diskspace watches the free space of the file systems eddy
// writes to and says when one falls below its budget (disk.min_free), so
// that intake can pause before a write fails, and when it has room again.
//
// A Watcher polls statfs(2) for each of its paths every Interval, on a
// ticker the caller may inject (tests drive it by hand). A path is low
// while its free bytes (those an unprivileged writer may use, f_bavail)
// are below the threshold; it recovers once they are at or above it.
// Every change is logged at warning (low) or info (recovered) once, and
// passed to OnChange.
package diskspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Usage is what statfs reports for one file system.
type Usage struct {
	Free  uint64 // bytes available to an unprivileged writer
	Total uint64 // bytes of the file system
}

// Statfs returns the Usage of the file system holding path.
func Statfs(path string) (Usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Usage{}, fmt.Errorf("diskspace: statfs %s: %w", path, err)
	}
	return Usage{Free: st.Bavail * uint64(st.Bsize), Total: st.Blocks * uint64(st.Bsize)}, nil
}

// Threshold is a free-space budget: Bytes, or Percent of the file system,
// or, with both set, whichever is smaller. Zero never runs low.
type Threshold struct {
	Bytes   uint64
	Percent float64 // 0..100
}

// Min returns the budget in bytes for a file system of total bytes.
func (t Threshold) Min(total uint64) uint64 {
	pct := uint64(t.Percent / 100 * float64(total))
	switch {
	case t.Percent > 0 && t.Bytes > 0:
		return min(pct, t.Bytes)
	case t.Percent > 0:
		return pct
	}
	return t.Bytes
}

// PathStatus is the last sample of one watched path.
type PathStatus struct {
	Path    string `json:"path"`
	Free    uint64 `json:"free_bytes"`
	Total   uint64 `json:"total_bytes"`
	MinFree uint64 `json:"min_free_bytes"`
	Low     bool   `json:"low"`
	// Missing is the part of MinFree that is the disk reserve not held now
	// (Options.Missing): a released reserve is counted as needed room.
	Missing uint64 `json:"reserve_missing_bytes,omitempty"`
	Error   string `json:"error,omitempty"` // statfs failed; the path keeps its previous state
}

// Options configure a Watcher.
type Options struct {
	Paths     []string
	Threshold Threshold
	Interval  time.Duration // default 1 s
	// Statfs is nil for the real one (tests inject a fake).
	Statfs func(path string) (Usage, error)
	// Tick is nil for a time.Ticker of Interval (tests send ticks by hand).
	Tick <-chan time.Time
	// OnChange is called, on the watcher's goroutine, whenever the set of
	// low paths goes from empty to non-empty or back, with the low paths.
	OnChange func(low []string)
	// Missing, if set, returns bytes added to the threshold of path, whose
	// file system is sampled at u: the part of a disk reserve (Reserve)
	// that is not held now, so that the path stays low until there is room
	// to make it again.
	Missing func(path string, u Usage) uint64
	// OnSample, if set, is called on the watcher's goroutine after every
	// sample with its status, before OnChange.
	OnSample func(status []PathStatus)
	Logger   *slog.Logger // nil: discard
}

// Watcher samples free space; see the package documentation.
type Watcher struct {
	o   Options
	log *slog.Logger

	mu     sync.Mutex
	status []PathStatus
	low    bool
}

// New returns a Watcher; Run polls.
func New(o Options) (*Watcher, error) {
	if len(o.Paths) == 0 {
		return nil, errors.New("diskspace: no paths to watch")
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Statfs == nil {
		o.Statfs = Statfs
	}
	w := &Watcher{o: o, log: o.Logger}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	for _, p := range o.Paths {
		w.status = append(w.status, PathStatus{Path: p})
	}
	return w, nil
}

// Run samples once at once, then at every tick, until ctx is done.
func (w *Watcher) Run(ctx context.Context) error {
	tick := w.o.Tick
	if tick == nil {
		t := time.NewTicker(w.o.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		w.Sample()
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		}
	}
}

// Sample reads every path once, logs and reports a change (OnChange), and
// returns the low paths. Run calls it; call it directly only without Run.
func (w *Watcher) Sample() []string {
	status := make([]PathStatus, len(w.o.Paths))
	w.mu.Lock()
	copy(status, w.status)
	w.mu.Unlock()
	var low []string
	for i, p := range w.o.Paths {
		s := &status[i]
		u, err := w.o.Statfs(p)
		if err != nil {
			if s.Error == "" {
				w.log.Warn("cannot read free disk space", "path", p, "err", err)
			}
			s.Error = err.Error()
		} else {
			s.Error = ""
			s.Free, s.Total, s.MinFree, s.Missing = u.Free, u.Total, w.o.Threshold.Min(u.Total), 0
			if w.o.Missing != nil {
				s.Missing = w.o.Missing(p, u)
				s.MinFree += s.Missing
			}
			was := s.Low
			s.Low = s.Free < s.MinFree
			switch {
			case s.Low && !was:
				w.log.Warn("disk below its free-space budget: intake paused, checkpoints and truncation go on",
					"path", p, "free_bytes", s.Free, "min_free_bytes", s.MinFree, "total_bytes", s.Total)
			case !s.Low && was:
				w.log.Info("disk has room again", "path", p, "free_bytes", s.Free, "min_free_bytes", s.MinFree)
			}
		}
		if s.Low {
			low = append(low, p)
		}
	}
	w.mu.Lock()
	w.status = status
	changed := w.low != (len(low) > 0)
	w.low = len(low) > 0
	w.mu.Unlock()
	if w.o.OnSample != nil {
		w.o.OnSample(slices.Clone(status))
	}
	if changed && w.o.OnChange != nil {
		w.o.OnChange(slices.Clone(low))
	}
	return low
}

// Status returns the last sample of every path.
func (w *Watcher) Status() []PathStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.status)
}

// Low reports whether a path was below its budget at the last sample.
func (w *Watcher) Low() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.low
}
