package upload

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/storage/fileutil"
)

// RemoteWait is how long Recover retries a remote that does not answer
// before a start without a local checkpoint goes on from empty state (the
// uploader then refuses to upload over the remote's newer history).
const RemoteWait = 2 * time.Minute

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
}

func (r *Recovery) defaults() {
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	if r.FS == nil {
		r.FS = fileutil.OSFS{Logger: r.Logger}
	}
}

func (r *Recovery) download(ctx context.Context, id int64) (*checkpoint.Metadata, error) {
	return Download(ctx, r.Store, r.Appliance, id, r.Local, DownloadOptions{
		Parallelism: r.Parallelism, Logger: r.Logger, BytesRead: r.BytesRead, FS: r.FS})
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
	// LocalRecovery is checkpointing.local_recovery: false prefers the
	// remote's newest checkpoint to a local one.
	LocalRecovery bool
	// Fresh are the sources whose ingest log had never been written when
	// eddy opened it.
	Fresh map[string]bool
	// Wait bounds the retries of an unreachable remote (0: RemoteWait).
	Wait time.Duration
	// OnDownload, if set, is called before the remote is asked.
	OnDownload func()
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
// into the local store (retried for up to o.Wait while the remote does
// not answer; ctx ends it). A failed download falls back to o.Local, or
// to empty state (Plan.Unverified). A checkpoint that the restored marker
// names is restored as SourceRemote, and the first such restore decides
// and records which sources lost their ingest log.
func (r *Recovery) Recover(ctx context.Context, o StartOptions) (Plan, error) {
	r.defaults()
	md := o.Local
	var p Plan
	if r.Store != nil && r.Local != nil && (md == nil || !o.LocalRecovery) {
		if o.OnDownload != nil {
			o.OnDownload()
		}
		r.Logger.Info("no usable local checkpoint: recovering from remote", "remote", r.Store.String(),
			"local_recovery", o.LocalRecovery)
		t0 := time.Now()
		rmd, err := r.downloadNewest(ctx, cmp.Or(o.Wait, RemoteWait))
		switch {
		case err == nil && rmd != nil:
			md = rmd
			p.Downloaded = time.Since(t0)
		case err != nil && md != nil:
			r.Logger.Error("remote recovery failed; restoring the local checkpoint instead", "checkpoint", md.ID, "err", err)
		case err != nil:
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
// restored marker. While the remote does not answer it retries for up to
// wait, backing off from 1 s to 15 s. It returns nil, nil when the remote
// holds no checkpoint.
func (r *Recovery) downloadNewest(ctx context.Context, wait time.Duration) (*checkpoint.Metadata, error) {
	deadline := time.Now().Add(wait)
	backoff := time.Second
	for {
		md, err := r.download(ctx, Latest)
		switch {
		case err == nil:
			if err := r.writeMarker(&Restored{Checkpoint: md.ID, Remote: r.Store.String(), DownloadedAt: time.Now().UnixMilli()}); err != nil {
				return nil, err
			}
			return md, nil
		case errors.Is(err, ErrNoRemoteCheckpoint) && !errors.Is(err, ErrRemoteCorrupt):
			r.Logger.Info("the remote holds no checkpoint of this appliance: starting from empty state")
			return nil, nil
		case errors.Is(err, ErrRemoteCorrupt), ctx.Err() != nil:
			return nil, err
		case time.Now().After(deadline):
			return nil, fmt.Errorf("remote not reachable within %s: %w", wait, err)
		}
		r.Logger.Warn("remote not reachable for recovery; retrying", "err", err, "in", backoff)
		if !sleep(ctx, backoff) {
			return nil, ctx.Err()
		}
		backoff = min(backoff*2, 15*time.Second)
	}
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
	md, err := r.download(ctx, id)
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
