package upload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/fileutil"
)

// Options configure an Uploader. Zero values take the defaults named.
type Options struct {
	// Store is the remote; Appliance the directory of this appliance in it.
	Store     Store
	Appliance string
	// Local is the local checkpoint store the offered checkpoints live in.
	Local *checkpoint.Store
	// Dir holds the durable record (data_dir/upload); created if needed.
	Dir string
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
// only, incrementally. See the package documentation.
type Uploader struct {
	o      Options
	layout Layout
	log    *slog.Logger
	lim    atomic.Pointer[limiter] // nil: no bandwidth cap

	wake      chan struct{}
	sweepReq  chan chan error
	startOnce sync.Once
	closeOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{}

	bytesSent  atomic.Int64
	filesSent  atomic.Int64
	filesSaved atomic.Int64 // files the remote already had

	mu          sync.Mutex
	rec         *record
	reconciled  bool
	pending     *checkpoint.Metadata
	current     *checkpoint.Metadata
	newestLocal *checkpoint.Metadata
	offered     []int64 // ids offered that are newer than the newest remote
	status      map[int64]string
	linkUp      bool
	linkKnown   bool
	linkSince   time.Time
	lastErr     string
	failures    int64
	uploads     int64
	skipped     int64
	lastDur     time.Duration
	totalDur    time.Duration
	lastBytes   int64
	deleted     int64
	orphans     int64
	lastSweep   time.Time
	changed     chan struct{} // closed and replaced after every remote commit and its retention
	settled     int64         // the newest checkpoint committed whose retention ran
}

// New returns an Uploader; Start runs it. It reads the durable record but
// does not contact the remote.
func New(o Options) (*Uploader, error) {
	o.withDefaults()
	if o.Store == nil || o.Appliance == "" || o.Dir == "" {
		return nil, errors.New("upload: need a store, an appliance id and a directory")
	}
	if strings.ContainsAny(o.Appliance, "/\\") {
		return nil, fmt.Errorf("upload: appliance id %q contains a path separator", o.Appliance)
	}
	if err := fileutil.CreateDirAll(o.Dir); err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	if _, err := fileutil.RemoveTmp(o.Dir); err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	u := &Uploader{
		o: o, layout: Layout{o.Appliance}, log: o.Logger, wake: make(chan struct{}, 1), sweepReq: make(chan chan error), done: make(chan struct{}),
		status: map[int64]string{}, changed: make(chan struct{}),
	}
	var err error
	if u.rec, err = loadRecord(o.Dir, u.identity()); err != nil {
		return nil, err
	}
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
	u.mu.Lock()
	u.o.Bandwidth = max(bytesPerSecond, 0)
	u.mu.Unlock()
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
func (u *Uploader) MarkUnverifiedStart() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.rec.UnverifiedStart {
		return nil
	}
	u.rec.UnverifiedStart = true
	return u.rec.save(u.o.Dir)
}

// Start runs the upload loop until Close. It first offers the newest
// completed local checkpoint, so that an upload cut short by a restart
// resumes without waiting for the next checkpoint.
func (u *Uploader) Start() {
	u.startOnce.Do(func() {
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
	})
}

// Close stops the loop, cancelling an upload in progress (it resumes, with
// what was sent kept, the next time), and waits for it. Idempotent.
func (u *Uploader) Close() error {
	u.closeOnce.Do(func() {
		if u.cancel == nil {
			close(u.done)
			return
		}
		u.cancel()
		<-u.done
	})
	return nil
}

// Offer hands the uploader a completed local checkpoint. It never blocks:
// only the newest offered checkpoint is kept, and one that was waiting is
// skipped.
func (u *Uploader) Offer(md *checkpoint.Metadata) {
	if md == nil {
		return
	}
	u.mu.Lock()
	if u.newestLocal == nil || md.ID > u.newestLocal.ID {
		u.newestLocal = md
	}
	if md.ID > u.rec.newest() && !slices.Contains(u.offered, md.ID) {
		u.offered = append(u.offered, md.ID)
		if len(u.offered) > 100_000 {
			u.offered = u.offered[len(u.offered)-100_000:]
		}
	}
	switch {
	case u.pending != nil && md.ID <= u.pending.ID:
	case u.current != nil && md.ID <= u.current.ID:
	default:
		if u.pending != nil {
			u.setStatus(u.pending.ID, StatusSkipped)
			u.skipped++
		}
		u.pending = md
		u.setStatus(md.ID, StatusPending)
	}
	u.mu.Unlock()
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// Protect reports whether local checkpoint id must not be pruned: it is
// being uploaded or waits to be. It is JobSpec.ProtectCheckpoint.
func (u *Uploader) Protect(id int64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.current != nil && u.current.ID == id || u.pending != nil && u.pending.ID == id
}

// RemoteStatus returns what the uploader knows of checkpoint id: one of the
// Status* values, or "" when it knows nothing.
func (u *Uploader) RemoteStatus(id int64) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.rec.Committed[id]; ok {
		return StatusUploaded
	}
	return u.status[id]
}

// WaitRemote waits until checkpoint id or a newer one is committed on the
// remote and remote retention has run after it, or ctx is done.
func (u *Uploader) WaitRemote(ctx context.Context, id int64) error {
	for {
		u.mu.Lock()
		ok, ch := u.settled >= id, u.changed
		u.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

func (u *Uploader) setStatus(id int64, s string) {
	u.status[id] = s
	if len(u.status) > 256 {
		ids := slices.Sorted(func(yield func(int64) bool) {
			for k := range u.status {
				if !yield(k) {
					return
				}
			}
		})
		for _, k := range ids[:len(ids)-200] {
			delete(u.status, k)
		}
	}
}

func (u *Uploader) setLink(up bool, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if up != u.linkUp || !u.linkKnown {
		u.linkSince = time.Now()
		if up {
			u.log.Info("remote reachable", "remote", u.o.Store.String())
		} else {
			u.log.Warn("remote unreachable; uploads wait for the link", "remote", u.o.Store.String(), "err", err)
		}
	}
	u.linkUp, u.linkKnown = up, true
	if err != nil {
		u.lastErr = err.Error()
		u.failures++
	} else if up {
		u.lastErr = ""
	}
}

// run is the upload loop: the only goroutine that writes to the remote.
func (u *Uploader) run(ctx context.Context) {
	backoff := u.o.RetryInterval
	var sweepC <-chan time.Time
	if u.o.SweepInterval > 0 {
		t := time.NewTicker(u.o.SweepInterval)
		defer t.Stop()
		sweepC = t.C
	}
	for ctx.Err() == nil {
		if !u.isReconciled() {
			if err := u.reconcile(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				u.setLink(false, err)
				if !u.waitLink(ctx, &backoff) {
					return
				}
				continue
			}
			u.setLink(true, nil)
			backoff = u.o.RetryInterval
		}
		md := u.take()
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
			u.setLink(true, nil)
			backoff = u.o.RetryInterval
		case ctx.Err() != nil:
			u.requeue(md)
			return
		case errors.Is(err, errLocal):
			u.log.Error("checkpoint not uploaded", "checkpoint", md.ID, "err", err)
			u.mu.Lock()
			u.setStatus(md.ID, StatusSkipped)
			u.skipped++
			u.mu.Unlock()
		case errors.Is(err, ErrConflict):
			u.mu.Lock()
			u.lastErr = err.Error()
			u.mu.Unlock()
			select { // nothing to do until restarted
			case <-ctx.Done():
				return
			case <-u.wake:
			}
		default:
			u.log.Warn("upload failed; will retry", "checkpoint", md.ID, "err", err)
			u.requeue(md)
			u.setLink(false, err)
			if !u.waitLink(ctx, &backoff) {
				return
			}
		}
	}
}

func (u *Uploader) isReconciled() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.reconciled
}

// take returns the checkpoint to upload next (nil: none) and makes it
// current.
func (u *Uploader) take() *checkpoint.Metadata {
	u.mu.Lock()
	defer u.mu.Unlock()
	md := u.pending
	u.pending = nil
	if md == nil {
		return nil
	}
	if c, ok := u.rec.Committed[md.ID]; ok && c.CompletedTimestamp == md.CompletedTimestamp || md.ID < u.rec.newest() {
		if _, ok := u.rec.Committed[md.ID]; !ok {
			u.setStatus(md.ID, StatusSkipped)
		}
		return nil
	}
	u.current = md
	u.setStatus(md.ID, StatusUploading)
	return md
}

// requeue puts a checkpoint whose upload failed back, unless a newer one
// is waiting.
func (u *Uploader) requeue(md *checkpoint.Metadata) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.current == md {
		u.current = nil
	}
	if u.pending == nil {
		u.pending = md
		u.setStatus(md.ID, StatusUploading)
	} else {
		u.setStatus(md.ID, StatusSkipped)
		u.skipped++
	}
}

// waitLink sleeps after a failure: the backoff (jittered between half and
// all of it), doubling up to the cap. With Probe it then tests the link
// with one Stat and keeps waiting while that fails. It is woken only by
// time or ctx, never by new checkpoints, so a dead link costs one cheap
// request per backoff period. It returns false when ctx is done.
func (u *Uploader) waitLink(ctx context.Context, backoff *time.Duration) bool {
	for {
		d := *backoff/2 + rand.N(*backoff/2+1)
		*backoff = min(*backoff*2, u.o.MaxRetryInterval)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		if !u.o.Probe {
			return true
		}
		pctx, cancel := context.WithTimeout(ctx, min(u.o.OpTimeout, 30*time.Second))
		_, err := u.o.Store.Stat(pctx, u.layout.Key("_probe"))
		cancel()
		if err == nil || errors.Is(err, ErrNotFound) {
			u.setLink(true, nil)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		u.setLink(false, err)
	}
}

func (u *Uploader) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, u.o.OpTimeout)
}

// reconcile lists the remote and rebuilds the record from it: objects
// listed are known to be there (with the content the record knew, if the
// size agrees), committed checkpoints are those whose _metadata is listed
// (manifests the record does not know are read). A committed checkpoint
// that references a missing object is uncommitted (its _metadata
// deleted), so that no remote _metadata names a missing object.
func (u *Uploader) reconcile(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, 5*u.o.OpTimeout)
	objs, err := u.o.Store.List(lctx, u.layout.Root())
	cancel()
	if err != nil {
		return fmt.Errorf("upload: reconcile: %w", err)
	}
	u.mu.Lock()
	old := u.rec.clone()
	u.mu.Unlock()
	fresh := len(old.Committed) == 0 && len(old.Objects) == 0
	rec := newRecord(u.identity())
	rec.Conflict = old.Conflict
	listed := map[string]ObjectInfo{}
	var metas []int64
	for _, oi := range objs {
		rel := u.layout.Rel(oi.Key)
		listed[rel] = oi
		if o, ok := old.Objects[rel]; ok && o.Size == oi.Size {
			rec.Objects[rel] = o
		} else {
			rec.Objects[rel] = objectRecord{Size: oi.Size}
		}
		if _, id, meta := parseRel(rel); meta {
			metas = append(metas, id)
		}
	}
	for _, id := range metas {
		var m *Manifest
		c, ok := old.Committed[id]
		if !ok {
			if m, err = u.readManifest(ctx, id); err != nil {
				if errors.Is(err, ErrNotFound) {
					continue
				}
				var de *decodeError
				if errors.As(err, &de) {
					u.log.Error("remote checkpoint has a damaged _metadata; ignoring it", "checkpoint", id, "err", err)
					continue
				}
				return fmt.Errorf("upload: reconcile: %w", err)
			}
			c = committedRecord{TriggerTimestamp: m.Checkpoint.TriggerTimestamp, CompletedTimestamp: m.Checkpoint.CompletedTimestamp,
				UploadedTimestamp: m.UploadedTimestamp, Keys: m.Keys()}
		}
		var missing []string
		for _, k := range c.Keys {
			if _, ok := listed[k]; !ok {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			u.log.Error("remote checkpoint references missing objects; uncommitting it", "checkpoint", id, "missing", missing)
			dctx, cancel := u.opCtx(ctx)
			err := u.o.Store.Delete(dctx, u.layout.Key(MetadataRel(id)))
			cancel()
			if err != nil {
				return fmt.Errorf("upload: reconcile: %w", err)
			}
			delete(rec.Objects, MetadataRel(id))
			continue
		}
		if m != nil {
			for _, ob := range m.Objects {
				if o := rec.Objects[ob.Key]; !o.Known {
					if f, ok := fileOf(m.Checkpoint, ob.Task, ob.File); ok && o.Size == ob.StoredSize {
						rec.Objects[ob.Key] = objectRecord{Size: o.Size, CRC32C: f.CRC32C, Encoding: ob.Encoding, Known: true}
					}
				}
			}
		}
		rec.Committed[id] = c
	}
	if old.UnverifiedStart && rec.Conflict == "" && len(rec.Committed) > 0 {
		rec.Conflict = fmt.Sprintf("this data dir started from empty state while the remote was unreachable, and the "+
			"remote holds checkpoints %v of this appliance: not uploading, so as not to overwrite them. Restore them "+
			"with `eddy restore --from remote:latest --discard-newer`, or delete %s in the data dir to upload over them",
			rec.committedIDs(), filepath.Join(filepath.Base(u.o.Dir), RecordFile))
	}
	if fresh && rec.Conflict == "" && len(rec.Committed) > 0 && u.o.Local != nil {
		var localNewest int64
		if ids, err := u.o.Local.Completed(); err == nil && len(ids) > 0 {
			localNewest = ids[len(ids)-1]
		}
		if rn := rec.newest(); rn > localNewest {
			rec.Conflict = fmt.Sprintf("the remote holds checkpoint %d, newer than any local checkpoint (%d), from a history "+
				"this data dir did not upload: not uploading, so as not to overwrite it. Restore it with "+
				"`eddy restore --from remote:latest`, or delete %s in the data dir to upload over it", rn, localNewest,
				filepath.Join(filepath.Base(u.o.Dir), RecordFile))
		}
	}
	if rec.Conflict != "" {
		u.log.Error("uploads stopped", "err", rec.Conflict)
	}
	if err := rec.save(u.o.Dir); err != nil {
		return err
	}
	u.mu.Lock()
	u.rec = rec
	u.reconciled = true
	u.settled = max(u.settled, rec.newest())
	u.trimOffered()
	u.mu.Unlock()
	u.log.Info("remote reconciled", "remote", u.o.Store.String(), "objects", len(rec.Objects),
		"checkpoints", rec.committedIDs())
	return nil
}

type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

func (u *Uploader) readManifest(ctx context.Context, id int64) (*Manifest, error) {
	return readManifest(ctx, u.o.Store, u.layout, id, u.o.OpTimeout)
}

func readManifest(ctx context.Context, s Store, l Layout, id int64, timeout time.Duration) (*Manifest, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := s.Get(ctx, l.Key(MetadataRel(id)))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := readAllLimit(r, 256<<20)
	if err != nil {
		return nil, fmt.Errorf("upload: read chk-%d/_metadata: %w", id, err)
	}
	m, err := DecodeManifest(data)
	if err != nil {
		return nil, &decodeError{fmt.Errorf("chk-%d: %w", id, err)}
	}
	if m.Checkpoint.ID != id {
		return nil, &decodeError{fmt.Errorf("upload: chk-%d/_metadata holds checkpoint %d", id, m.Checkpoint.ID)}
	}
	return m, nil
}

func fileOf(md *checkpoint.Metadata, task, name string) (checkpoint.File, bool) {
	for _, f := range md.Tasks[task].Files {
		if f.Name == name {
			return f, true
		}
	}
	return checkpoint.File{}, false
}

// trimOffered drops offered ids the remote has caught up with. u.mu held.
func (u *Uploader) trimOffered() {
	n := u.rec.newest()
	u.offered = slices.DeleteFunc(u.offered, func(id int64) bool { return id <= n })
}

// plan is one file of a checkpoint and where it goes.
type plan struct {
	task     string
	file     checkpoint.File
	rel      string
	encoding string
	need     bool
}

// plans lists where every file of md goes and whether the remote lacks
// it. u.mu held.
func (u *Uploader) plans(md *checkpoint.Metadata) []plan {
	var ps []plan
	for _, task := range md.TaskNames() {
		ts := md.Tasks[task]
		for _, f := range ts.Files {
			p := plan{task: task, file: f, encoding: EncodingIdentity}
			if f.SST {
				p.rel = SharedRel(task, f)
				o, ok := u.rec.Objects[p.rel]
				p.need = !ok || o.Size != f.Size
			} else {
				p.rel = PrivateRel(md.ID, task, f.Name)
				if u.o.Compression == "snappy" && !(ts.Kind == checkpoint.KindFull && md.Compression == "snappy") {
					p.encoding = EncodingSnappy
				}
				o, ok := u.rec.Objects[p.rel]
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
	u.mu.Lock()
	if u.rec.Conflict != "" {
		u.current = nil
		u.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrConflict, u.rec.Conflict)
	}
	_, stale := u.rec.Committed[md.ID] // same id, another checkpoint (take checked the time)
	ps := u.plans(md)
	u.mu.Unlock()
	if stale {
		if err := u.uncommit(ctx, md.ID); err != nil {
			return err
		}
	}
	var need int64
	for _, p := range ps {
		if p.need {
			need += p.file.Size
		}
	}
	u.log.Info("uploading checkpoint", "checkpoint", md.ID, "files", len(ps), "bytes_to_send", need)
	sent0 := u.bytesSent.Load()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(u.o.Parallelism)
	objects := make([]Object, len(ps))
	for i, p := range ps {
		if !p.need {
			u.mu.Lock()
			o := u.rec.Objects[p.rel]
			u.mu.Unlock()
			objects[i] = Object{Task: p.task, File: p.file.Name, Key: p.rel, Encoding: p.encoding, StoredSize: o.Size}
			if o.Encoding != "" {
				objects[i].Encoding = o.Encoding
			}
			u.filesSaved.Add(1)
			continue
		}
		g.Go(func() error {
			stored, err := u.uploadFile(gctx, md.ID, p)
			if err != nil {
				return err
			}
			objects[i] = Object{Task: p.task, File: p.file.Name, Key: p.rel, Encoding: p.encoding, StoredSize: stored}
			u.mu.Lock()
			u.rec.Objects[p.rel] = objectRecord{Size: stored, CRC32C: p.file.CRC32C, Encoding: p.encoding, Known: true}
			u.mu.Unlock()
			u.filesSent.Add(1)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	m := &Manifest{Version: ManifestVersion, Appliance: u.o.Appliance, UploadedTimestamp: time.Now().UnixMilli(),
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
	u.mu.Lock()
	u.rec.Objects[MetadataRel(md.ID)] = objectRecord{Size: int64(len(data))}
	u.rec.Committed[md.ID] = committedRecord{TriggerTimestamp: md.TriggerTimestamp, CompletedTimestamp: md.CompletedTimestamp,
		UploadedTimestamp: m.UploadedTimestamp, Keys: m.Keys()}
	u.current = nil
	u.setStatus(md.ID, StatusUploaded)
	u.uploads++
	u.lastDur = dur
	u.totalDur += dur
	u.lastBytes = u.bytesSent.Load() - sent0
	u.trimOffered()
	rec := u.rec.clone()
	u.mu.Unlock()
	u.log.Info("checkpoint uploaded", "checkpoint", md.ID, "bytes_sent", u.bytesSent.Load()-sent0,
		"duration", dur.Round(time.Millisecond))
	if err := rec.save(u.o.Dir); err != nil {
		u.log.Warn("saving upload record", "err", err)
	}
	u.retain(ctx)
	u.mu.Lock()
	u.settled = md.ID
	close(u.changed) // after retention, so that waiters see its effect too
	u.changed = make(chan struct{})
	u.mu.Unlock()
	return nil
}

// uncommit deletes the remote _metadata of id (a checkpoint of another
// history that reused the id).
func (u *Uploader) uncommit(ctx context.Context, id int64) error {
	dctx, cancel := u.opCtx(ctx)
	defer cancel()
	if err := u.o.Store.Delete(dctx, u.layout.Key(MetadataRel(id))); err != nil {
		return err
	}
	u.mu.Lock()
	delete(u.rec.Committed, id)
	delete(u.rec.Objects, MetadataRel(id))
	for rel := range u.rec.Objects {
		if _, cid, _ := parseRel(rel); cid == id {
			delete(u.rec.Objects, rel)
		}
	}
	u.mu.Unlock()
	return nil
}

// retain deletes remote checkpoints beyond NumRetained: first each one's
// _metadata (so it is no longer committed), then its private objects and
// the shared objects no retained checkpoint references (the shared-state
// registry is the union of the retained manifests' keys). Failures are
// logged; what is left behind is an orphan for the sweep.
func (u *Uploader) retain(ctx context.Context) {
	u.mu.Lock()
	ids := u.rec.committedIDs()
	u.mu.Unlock()
	if len(ids) <= u.o.NumRetained {
		return
	}
	drop := ids[:len(ids)-u.o.NumRetained]
	var keys []string
	for _, id := range drop {
		dctx, cancel := u.opCtx(ctx)
		err := u.o.Store.Delete(dctx, u.layout.Key(MetadataRel(id)))
		cancel()
		if err != nil {
			u.log.Warn("remote retention: deleting a checkpoint failed", "checkpoint", id, "err", err)
			return
		}
		u.mu.Lock()
		keys = append(keys, u.rec.Committed[id].Keys...)
		delete(u.rec.Committed, id)
		delete(u.rec.Objects, MetadataRel(id))
		u.setStatus(id, StatusExpired)
		u.mu.Unlock()
	}
	u.mu.Lock()
	refs := u.rec.referenced()
	u.mu.Unlock()
	var gone []string
	for _, k := range keys {
		if refs[k] || slices.Contains(gone, k) {
			continue
		}
		dctx, cancel := u.opCtx(ctx)
		err := u.o.Store.Delete(dctx, u.layout.Key(k))
		cancel()
		if err != nil {
			u.log.Warn("remote retention: deleting an object failed; the sweep will retry", "key", k, "err", err)
			break
		}
		gone = append(gone, k)
	}
	u.mu.Lock()
	for _, k := range gone {
		delete(u.rec.Objects, k)
	}
	u.deleted += int64(len(gone) + len(drop))
	rec := u.rec.clone()
	u.mu.Unlock()
	u.log.Info("remote retention", "removed_checkpoints", drop, "removed_objects", len(gone))
	if err := rec.save(u.o.Dir); err != nil {
		u.log.Warn("saving upload record", "err", err)
	}
}

// sweep deletes orphans: objects under shared/ or chk-N/ of this appliance
// that no committed remote checkpoint references, are not a committed
// _metadata, and are older than OrphanGrace (by the remote's clock as
// listed, compared with the listing's newest time to not depend on clock
// skew). They are left by uploads cut short by a crash or superseded
// before their commit, and by retention that failed half way. The run
// loop calls it every SweepInterval, between uploads; it must not run
// concurrently with an upload.
func (u *Uploader) sweep(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, 5*u.o.OpTimeout)
	objs, err := u.o.Store.List(lctx, u.layout.Root())
	cancel()
	if err != nil {
		return fmt.Errorf("upload: sweep: %w", err)
	}
	u.mu.Lock()
	refs := u.rec.referenced()
	u.mu.Unlock()
	now := time.Now()
	for _, oi := range objs {
		if oi.ModTime.After(now) {
			now = oi.ModTime // the remote's clock runs ahead
		}
	}
	// A valid _metadata the record does not know (it should not happen:
	// this loop commits and reconcile reads them all) keeps what it names.
	for _, oi := range objs {
		rel := u.layout.Rel(oi.Key)
		if _, id, meta := parseRel(rel); meta && !refs[rel] {
			m, err := u.readManifest(ctx, id)
			if err != nil {
				continue // damaged or gone: never deleted here, see below
			}
			u.log.Warn("orphan sweep: a remote checkpoint the record does not know; keeping its objects", "checkpoint", id)
			refs[rel] = true
			for _, k := range m.Keys() {
				refs[k] = true
			}
		}
	}
	var gone []string
	for _, oi := range objs {
		rel := u.layout.Rel(oi.Key)
		shared, id, meta := parseRel(rel)
		if meta || (!shared && id == 0) || refs[rel] || now.Sub(oi.ModTime) < u.o.OrphanGrace {
			continue // a _metadata is removed only by retention or reconcile
		}
		dctx, cancel := u.opCtx(ctx)
		err := u.o.Store.Delete(dctx, oi.Key)
		cancel()
		if err != nil {
			return fmt.Errorf("upload: sweep: %w", err)
		}
		gone = append(gone, rel)
	}
	u.mu.Lock()
	for _, k := range gone {
		delete(u.rec.Objects, k)
	}
	listed := map[string]bool{}
	for _, oi := range objs {
		listed[u.layout.Rel(oi.Key)] = true
	}
	for k := range u.rec.Objects {
		if !listed[k] {
			delete(u.rec.Objects, k) // gone from the remote behind our back
		}
	}
	u.orphans += int64(len(gone))
	u.lastSweep = time.Now()
	rec := u.rec.clone()
	u.mu.Unlock()
	if len(gone) > 0 {
		u.log.Info("orphan sweep removed objects", "count", len(gone))
	}
	return rec.save(u.o.Dir)
}

// SweepNow asks the loop to sweep orphans at its next idle moment (never
// during an upload) and waits for the result.
func (u *Uploader) SweepNow(ctx context.Context) error {
	r := make(chan error, 1)
	select {
	case u.sweepReq <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-u.done:
		return errors.New("upload: uploader closed")
	}
	select {
	case err := <-r:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
