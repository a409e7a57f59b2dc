package upload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/storage/fileutil"
)

// Options configure an Uploader. Zero values take the defaults named.
type Options struct {
	// Store is the remote; Appliance the directory of this appliance in it.
	Store     Store
	Appliance string
	// Local is the local checkpoint store the offered checkpoints live in.
	Local *checkpoint.Store
	// DataDir is the data_dir: the uploader keeps its ledger of what the
	// remote holds in DataDir.UploadRecord() (the directory DataDir.Upload()
	// is created if needed, and holds its temporary files).
	DataDir datadir.Layout
	// FS is the file system the ledger is written through (nil: the OS).
	FS fileutil.FS
	// Parallelism is the number of files uploaded at once (default 4).
	Parallelism int
	// Bandwidth caps the object bytes sent per second; 0 is unlimited.
	Bandwidth int64
	// Compression is none or snappy: snappy compresses non-SST files and
	// full snapshots that are not compressed already.
	Compression string
	// NumRetained is the number of remote checkpoints kept (default 3).
	NumRetained int
	// Probe: while the link is down, test it with a cheap Stat before
	// retrying an upload.
	Probe bool
	// RetryInterval is the first backoff after a failure (default 1s);
	// it doubles, with jitter, up to MaxRetryInterval (default 1 min).
	RetryInterval    time.Duration
	MaxRetryInterval time.Duration
	// OrphanGrace is how old an unreferenced object must be before the
	// sweep deletes it (default 1 h); SweepInterval is how often the
	// sweep runs (default 1 h; negative: never).
	OrphanGrace   time.Duration
	SweepInterval time.Duration
	// OpTimeout bounds one List, Stat, Delete or manifest Put (default 1
	// min). File uploads have no deadline: a slow link is not a failure.
	OpTimeout time.Duration
	Logger    *slog.Logger
}

func (o *Options) withDefaults() {
	if o.Parallelism <= 0 {
		o.Parallelism = 4
	}
	if o.NumRetained <= 0 {
		o.NumRetained = 3
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = time.Second
	}
	if o.MaxRetryInterval <= 0 {
		o.MaxRetryInterval = time.Minute
	}
	o.MaxRetryInterval = max(o.MaxRetryInterval, o.RetryInterval)
	if o.OrphanGrace <= 0 {
		o.OrphanGrace = time.Hour
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = time.Hour
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = time.Minute
	}
	if o.Compression == "" {
		o.Compression = "none"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.FS == nil {
		o.FS = fileutil.OSFS{Logger: o.Logger}
	}
}

// Remote status of a checkpoint (CheckpointStats.Remote).
const (
	StatusPending   = "pending"   // the newest offered; waits for the uploader
	StatusUploading = "uploading" // being uploaded (or retried)
	StatusUploaded  = "uploaded"  // its remote _metadata is committed
	StatusSkipped   = "skipped"   // superseded by a newer checkpoint before it was uploaded
	StatusExpired   = "expired"   // was uploaded, since removed by remote retention
)

var (
	// errLocal marks a failure that says nothing about the link: the
	// local checkpoint is gone or does not match its metadata. The
	// checkpoint is dropped, not retried.
	errLocal = errors.New("upload: local checkpoint unusable")
	// ErrConflict: the remote holds a newer history than this data dir.
	ErrConflict = errors.New("upload: remote holds checkpoints of another history")
)

// Uploader ships completed local checkpoints to a remote Store, newest
// only, incrementally. See the package documentation. Its parts each have
// one job and their own lock: the queue (what to upload next, queue.go),
// the link (up or down, backoff and probe, link.go), the ledger (what the
// remote holds, ledger.go; rebuilt by reconcile.go), retention and the
// orphan sweep (retention.go) and the counters (stats.go).
type Uploader struct {
	o         Options
	layout    Layout
	log       *slog.Logger
	lim       atomic.Pointer[limiter] // nil: no bandwidth cap
	bandwidth atomic.Int64

	wake     chan struct{}
	sweepReq chan chan error

	// life guards starting and stopping: Start after Close does nothing,
	// Close before Start closes done itself.
	life    sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{} // closed when the loop has ended (or never will run)

	queue  *queue
	link   *link
	crcs   map[string]crcEntry // spool segment checksums (spool.go), run loop only
	ledger *ledgerState
	stats  counters
}

// New returns an Uploader; Start runs it. It reads the durable ledger but
// does not contact the remote.
func New(o Options) (*Uploader, error) {
	o.withDefaults()
	if o.Store == nil || o.Appliance == "" || o.DataDir.Root == "" {
		return nil, errors.New("upload: need a store, an appliance id and a data dir")
	}
	if strings.ContainsAny(o.Appliance, "/\\") {
		return nil, fmt.Errorf("upload: appliance id %q contains a path separator", o.Appliance)
	}
	dir := o.DataDir.Upload()
	if err := fileutil.CreateDirAllFS(o.FS, dir); err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	if _, err := fileutil.RemoveTmpFS(o.FS, dir); err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	u := &Uploader{
		o: o, layout: Layout{o.Appliance}, log: o.Logger, wake: make(chan struct{}, 1), sweepReq: make(chan chan error),
		done: make(chan struct{}), queue: newQueue(), link: &link{remote: o.Store.String(), log: o.Logger},
	}
	led, err := loadLedger(o.FS, o.DataDir.UploadRecord(), u.identity())
	if err != nil {
		return nil, err
	}
	u.ledger = newLedgerState(o.FS, o.DataDir.UploadRecord(), led)
	u.SetBandwidth(o.Bandwidth)
	return u, nil
}

// limiter is the token bucket of the bandwidth cap.
type limiter struct {
	l     *rate.Limiter
	chunk int // the bucket's size: the most one Read takes at once
}

// SetBandwidth changes the bandwidth cap (bytes per second, 0 =
// unlimited), also for uploads in progress: upload.bandwidth is
// reloadable.
func (u *Uploader) SetBandwidth(bytesPerSecond int64) {
	u.bandwidth.Store(max(bytesPerSecond, 0))
	if bytesPerSecond <= 0 {
		u.lim.Store(nil)
		return
	}
	chunk := int(min(bytesPerSecond, 64<<10))
	u.lim.Store(&limiter{l: rate.NewLimiter(rate.Limit(bytesPerSecond), chunk), chunk: chunk})
}

func (u *Uploader) identity() string { return u.o.Store.String() + " " + u.o.Appliance }

// MarkUnverifiedStart records, durably, that this data dir starts from
// empty state although the remote could not be asked for checkpoints (it
// was unreachable). If the remote turns out to hold checkpoints of this
// appliance, the uploader will not upload over them (Stats.Conflict).
// Call it before Start.
func (u *Uploader) MarkUnverifiedStart() error { return u.ledger.markUnverifiedStart() }

// Start runs the upload loop until Close. It first offers the newest
// completed local checkpoint, so that an upload cut short by a restart
// resumes without waiting for the next checkpoint. Start after Close, or
// a second Start, does nothing.
func (u *Uploader) Start() {
	u.life.Lock()
	defer u.life.Unlock()
	if u.started || u.closed {
		return
	}
	u.started = true
	if u.o.Local != nil {
		if ids, err := u.o.Local.Completed(); err == nil && len(ids) > 0 {
			if md, err := u.o.Local.Load(ids[len(ids)-1]); err == nil {
				u.Offer(md)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	go func() {
		defer close(u.done)
		u.run(ctx)
	}()
}

// Close stops the loop, cancelling an upload in progress (it resumes, with
// what was sent kept, the next time), and waits for it. It may be called
// before Start (which then does nothing) and more than once.
func (u *Uploader) Close() error {
	u.life.Lock()
	first := !u.closed
	u.closed = true
	started, cancel := u.started, u.cancel
	u.life.Unlock()
	if first {
		if started {
			cancel()
		} else {
			close(u.done)
		}
	}
	<-u.done
	return nil
}

// Offer hands the uploader a completed local checkpoint. It never blocks:
// only the newest offered checkpoint is kept, and one that was waiting is
// skipped.
func (u *Uploader) Offer(md *checkpoint.Metadata) {
	if md == nil {
		return
	}
	u.queue.offer(md, u.ledger.newest)
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// Protect reports whether local checkpoint id must not be pruned: it is
// being uploaded or waits to be. It is JobSpec.ProtectCheckpoint.
func (u *Uploader) Protect(id int64) bool { return u.queue.protect(id) }

// RemoteStatus returns what the uploader knows of checkpoint id: one of the
// Status* values, or "" when it knows nothing.
func (u *Uploader) RemoteStatus(id int64) string {
	if u.ledger.committed(id) {
		return StatusUploaded
	}
	return u.queue.statusOf(id)
}

// WaitRemote waits until checkpoint id or a newer one is committed on the
// remote and remote retention has run after it, or ctx is done.
func (u *Uploader) WaitRemote(ctx context.Context, id int64) error { return u.ledger.wait(ctx, id) }

// run is the upload loop: the only goroutine that writes to the remote.
func (u *Uploader) run(ctx context.Context) {
	b := newBackoff(u.o.RetryInterval, u.o.MaxRetryInterval)
	var sweepC <-chan time.Time
	if u.o.SweepInterval > 0 {
		t := time.NewTicker(u.o.SweepInterval)
		defer t.Stop()
		sweepC = t.C
	}
	for ctx.Err() == nil {
		if !u.ledger.isReconciled() {
			if err := u.reconcile(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				u.link.set(false, err)
				if !u.waitLink(ctx, &b) {
					return
				}
				continue
			}
			u.link.set(true, nil)
			b.reset()
		}
		md := u.queue.take(u.remoteHas)
		if md == nil {
			select {
			case <-ctx.Done():
				return
			case <-u.wake:
			case <-sweepC:
				if err := u.sweep(ctx); err != nil && ctx.Err() == nil {
					u.log.Warn("orphan sweep failed", "err", err)
				}
			case r := <-u.sweepReq:
				r <- u.sweep(ctx)
			}
			continue
		}
		err := u.upload(ctx, md)
		switch {
		case err == nil:
			u.link.set(true, nil)
			b.reset()
		case ctx.Err() != nil:
			u.queue.requeue(md)
			return
		case errors.Is(err, errLocal):
			u.log.Error("checkpoint not uploaded", "checkpoint", md.ID, "err", err)
			u.queue.drop(md.ID)
		case errors.Is(err, ErrConflict):
			u.link.setError(err)
			select { // nothing to do until restarted
			case <-ctx.Done():
				return
			case <-u.wake:
			}
		default:
			u.log.Warn("upload failed; will retry", "checkpoint", md.ID, "err", err)
			u.queue.requeue(md)
			u.link.set(false, err)
			if !u.waitLink(ctx, &b) {
				return
			}
		}
	}
}

// remoteHas reports whether md needs no upload (the remote holds it, or
// a newer checkpoint) and whether the remote holds md itself. It is the
// queue's take callback.
func (u *Uploader) remoteHas(md *checkpoint.Metadata) (done, committed bool) {
	u.ledger.with(func(l *ledger) {
		c, ok := l.Committed[md.ID]
		committed = ok
		done = ok && c.CompletedTimestamp == md.CompletedTimestamp || md.ID < l.newest()
	})
	return done, committed
}

func (u *Uploader) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, u.o.OpTimeout)
}

// plan is one file of a checkpoint and where it goes.
type plan struct {
	task     string
	file     checkpoint.File
	rel      string
	encoding string
	need     bool
}

// plans lists where every file of md goes and whether the remote, as far
// as l knows, lacks it (compression: Options.Compression).
func (l *ledger) plans(md *checkpoint.Metadata, compression string) []plan {
	var ps []plan
	for _, task := range md.TaskNames() {
		ts := md.Tasks[task]
		for _, f := range ts.Files {
			p := plan{task: task, file: f, encoding: EncodingIdentity}
			if f.SST {
				p.rel = SharedRel(task, f)
				o, ok := l.Objects[p.rel]
				p.need = !ok || o.Size != f.Size
			} else {
				p.rel = PrivateRel(md.ID, task, f.Name)
				if compression == "snappy" && !(ts.Kind == checkpoint.KindFull && md.Compression == "snappy") {
					p.encoding = EncodingSnappy
				}
				o, ok := l.Objects[p.rel]
				p.need = !ok || !o.Known || o.CRC32C != f.CRC32C || o.Encoding != p.encoding
			}
			ps = append(ps, p)
		}
	}
	return ps
}

// upload sends the files of md the remote lacks, in parallel, then its
// manifest, and then applies retention.
func (u *Uploader) upload(ctx context.Context, md *checkpoint.Metadata) error {
	t0 := time.Now()
	var conflict string
	var stale bool
	var ps []plan
	u.ledger.with(func(l *ledger) {
		conflict = l.Conflict
		_, stale = l.Committed[md.ID] // same id, another checkpoint (take checked the time)
		ps = l.plans(md, u.o.Compression)
	})
	if conflict != "" {
		u.queue.finish(md, false, 0)
		return fmt.Errorf("%w: %s", ErrConflict, conflict)
	}
	if stale {
		if err := u.uncommit(ctx, md.ID); err != nil {
			return err
		}
	}
	spools, sps, err := u.spoolPlans(md)
	if err != nil {
		return err
	}
	var need int64
	for _, p := range ps {
		if p.need {
			need += p.file.Size
		}
	}
	for _, p := range sps {
		if p.need {
			need += p.seg.Size
		}
	}
	u.log.Info("uploading checkpoint", "checkpoint", md.ID, "files", len(ps), "spool_segments", len(sps), "bytes_to_send", need)
	sent0 := u.stats.bytesSent.Load()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(u.o.Parallelism)
	objects := make([]Object, len(ps))
	for i, p := range ps {
		if !p.need {
			var o ledgerObject
			u.ledger.with(func(l *ledger) { o = l.Objects[p.rel] })
			objects[i] = Object{Task: p.task, File: p.file.Name, Key: p.rel, Encoding: p.encoding, StoredSize: o.Size}
			if o.Encoding != "" {
				objects[i].Encoding = o.Encoding
			}
			u.stats.filesSaved.Add(1)
			continue
		}
		g.Go(func() error {
			stored, err := u.uploadFile(gctx, md.ID, p)
			if err != nil {
				return err
			}
			objects[i] = Object{Task: p.task, File: p.file.Name, Key: p.rel, Encoding: p.encoding, StoredSize: stored}
			u.ledger.with(func(l *ledger) {
				l.Objects[p.rel] = ledgerObject{Size: stored, CRC32C: p.file.CRC32C, Encoding: p.encoding, Known: true}
			})
			u.stats.filesSent.Add(1)
			return nil
		})
	}
	for _, p := range sps {
		if !p.need {
			u.stats.filesSaved.Add(1)
			continue
		}
		g.Go(func() error { return u.uploadSegment(gctx, p) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	version := 1
	if len(spools) > 0 {
		version = ManifestVersion
	}
	m := &Manifest{Version: version, Spools: spools, Appliance: u.o.Appliance, UploadedTimestamp: time.Now().UnixMilli(),
		Checkpoint: md, Objects: objects}
	data, err := EncodeManifest(m)
	if err != nil {
		return err
	}
	pctx, cancel := u.opCtx(ctx)
	err = u.o.Store.Put(pctx, u.layout.Key(MetadataRel(md.ID)), byteReader(data), int64(len(data)))
	cancel()
	if err != nil {
		return err
	}
	dur := time.Since(t0)
	var newest int64
	u.ledger.with(func(l *ledger) {
		l.Objects[MetadataRel(md.ID)] = ledgerObject{Size: int64(len(data))}
		l.Committed[md.ID] = ledgerCheckpoint{TriggerTimestamp: md.TriggerTimestamp, CompletedTimestamp: md.CompletedTimestamp,
			UploadedTimestamp: m.UploadedTimestamp, Keys: m.Keys()}
		newest = l.newest()
	})
	u.queue.finish(md, true, newest)
	sent := u.stats.bytesSent.Load() - sent0
	u.stats.uploaded(dur, sent)
	u.log.Info("checkpoint uploaded", "checkpoint", md.ID, "bytes_sent", sent, "duration", dur.Round(time.Millisecond))
	if err := u.ledger.save(); err != nil {
		u.log.Warn("saving the upload ledger", "err", err)
	}
	u.retain(ctx)
	u.ledger.settle(md.ID) // after retention, so that waiters see its effect too
	return nil
}
