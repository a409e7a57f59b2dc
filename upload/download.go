package upload

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	"golang.org/x/sync/errgroup"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/storage/fileutil"
)

// Latest asks Download for the newest remote checkpoint that downloads
// and verifies.
const Latest int64 = 0

// ErrNoRemoteCheckpoint is returned by Download when the remote holds no
// (usable) checkpoint of the appliance.
var ErrNoRemoteCheckpoint = errors.New("upload: no remote checkpoint")

// ErrRemoteCorrupt wraps what Download found wrong with a remote
// checkpoint: a damaged _metadata, a missing object, or a file whose size
// or CRC32C does not match the metadata.
var ErrRemoteCorrupt = errors.New("upload: remote checkpoint damaged")

// DownloadOptions configure Download.
type DownloadOptions struct {
	// Parallelism is the number of files fetched at once (default 8).
	Parallelism int
	// OpTimeout bounds listing and reading a _metadata (default 1 min).
	OpTimeout time.Duration
	Logger    *slog.Logger
	// BytesRead, if set, is increased by the stored bytes read.
	BytesRead *atomic.Int64
	// FS is the file system the downloaded files are written through
	// (nil: the OS); it should be the one the local store was opened on.
	FS fileutil.FS
	// Accept, if set, is asked about each remote checkpoint once its
	// _metadata is read, before any file is fetched: an error ends the
	// download with that error (and Latest does not try older ones).
	Accept func(*checkpoint.Metadata) error
	// DataDir is where the sink spools the checkpoint names are rebuilt,
	// data_dir/spool/<sink>/ (installSpools); zero: they are not.
	DataDir datadir.Layout
}

// RemoteCheckpoints returns the ids of the appliance's remote checkpoints
// whose _metadata is stored, ascending.
func RemoteCheckpoints(ctx context.Context, s Store, appliance string) ([]int64, error) {
	l := Layout{appliance}
	objs, err := s.List(ctx, l.Key(chkPrefix))
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, oi := range objs {
		if _, id, meta := parseRel(l.Rel(oi.Key)); meta {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Download fetches remote checkpoint id of appliance (Latest: the newest
// one that verifies, falling back to older ones when one is damaged) into
// the local checkpoint store as an ordinary completed checkpoint, which
// the local restore path then restores. It goes through the store's own
// commit path: Begin(N) creates chk-N, files are fetched into it in
// parallel, each written atomically (fileutil.CreateAtomic), decompressed
// and checked against the remote _metadata (size and CRC32C) before it is
// committed; then Commit writes the local _metadata, the commit point.
//
// A failed download leaves chk-N without _metadata and keeps the files it
// committed: the next Download of N resumes, keeping each file already
// there whose size and CRC32C match the remote _metadata and fetching only
// the missing or bad ones. (checkpoint.Open removes such a directory at
// the next start, and so does the coordinator's Begin of N.)
//
// If chk-N already exists locally and verifies, it is used as it is; if
// it does not verify it is set aside (.broken) and downloaded again.
func Download(ctx context.Context, s Store, appliance string, id int64, local *checkpoint.Store, o DownloadOptions) (*checkpoint.Metadata, error) {
	if o.Parallelism <= 0 {
		o.Parallelism = 8
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.FS == nil {
		o.FS = fileutil.OSFS{Logger: o.Logger}
	}
	l := Layout{appliance}
	if id != Latest {
		return downloadOne(ctx, s, l, id, local, o)
	}
	lctx, cancel := context.WithTimeout(ctx, o.OpTimeout)
	ids, err := RemoteCheckpoints(lctx, s, appliance)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("upload: list remote checkpoints: %w", err)
	}
	var errs []error
	for _, id := range slices.Backward(ids) {
		md, err := downloadOne(ctx, s, l, id, local, o)
		if err == nil {
			return md, nil
		}
		if !errors.Is(err, ErrRemoteCorrupt) {
			return nil, err
		}
		o.Logger.Error("remote checkpoint is damaged; trying the previous one", "checkpoint", id, "err", err)
		errs = append(errs, err)
	}
	return nil, errors.Join(append([]error{fmt.Errorf("%w of appliance %s on %s", ErrNoRemoteCheckpoint, appliance, s)}, errs...)...)
}

func downloadOne(ctx context.Context, s Store, l Layout, id int64, local *checkpoint.Store, o DownloadOptions) (*checkpoint.Metadata, error) {
	t0 := time.Now()
	m, err := readManifest(ctx, s, l, id, o.OpTimeout)
	var de *decodeError
	switch {
	case errors.As(err, &de):
		return nil, fmt.Errorf("%w: %v", ErrRemoteCorrupt, err)
	case errors.Is(err, ErrNotFound):
		return nil, fmt.Errorf("%w: checkpoint %d of appliance %s on %s", ErrNoRemoteCheckpoint, id, l.Appliance, s)
	case err != nil:
		return nil, err
	}
	md := m.Checkpoint
	if o.Accept != nil {
		if err := o.Accept(md); err != nil {
			return nil, err
		}
	}
	if ids, err := local.Completed(); err == nil && slices.Contains(ids, id) {
		lmd, err := local.Load(id)
		if err == nil {
			err = local.Verify(lmd, true)
		}
		if err == nil && lmd.CompletedTimestamp == md.CompletedTimestamp {
			o.Logger.Info("remote checkpoint is already here", "checkpoint", id)
			return lmd, nil
		}
		if err == nil {
			err = errors.New("a different checkpoint with the same id")
		}
		if _, merr := local.MarkBroken(id, err); merr != nil {
			return nil, merr
		}
	}
	resumed, err := resumable(o.FS, local, id)
	if err != nil {
		return nil, err
	}
	if !resumed {
		if err := local.Begin(id); err != nil {
			return nil, err
		}
	}
	files := map[[2]string]checkpoint.File{}
	for task, ts := range md.Tasks {
		if len(ts.Files) == 0 {
			continue
		}
		if err := fileutil.CreateDirAllFS(o.FS, local.TaskDir(id, task)); err != nil {
			return nil, err
		}
		for _, f := range ts.Files {
			files[[2]string{task, f.Name}] = f
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Parallelism)
	var bytes, kept atomic.Int64
	for _, ob := range m.Objects {
		f := files[[2]string{ob.Task, ob.File}]
		path := filepath.Join(local.TaskDir(id, ob.Task), f.Name)
		g.Go(func() error {
			if resumed && haveFile(o.FS, path, f) {
				kept.Add(1)
				return nil
			}
			n, err := fetch(gctx, s, o.FS, l.Key(ob.Key), ob, f, path, o.BytesRead)
			bytes.Add(n)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("download checkpoint %d (the files fetched so far are kept for the next attempt): %w", id, err)
	}
	if err := installSpools(ctx, s, l, m, o); err != nil {
		return nil, fmt.Errorf("download checkpoint %d (the files fetched so far are kept for the next attempt): %w", id, err)
	}
	if err := local.Commit(md); err != nil {
		return nil, fmt.Errorf("download checkpoint %d: %w", id, err)
	}
	o.Logger.Info("downloaded remote checkpoint", "checkpoint", id, "files", len(m.Objects), "kept", kept.Load(),
		"bytes", bytes.Load(), "state_size", md.StateSize(), "duration", time.Since(t0).Round(time.Millisecond))
	return md, nil
}

// resumable reports whether chk-id is an unfinished download to resume: a
// directory without _metadata (the local store has no checkpoint id).
func resumable(fsys fileutil.FS, local *checkpoint.Store, id int64) (bool, error) {
	dir := local.CheckpointDir(id)
	fi, err := fsys.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.IsDir():
		return false, nil
	}
	_, err = fsys.Stat(filepath.Join(dir, checkpoint.MetadataFile))
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	return false, err
}

// haveFile reports whether path holds f: its size and CRC32C.
func haveFile(fsys fileutil.FS, path string, f checkpoint.File) bool {
	fi, err := fsys.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != f.Size {
		return false
	}
	in, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer in.Close()
	crc := crc32.New(castagnoli)
	n, err := io.Copy(crc, in)
	return err == nil && n == f.Size && crc.Sum32() == f.CRC32C
}

// fetch writes one object to path through fsys, decoded, and checks it
// against f (size and CRC32C) before committing it (fileutil.CreateAtomic:
// fsync, rename, fsync of the directory). A file that does not match is
// never committed. It returns the stored bytes read.
func fetch(ctx context.Context, s Store, fsys fileutil.FS, key string, ob Object, f checkpoint.File, path string, read *atomic.Int64) (int64, error) {
	rc, err := s.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return 0, fmt.Errorf("%w: object %s is missing", ErrRemoteCorrupt, key)
	}
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	cnt := &countReader{r: rc, total: read}
	var r io.Reader = cnt
	if ob.Encoding == EncodingSnappy {
		r = snappy.NewReader(cnt)
	}
	out, err := fileutil.CreateAtomic(fsys, path, 0o644)
	if err != nil {
		return 0, err
	}
	defer out.Abort()
	crc := crc32.New(castagnoli)
	// Read one byte past the recorded size, so a longer object is caught.
	n, err := io.Copy(io.MultiWriter(out, crc), io.LimitReader(r, f.Size+1))
	switch {
	case err != nil && (errors.Is(err, snappy.ErrCorrupt) || errors.Is(err, io.ErrUnexpectedEOF)):
		return cnt.n, fmt.Errorf("%w: object %s: %v", ErrRemoteCorrupt, key, err)
	case err != nil:
		return cnt.n, fmt.Errorf("object %s: %w", key, err)
	case n != f.Size:
		return cnt.n, fmt.Errorf("%w: object %s holds %s bytes of %s, metadata says %d", ErrRemoteCorrupt, key,
			sizeStr(n, f.Size), f.Name, f.Size)
	case crc.Sum32() != f.CRC32C:
		return cnt.n, fmt.Errorf("%w: object %s: crc32c %08x, metadata says %08x", ErrRemoteCorrupt, key, crc.Sum32(), f.CRC32C)
	}
	if err := out.Commit(); err != nil {
		return cnt.n, fmt.Errorf("object %s: %w", key, err)
	}
	return cnt.n, nil
}

func sizeStr(n, want int64) string {
	if n > want {
		return "more than " + strconv.FormatInt(want, 10)
	}
	return strconv.FormatInt(n, 10)
}

type countReader struct {
	r     io.Reader
	n     int64
	total *atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.total != nil {
		c.total.Add(int64(n))
	}
	return n, err
}
