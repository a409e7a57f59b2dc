package upload

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/storage/fileutil"
)

// RemoteWait is how long Recover retries a remote that does not answer
// before it restores the local checkpoint instead, or, with
// RestoreEmptyIfUnreachable and no local checkpoint, goes on from empty
// state (the uploader then refuses to upload over the remote's newer
// history).
const RemoteWait = 2 * time.Minute

// What a start without a local checkpoint does while the remote does not
// answer (upload.restore, StartOptions.Restore).
const (
	// RestoreWait keeps trying the remote for as long as it takes: the
	// start goes on from empty state only when the remote answers that it
	// holds no checkpoint of the appliance.
	RestoreWait = "wait"
	// RestoreEmptyIfUnreachable gives up after StartOptions.Wait and goes
	// on from empty state.
	RestoreEmptyIfUnreachable = "empty_if_unreachable"
)

// ErrNotRestorable is returned (wrapped) when the remote's newest
// checkpoint starts a source at an ingest-log offset the local log no
// longer holds.
var ErrNotRestorable = errors.New("upload: remote checkpoint not restorable")

// Source of a restored checkpoint (Plan.Source).
const (
	SourceLocal  = "local"
	SourceRemote = "remote"
)

// Recovery brings a data_dir's state back from the remote. It is the one
// place that decides "local or remote?", downloads, keeps the restored
// marker (which sources lost their ingest log) and resets the upload
// ledger; `eddy run` calls Recover and `eddy restore` calls Restore.
type Recovery struct {
	// Store is the remote (nil: none; Recover then only reads the marker).
	Store     Store
	Appliance string
	DataDir   datadir.Layout
	// Local is the local checkpoint store (nil: checkpointing is off).
	Local *checkpoint.Store
	// FS is the file system the marker, the ledger and downloaded files
	// are written through (nil: the OS).
	FS          fileutil.FS
	Parallelism int // files downloaded at once (0: Download's default)
	Logger      *slog.Logger
	// BytesRead, if set, is increased by the stored bytes downloaded.
	BytesRead *atomic.Int64

	// now and sleep are the clock of the retries (tests: a fake one).
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) bool
}

func (r *Recovery) defaults() {
	if r.now == nil {
		r.now = time.Now
	}
	if r.sleep == nil {
		r.sleep = sleep
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	if r.FS == nil {
		r.FS = fileutil.OSFS{Logger: r.Logger}
	}
}

func (r *Recovery) download(ctx context.Context, id int64, accept func(*checkpoint.Metadata) error) (*checkpoint.Metadata, error) {
	return Download(ctx, r.Store, r.Appliance, id, r.Local, DownloadOptions{
		Parallelism: r.Parallelism, Logger: r.Logger, BytesRead: r.BytesRead, FS: r.FS, Accept: accept, DataDir: r.DataDir})
}

// Restored is the restored marker, datadir.Layout.RestoredMarker (format:
// docs/data-dir.md, "restored marker"). It is written when a checkpoint is
// downloaded from the remote (by the daemon or `eddy restore`) and tells
// the next restore of that checkpoint that it came from the remote and,
// once decided, which sources' ingest logs were lost with the old disk:
// their offsets in the checkpoint point into a log that no longer exists.
type Restored struct {
	Checkpoint   int64  `json:"checkpoint"`
	Remote       string `json:"remote"`
	DownloadedAt int64  `json:"downloaded_at"` // unix ms
	// LostLogs is nil until the first restore decides it: the sources
	// whose ingest log was empty (never written) when eddy started and
	// whose offset in the checkpoint is above 0.
	LostLogs []string `json:"lost_logs"`
}

// ReadRestored reads the restored marker of layout (nil, nil: none).
func ReadRestored(fsys fileutil.FS, layout datadir.Layout) (*Restored, error) {
	if fsys == nil {
		fsys = fileutil.OSFS{}
	}
	data, err := fileutil.ReadFileFS(fsys, layout.RestoredMarker())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m := &Restored{}
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%s: %w", layout.RestoredMarker(), err)
	}
	return m, nil
}

func (r *Recovery) writeMarker(m *Restored) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := fileutil.CreateDirAllFS(r.FS, r.DataDir.Root); err != nil {
		return err
	}
	if err := fileutil.CreateDirAllFS(r.FS, filepath.Dir(r.DataDir.RestoredMarker())); err != nil {
		return err
	}
	return fileutil.WriteFileAtomicFS(r.FS, r.DataDir.RestoredMarker(), data, 0o644)
}

// StartOptions describe the start Recover decides for.
type StartOptions struct {
	// Local is the newest local checkpoint that verifies (nil: none).
	Local *checkpoint.Metadata
	// LocalRecovery is checkpointing.local_recovery: true restores Local
	// when there is one; false restores the remote's newest checkpoint
	// when a remote is configured (Local when the remote cannot give one).
	LocalRecovery bool
	// Fresh are the sources whose ingest log had never been written when
	// eddy opened it.
	Fresh map[string]bool
	// LogStart is the first offset each source's ingest log holds now
	// (nil: not checked). A remote checkpoint that starts a source below
	// it, other than a Fresh one, is not restored while there is Local.
	LogStart map[string]uint64
	// Restore is upload.restore, what a start without Local does while
	// the remote does not answer: RestoreWait ("" too) or
	// RestoreEmptyIfUnreachable.
	Restore string
	// Wait bounds the retries of an unreachable remote when there is
	// Local or Restore is RestoreEmptyIfUnreachable (0: RemoteWait).
	Wait time.Duration
	// MaxBackoff caps the pause between retries (0: 15 s); they start at
	// 1 s, or MaxBackoff if less, and double.
	MaxBackoff time.Duration
	// OnDownload, if set, is called before the remote is asked.
	OnDownload func()
	// OnWait, if set, is called after each attempt the remote did not
	// answer, with its error and the pause before the next one.
	OnWait func(err error, retryIn time.Duration)
}

// Plan is what a start restores.
type Plan struct {
	// Checkpoint is the checkpoint to restore (nil: start from empty
	// state); Source says where it came from (SourceLocal, SourceRemote).
	Checkpoint *checkpoint.Metadata
	Source     string
	// LostLogs are the sources whose ingest log was lost with the disk
	// the checkpoint was taken on, sorted.
	LostLogs []string
	// Unverified: there is no checkpoint, and the remote could not be
	// asked for one (see Uploader.MarkUnverifiedStart).
	Unverified bool
	// Downloaded is how long the download took (0: nothing downloaded).
	Downloaded time.Duration
}

// Recover decides what a start restores: o.Local, the newest local
// checkpoint that verifies, or, when there is none or o.LocalRecovery is
// false and there is a remote, the remote's newest checkpoint, downloaded
// into the local store.
//
// While the remote does not answer, a start without o.Local keeps trying
// (o.Restore RestoreWait; ctx ends it) or, with RestoreEmptyIfUnreachable,
// tries for o.Wait and then goes on from empty state (Plan.Unverified); a
// start with o.Local tries for o.Wait and then restores o.Local. A remote
// that answers it holds no checkpoint of the appliance means empty state
// (or o.Local). A remote checkpoint whose source offsets the ingest log
// no longer holds (o.LogStart) is not restored over o.Local.
//
// A checkpoint that the restored marker names is restored as
// SourceRemote, and the first such restore decides and records which
// sources lost their ingest log.
func (r *Recovery) Recover(ctx context.Context, o StartOptions) (Plan, error) {
	r.defaults()
	md := o.Local
	var p Plan
	if r.Store != nil && r.Local != nil && (md == nil || !o.LocalRecovery) {
		if o.OnDownload != nil {
			o.OnDownload()
		}
		if md == nil {
			r.Logger.Info("no usable local checkpoint: recovering from remote", "remote", r.Store.String(), "restore", cmp.Or(o.Restore, RestoreWait))
		} else {
			r.Logger.Info("checkpointing.local_recovery is false: recovering from remote", "remote", r.Store.String(),
				"local_checkpoint", md.ID)
		}
		t0 := r.now()
		rmd, err := r.downloadNewest(ctx, o)
		switch {
		case err == nil && rmd != nil:
			md = rmd
			p.Downloaded = max(r.now().Sub(t0), time.Nanosecond)
		case err == nil && md != nil:
			r.Logger.Info("the remote holds no checkpoint of this appliance: restoring the local checkpoint", "checkpoint", md.ID)
		case err == nil:
			r.Logger.Info("the remote holds no checkpoint of this appliance: starting from empty state")
		case errors.Is(err, ErrNotRestorable) && md != nil:
			r.Logger.Warn(err.Error()+"; keeping local checkpoint "+strconv.FormatInt(md.ID, 10), "checkpoint", md.ID)
		case ctx.Err() != nil:
			return p, ctx.Err()
		case md != nil:
			r.Logger.Error("remote recovery failed; restoring the local checkpoint instead", "checkpoint", md.ID, "err", err)
		default:
			r.Logger.Error("remote recovery failed; starting from empty state. Uploads will not overwrite the remote's "+
				"checkpoints, if it has any; restore them with `eddy restore --from remote:latest`", "err", err)
			p.Unverified = true
		}
	}
	if md == nil {
		return p, nil
	}
	p.Checkpoint, p.Source = md, SourceLocal
	m, err := ReadRestored(r.FS, r.DataDir)
	if err != nil {
		r.Logger.Warn("reading the restored marker", "err", err)
	}
	if m == nil || m.Checkpoint != md.ID {
		return p, nil
	}
	p.Source = SourceRemote
	if m.LostLogs == nil {
		m.LostLogs = lostLogs(md, o.Fresh)
		if err := r.writeMarker(m); err != nil {
			return p, fmt.Errorf("record lost ingest logs: %w", err)
		}
	}
	if len(m.LostLogs) > 0 {
		p.LostLogs = m.LostLogs
	}
	return p, nil
}

// lostLogs returns the fresh sources whose position in md is above 0:
// their log was lost with the disk md was taken on.
func lostLogs(md *checkpoint.Metadata, fresh map[string]bool) []string {
	lost := []string{}
	for name := range fresh {
		if st, ok := md.Sources[name]; ok && st.Offset > 0 || hasSubtaskOffsets(md, name) {
			lost = append(lost, name)
		}
	}
	slices.Sort(lost)
	return lost
}

// hasSubtaskOffsets reports whether md holds positions above 0 of source
// name's subtasks ("name/0", "name/1", ...).
func hasSubtaskOffsets(md *checkpoint.Metadata, name string) bool {
	for i := 0; ; i++ {
		st, ok := md.Sources[name+"/"+strconv.Itoa(i)]
		if !ok {
			return false
		}
		if st.Offset > 0 {
			return true
		}
	}
}

// downloadNewest fetches the newest remote checkpoint and writes the
// restored marker. It returns nil, nil when the remote holds no checkpoint
// of the appliance. While the remote does not answer it retries, backing
// off from 1 s to o.MaxBackoff: without end when there is no o.Local and
// o.Restore is RestoreWait, else for up to o.Wait.
func (r *Recovery) downloadNewest(ctx context.Context, o StartOptions) (*checkpoint.Metadata, error) {
	wait := cmp.Or(o.Wait, RemoteWait)
	bounded := o.Local != nil || o.Restore == RestoreEmptyIfUnreachable
	maxBackoff := cmp.Or(o.MaxBackoff, 15*time.Second)
	backoff := min(time.Second, maxBackoff)
	deadline := r.now().Add(wait)
	var accept func(*checkpoint.Metadata) error
	if o.Local != nil && o.LogStart != nil {
		accept = func(rmd *checkpoint.Metadata) error { return replayable(rmd, o.LogStart, o.Fresh) }
	}
	for {
		md, err := r.download(ctx, Latest, accept)
		switch {
		case err == nil:
			if err := r.writeMarker(&Restored{Checkpoint: md.ID, Remote: r.Store.String(), DownloadedAt: r.now().UnixMilli()}); err != nil {
				return nil, err
			}
			return md, nil
		case errors.Is(err, ErrNoRemoteCheckpoint) && !errors.Is(err, ErrRemoteCorrupt):
			return nil, nil
		case errors.Is(err, ErrRemoteCorrupt), errors.Is(err, ErrNotRestorable), ctx.Err() != nil:
			return nil, err
		case bounded && !r.now().Before(deadline):
			return nil, fmt.Errorf("remote not reachable within %s: %w", wait, err)
		}
		r.Logger.Warn("remote not reachable for recovery; retrying", "remote", r.Store.String(), "err", err, "in", backoff)
		if o.OnWait != nil {
			o.OnWait(err, backoff)
		}
		if !r.sleep(ctx, backoff) {
			return nil, ctx.Err()
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// notRestorable is an error that is ErrNotRestorable, with its own text.
type notRestorable string

func (e notRestorable) Error() string        { return string(e) }
func (e notRestorable) Is(target error) bool { return target == ErrNotRestorable }

// replayable returns an ErrNotRestorable error naming the first source md
// starts below the first offset its ingest log holds (logStart), fresh
// sources aside (their log was lost: see lostLogs).
func replayable(md *checkpoint.Metadata, logStart map[string]uint64, fresh map[string]bool) error {
	for _, name := range slices.Sorted(maps.Keys(md.Sources)) {
		src, _, _ := strings.Cut(name, "/")
		first, ok := logStart[src]
		if !ok || fresh[src] {
			continue
		}
		if off := md.Sources[name].Offset; off < first {
			return notRestorable(fmt.Sprintf("remote checkpoint %d starts source %s at ingest-log offset %d, but the log was "+
				"truncated and begins at %d", md.ID, src, off, first))
		}
	}
	return nil
}

// RestoreResult is what Restore did.
type RestoreResult struct {
	// Remote lists the appliance's remote checkpoints, ascending.
	Remote []int64
	// Discarded are the newer local checkpoints removed (discardNewer).
	Discarded []int64
	// Checkpoint is the one downloaded; Duration how long that took.
	Checkpoint *checkpoint.Metadata
	Duration   time.Duration
}

// Restore is `eddy restore`: it downloads remote checkpoint id (Latest:
// the newest that verifies) into the local store, where the next start
// restores it, writes the restored marker and resets the upload ledger (a
// remote checkpoint of another history supersedes what this data dir
// uploaded). Local checkpoints newer than the one to restore would be
// restored instead: Restore refuses unless discardNewer, which removes
// them. The caller holds the data_dir lock.
func (r *Recovery) Restore(ctx context.Context, id int64, discardNewer bool) (RestoreResult, error) {
	r.defaults()
	var res RestoreResult
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	ids, err := RemoteCheckpoints(lctx, r.Store, r.Appliance)
	cancel()
	if err != nil {
		return res, fmt.Errorf("list remote checkpoints on %s: %w", r.Store, err)
	}
	res.Remote = ids
	if len(ids) == 0 {
		return res, fmt.Errorf("%s holds no checkpoint of appliance %q", r.Store, r.Appliance)
	}
	if id != Latest && !slices.Contains(ids, id) {
		return res, fmt.Errorf("%s holds no checkpoint %d of appliance %q (it holds %v)", r.Store, id, r.Appliance, ids)
	}
	want := id
	if want == Latest {
		want = ids[len(ids)-1]
	}
	done, err := r.Local.Completed()
	if err != nil {
		return res, err
	}
	var newer []int64
	for _, l := range done {
		if l > want {
			newer = append(newer, l)
		}
	}
	if len(newer) > 0 && !discardNewer {
		return res, fmt.Errorf("local checkpoints %v are newer than remote checkpoint %d and would be restored "+
			"instead; pass --discard-newer to remove them", newer, want)
	}
	for _, l := range newer {
		if err := r.Local.Abort(l); err != nil {
			return res, err
		}
		res.Discarded = append(res.Discarded, l)
	}
	t0 := time.Now()
	md, err := r.download(ctx, id, nil)
	if err != nil {
		return res, err
	}
	res.Checkpoint, res.Duration = md, time.Since(t0)
	if err := r.writeMarker(&Restored{Checkpoint: md.ID, Remote: r.Store.String(), DownloadedAt: time.Now().UnixMilli()}); err != nil {
		return res, err
	}
	return res, r.resetLedger()
}

// resetLedger removes the upload ledger, durably: the uploader rebuilds it
// from the remote at its next start.
func (r *Recovery) resetLedger() error {
	err := r.FS.Remove(r.DataDir.UploadRecord())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reset the upload ledger: %w", err)
	}
	return r.FS.SyncDir(r.DataDir.Upload())
}
