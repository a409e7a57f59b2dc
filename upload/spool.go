package upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/eddy-stream/eddy/internal/failpoint"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/ingestlog"
)

// Sink spools on the remote (docs/remote-layout.md, "Sink spools").
//
// In exactly_once mode the output of completed checkpoints waits for each
// sink in its spool, data_dir/spool/<sink>/ (pipeline/sink.Spool), and a
// checkpoint's task state holds only output not yet spooled. A checkpoint
// records where every spool stood when it completed
// (checkpoint.Metadata.Spools): the records from the confirmed position up
// to the end are the rest of what the sink had not confirmed. The uploader
// ships that range with the checkpoint, as whole segment files from the
// one holding the confirmed position, the last cut after the end's mark;
// each is an immutable object named by the segment's base offset, size and
// CRC32C, shared by every checkpoint that needs it (a sealed segment is
// sent once, the active one's prefix again as it grows). Download
// rebuilds data_dir/spool/<sink>/ from them before the job starts, and the
// job's spool open cuts it back to the restored checkpoint as after any
// restart.

// spoolDir is the directory of the shared spool objects.
const spoolDir = sharedDir + "/_spool"

// ManifestSpool is the part of one sink's spool a remote checkpoint needs.
type ManifestSpool struct {
	Sink string `json:"sink"`
	// Confirmed is what the restored confirmed.json says: every record
	// before Confirmed.Offset was confirmed by the sink. End is the
	// checkpoint's spools.<sink>.end: the restored log ends there.
	Confirmed checkpoint.SpoolPos `json:"confirmed"`
	End       checkpoint.SpoolPos `json:"end"`
	// Segments are the segment files of the restored log, ascending and
	// contiguous, the first holding Confirmed.Offset; none when the sink
	// had confirmed everything (Confirmed.Offset == End.Offset).
	Segments []SpoolSegment `json:"segments"`
}

// SpoolSegment is one segment file of a spool (stored as it is).
type SpoolSegment struct {
	Base   uint64 `json:"base"` // offset of its first record: its name
	Size   int64  `json:"size"`
	CRC32C uint32 `json:"crc32c"`
	Key    string `json:"key"` // relative to the appliance directory
}

// SpoolRel is the object of a spool segment's first size bytes, relative
// to the appliance: shared/_spool/<sink>/<base>-<size>-<crc32c>.seg
// (content-addressed: a spool cut back after a restore writes other
// records under the same offsets).
func SpoolRel(sink string, base uint64, size int64, crc uint32) string {
	return fmt.Sprintf("%s/%s/%020d-%d-%08x.seg", spoolDir, sink, base, size, crc)
}

func checkSpools(m *Manifest) error {
	want := m.Checkpoint.Spools
	seen := map[string]bool{}
	for _, sp := range m.Spools {
		st, ok := want[sp.Sink]
		switch {
		case !ok:
			return fmt.Errorf("spool of sink %q the checkpoint does not name", sp.Sink)
		case seen[sp.Sink]:
			return fmt.Errorf("spool of sink %s listed twice", sp.Sink)
		case sp.End != st.End:
			return fmt.Errorf("spool of sink %s ends at %+v, the checkpoint says %+v", sp.Sink, sp.End, st.End)
		case sp.Confirmed.Offset > sp.End.Offset:
			return fmt.Errorf("spool of sink %s: confirmed offset %d beyond the end %d", sp.Sink, sp.Confirmed.Offset, sp.End.Offset)
		case len(sp.Segments) == 0 && sp.Confirmed.Offset != sp.End.Offset:
			return fmt.Errorf("spool of sink %s has no segments for offsets %d … %d", sp.Sink, sp.Confirmed.Offset, sp.End.Offset)
		}
		seen[sp.Sink] = true
		for i, seg := range sp.Segments {
			if seg.Key != SpoolRel(sp.Sink, seg.Base, seg.Size, seg.CRC32C) {
				return fmt.Errorf("spool of sink %s: segment %d has key %s", sp.Sink, seg.Base, seg.Key)
			}
			if i == 0 && seg.Base > sp.Confirmed.Offset || i > 0 && seg.Base <= sp.Segments[i-1].Base || seg.Base >= sp.End.Offset {
				return fmt.Errorf("spool of sink %s: segment %d out of place", sp.Sink, seg.Base)
			}
		}
	}
	for name := range want {
		if !seen[name] && m.Version > 1 {
			return fmt.Errorf("no spool for sink %s", name)
		}
	}
	return nil
}

// spoolPlan is one spool segment of a checkpoint and whether the remote
// lacks it.
type spoolPlan struct {
	path string
	seg  SpoolSegment
	need bool
}

// crcEntry caches the CRC32C of a local segment file's first size bytes,
// valid while the file has that modification time (a sealed segment is
// not checksummed again for every checkpoint).
type crcEntry struct {
	size  int64
	mtime time.Time
	crc   uint32
}

// spoolPlans lists the spool segments md needs, sink by sink, reading
// data_dir/spool/<sink>/log/ (the running job may append and front-truncate
// meanwhile: a segment removed under it is retried). The error is errLocal
// when the spool no longer holds md's range.
func (u *Uploader) spoolPlans(md *checkpoint.Metadata) ([]ManifestSpool, []spoolPlan, error) {
	var spools []ManifestSpool
	var plans []spoolPlan
	for _, name := range slices.Sorted(maps.Keys(md.Spools)) {
		var sp ManifestSpool
		var ps []spoolPlan
		var err error
		for range 5 {
			sp, ps, err = u.spoolPlan(name, md.Spools[name])
			if !errors.Is(err, fs.ErrNotExist) {
				break
			}
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: spool of sink %s: %v", errLocal, name, err)
		}
		u.ledger.with(func(l *ledger) {
			for i := range ps {
				o, ok := l.Objects[ps[i].seg.Key]
				ps[i].need = !ok || o.Size != ps[i].seg.Size
			}
		})
		spools, plans = append(spools, sp), append(plans, ps...)
	}
	return spools, plans, nil
}

func (u *Uploader) spoolPlan(name string, st checkpoint.SpoolState) (ManifestSpool, []spoolPlan, error) {
	sp := ManifestSpool{Sink: name, Confirmed: st.Confirmed, End: st.End, Segments: []SpoolSegment{}}
	segs, err := ingestlog.Segments(u.o.FS, filepath.Join(u.o.DataDir.Spool(name), datadir.SpoolLogDir))
	if err != nil {
		return sp, nil, err
	}
	// Segments wholly below the first one left were confirmed (the spool
	// records its position before it removes them); the epoch stays the
	// older one, which only republishes more.
	if len(segs) > 0 && segs[0].Base > sp.Confirmed.Offset {
		sp.Confirmed.Offset = min(segs[0].Base, sp.End.Offset)
	}
	if sp.Confirmed.Offset >= sp.End.Offset {
		sp.Confirmed.Offset = sp.End.Offset
		return sp, nil, nil
	}
	var ps []spoolPlan
	for i, seg := range segs {
		next := uint64(1<<64 - 1)
		if i+1 < len(segs) {
			next = segs[i+1].Base
		}
		if next <= sp.Confirmed.Offset || seg.Base >= sp.End.Offset {
			continue
		}
		fi, err := u.o.FS.Stat(seg.Path)
		if err != nil {
			return sp, nil, err
		}
		size := fi.Size()
		if next > sp.End.Offset { // the segment holding the end: cut after its mark
			if size, err = ingestlog.RecordPosition(u.o.FS, seg, sp.End.Offset); err != nil {
				return sp, nil, err
			}
		}
		crc, err := u.segmentCRC(seg.Path, size, fi.ModTime())
		if err != nil {
			return sp, nil, err
		}
		s := SpoolSegment{Base: seg.Base, Size: size, CRC32C: crc, Key: SpoolRel(name, seg.Base, size, crc)}
		sp.Segments = append(sp.Segments, s)
		ps = append(ps, spoolPlan{path: seg.Path, seg: s})
	}
	if len(ps) == 0 || ps[0].seg.Base > sp.Confirmed.Offset {
		return sp, nil, fmt.Errorf("%w: no segment holds offset %d", ingestlog.ErrOffsetTruncated, sp.Confirmed.Offset)
	}
	return sp, ps, nil
}

// segmentCRC returns the CRC32C of the first size bytes of path.
func (u *Uploader) segmentCRC(path string, size int64, mtime time.Time) (uint32, error) {
	if e, ok := u.crcs[path]; ok && e.size == size && e.mtime.Equal(mtime) {
		return e.crc, nil
	}
	f, err := u.o.FS.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, io.LimitReader(f, size))
	if err != nil {
		return 0, err
	}
	if n != size {
		return 0, fmt.Errorf("%s holds %d bytes, fewer than %d", path, n, size)
	}
	if u.crcs == nil || len(u.crcs) > 4096 {
		u.crcs = map[string]crcEntry{}
	}
	u.crcs[path] = crcEntry{size: size, mtime: mtime, crc: h.Sum32()}
	return h.Sum32(), nil
}

// uploadSegment sends the first p.seg.Size bytes of p.path, checking
// their CRC32C on the way: bytes that changed since they were planned are
// not left on the remote (errLocal).
func (u *Uploader) uploadSegment(ctx context.Context, p spoolPlan) error {
	f, err := u.o.FS.OpenFile(p.path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("%w: %v", errLocal, err)
	}
	defer f.Close()
	key := u.layout.Key(p.seg.Key)
	cr := &crcReader{r: io.LimitReader(f, p.seg.Size)}
	if err := u.o.Store.Put(ctx, key, u.meter(ctx, cr), p.seg.Size); err != nil {
		return err
	}
	if cr.n != p.seg.Size || cr.crc != p.seg.CRC32C {
		dctx, cancel := u.opCtx(context.WithoutCancel(ctx))
		derr := u.o.Store.Delete(dctx, key)
		cancel()
		return errors.Join(fmt.Errorf("%w: %s has crc32c %08x over %d bytes, planned %08x over %d",
			errLocal, p.path, cr.crc, cr.n, p.seg.CRC32C, p.seg.Size), derr)
	}
	u.ledger.with(func(l *ledger) {
		l.Objects[p.seg.Key] = ledgerObject{Size: p.seg.Size, CRC32C: p.seg.CRC32C, Encoding: EncodingIdentity, Known: true}
	})
	u.stats.filesSent.Add(1)
	return nil
}

// installSpools rebuilds data_dir/spool/<sink>/ of every sink of m from
// the remote, before the checkpoint is committed locally: assembled in
// data_dir/upload/spool/<sink>/ (segments fetched and verified one by
// one, kept there for a retry when they match), confirmed.json last, then
// moved into place. A sink whose spool directory already has a
// confirmed.json keeps it: it is this box's own (a restore from the
// remote with local_recovery false, or eddy restore), which holds at
// least what the remote copy holds.
func installSpools(ctx context.Context, s Store, l Layout, m *Manifest, o DownloadOptions) error {
	if o.DataDir.Root == "" {
		return nil
	}
	for _, sp := range m.Spools {
		dst := o.DataDir.Spool(sp.Sink)
		if _, err := o.FS.Stat(filepath.Join(dst, datadir.SpoolConfirmedFile)); err == nil {
			o.Logger.Info("keeping the local spool of sink", "sink", sp.Sink, "dir", dst)
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		stage := o.DataDir.SpoolDownload(sp.Sink)
		logDir := filepath.Join(stage, datadir.SpoolLogDir)
		if err := fileutil.CreateDirAllFS(o.FS, logDir); err != nil {
			return err
		}
		want := map[string]SpoolSegment{}
		for _, seg := range sp.Segments {
			want[ingestlog.SegmentName(seg.Base)] = seg
		}
		if len(sp.Segments) == 0 { // an empty log continuing at the end
			want[ingestlog.SegmentName(sp.End.Offset)] = SpoolSegment{Base: sp.End.Offset}
		}
		entries, err := o.FS.ReadDir(logDir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if _, ok := want[e.Name()]; !ok {
				if err := o.FS.Remove(filepath.Join(logDir, e.Name())); err != nil {
					return err
				}
			}
		}
		var bytes int64
		for _, name := range slices.Sorted(maps.Keys(want)) {
			seg := want[name]
			path := filepath.Join(logDir, name)
			f := checkpoint.File{Name: name, Size: seg.Size, CRC32C: seg.CRC32C}
			if haveFile(o.FS, path, f) {
				continue
			}
			if seg.Key == "" {
				a, err := fileutil.CreateAtomic(o.FS, path, 0o644)
				if err != nil {
					return err
				}
				if err := a.Commit(); err != nil {
					return err
				}
				continue
			}
			n, err := fetch(ctx, s, o.FS, l.Key(seg.Key), Object{Key: seg.Key, Encoding: EncodingIdentity}, f, path, o.BytesRead)
			bytes += n
			if err != nil {
				return fmt.Errorf("spool of sink %s: %w", sp.Sink, err)
			}
			failpoint.Hit(failpoint.SpoolDownload)
		}
		conf, err := json.Marshal(sp.Confirmed)
		if err != nil {
			return err
		}
		if err := fileutil.WriteFileAtomicFS(o.FS, filepath.Join(stage, datadir.SpoolConfirmedFile), append(conf, '\n'), 0o644); err != nil {
			return err
		}
		if err := fileutil.CreateDirAllFS(o.FS, o.DataDir.SpoolRoot()); err != nil {
			return err
		}
		if err := o.FS.RemoveAll(dst); err != nil {
			return err
		}
		if err := o.FS.Rename(stage, dst); err != nil {
			return err
		}
		if err := o.FS.SyncDir(o.DataDir.SpoolRoot()); err != nil {
			return err
		}
		if err := o.FS.SyncDir(filepath.Dir(stage)); err != nil {
			return err
		}
		o.Logger.Info("restored the spool of sink from the remote", "sink", sp.Sink, "segments", len(sp.Segments),
			"bytes", bytes, "confirmed", sp.Confirmed.Offset, "end", sp.End.Offset, "end_checkpoint", sp.End.Epoch)
	}
	return nil
}
