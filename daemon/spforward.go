package daemon

import (
	"context"
	"sync"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-stream/eddy/upload"
)

// Savepoints are store-and-forward like checkpoints: one that could not be
// put to upload.remote when it was taken (the uplink was down) stays local
// and is retried, with backoff, until the remote has it. At start every
// local savepoint is checked once against the remote (one stat of its
// _metadata), so a savepoint whose upload a crash cut short goes up too.

// Backoff bounds of the savepoint retries.
const (
	spRetryMin = 5 * time.Second
	spRetryMax = 5 * time.Minute
	// spUploadTimeout bounds one savepoint's upload attempt.
	spUploadTimeout = 15 * time.Minute
)

var savepointsNotUploaded = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "eddy_savepoints_not_uploaded",
	Help: "Local savepoints not yet in upload.remote (retried with backoff until they are)."})

// spForward is the daemon's savepoint forwarding state.
type spForward struct {
	poke chan struct{} // buffered 1: a savepoint was written and is not uploaded

	mu       sync.Mutex
	uploaded map[string]bool // names the remote holds (this process has seen)
}

func (f *spForward) init() {
	f.poke = make(chan struct{}, 1)
	f.uploaded = map[string]bool{}
}

func (f *spForward) markUploaded(name string) {
	f.mu.Lock()
	f.uploaded[name] = true
	f.mu.Unlock()
}

func (f *spForward) isUploaded(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.uploaded[name]
}

func (f *spForward) wake() {
	select {
	case f.poke <- struct{}{}:
	default:
	}
}

// addSavepointUploads runs the savepoint retries while a remote is
// configured.
func (d *Daemon) addSavepointUploads(g *run.Group, r *runState) {
	if d.remoteStore() == nil {
		return
	}
	ctx, interrupt := r.actorContext()
	g.Add(func() error {
		backoff := spRetryMin
		for {
			var wait <-chan time.Time
			t := time.NewTimer(backoff)
			if n := d.forwardSavepoints(ctx); n > 0 {
				wait = t.C
				backoff = min(2*backoff, spRetryMax)
			} else {
				backoff = spRetryMin
			}
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-d.spf.poke:
			case <-wait:
			}
			t.Stop()
		}
	}, interrupt)
}

// forwardSavepoints uploads every local savepoint the remote does not
// have yet and returns how many are still missing there.
func (d *Daemon) forwardSavepoints(ctx context.Context) int {
	st := d.remoteStore()
	list, err := d.savepointStore().List()
	if err != nil {
		d.log.Warn("savepoint uploads: listing the local savepoints", "err", err)
		return 1
	}
	missing := 0
	for _, e := range list {
		if e.Err != nil || d.spf.isUploaded(e.Name) {
			continue
		}
		octx, cancel := context.WithTimeout(ctx, spUploadTimeout)
		err := upload.UploadSavepoint(octx, st, upload.Layout{Appliance: d.cfg.ApplianceID}, e.Path, e.Metadata)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("savepoint still not uploaded; retrying", "savepoint", e.Name, "remote", st.String(), "err", err)
			}
			missing++
			continue
		}
		d.spf.markUploaded(e.Name)
		d.log.Info("savepoint uploaded", "savepoint", e.Name, "remote", st.String())
	}
	savepointsNotUploaded.Set(float64(missing))
	return missing
}
