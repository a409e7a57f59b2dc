package upload

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/eddy-stream/eddy/storage/checkpoint"
)

// reconcile lists the remote and rebuilds the ledger from it: objects
// listed are known to be there (with the content the ledger knew, if the
// size agrees), committed checkpoints are those whose _metadata is listed
// (manifests the ledger does not know are read). A committed checkpoint
// that references a missing object is uncommitted (its _metadata
// deleted), so that no remote _metadata names a missing object.
func (u *Uploader) reconcile(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, 5*u.o.OpTimeout)
	objs, err := u.o.Store.List(lctx, u.layout.Root())
	cancel()
	if err != nil {
		return fmt.Errorf("upload: reconcile: %w", err)
	}
	old := u.ledger.snapshot()
	fresh := len(old.Committed) == 0 && len(old.Objects) == 0
	led := newLedger(u.identity())
	led.Conflict = old.Conflict
	listed := map[string]ObjectInfo{}
	var metas []int64
	for _, oi := range objs {
		rel := u.layout.Rel(oi.Key)
		listed[rel] = oi
		if o, ok := old.Objects[rel]; ok && o.Size == oi.Size {
			led.Objects[rel] = o
		} else {
			led.Objects[rel] = ledgerObject{Size: oi.Size}
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
			c = ledgerCheckpoint{TriggerTimestamp: m.Checkpoint.TriggerTimestamp, CompletedTimestamp: m.Checkpoint.CompletedTimestamp,
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
			delete(led.Objects, MetadataRel(id))
			continue
		}
		if m != nil {
			for _, ob := range m.Objects {
				if o := led.Objects[ob.Key]; !o.Known {
					if f, ok := fileOf(m.Checkpoint, ob.Task, ob.File); ok && o.Size == ob.StoredSize {
						led.Objects[ob.Key] = ledgerObject{Size: o.Size, CRC32C: f.CRC32C, Encoding: ob.Encoding, Known: true}
					}
				}
			}
		}
		led.Committed[id] = c
	}
	if old.UnverifiedStart && led.Conflict == "" && len(led.Committed) > 0 {
		led.Conflict = fmt.Sprintf("this data dir started from empty state while the remote was unreachable, and the "+
			"remote holds checkpoints %v of this appliance: not uploading, so as not to overwrite them. Restore them "+
			"with `eddy restore --from remote:latest --discard-newer`, or delete %s in the data dir to upload over them",
			led.committedIDs(), u.ledgerRel())
	}
	if fresh && led.Conflict == "" && len(led.Committed) > 0 && u.o.Local != nil {
		var localNewest int64
		if ids, err := u.o.Local.Completed(); err == nil && len(ids) > 0 {
			localNewest = ids[len(ids)-1]
		}
		if rn := led.newest(); rn > localNewest {
			led.Conflict = fmt.Sprintf("the remote holds checkpoint %d, newer than any local checkpoint (%d), from a history "+
				"this data dir did not upload: not uploading, so as not to overwrite it. Restore it with "+
				"`eddy restore --from remote:latest`, or delete %s in the data dir to upload over it", rn, localNewest,
				u.ledgerRel())
		}
	}
	if led.Conflict != "" {
		u.log.Error("uploads stopped", "err", led.Conflict)
	}
	if err := led.save(u.ledger.fs, u.ledger.path); err != nil {
		return err
	}
	u.ledger.replace(led)
	u.queue.caughtUp(led.newest())
	u.log.Info("remote reconciled", "remote", u.o.Store.String(), "objects", len(led.Objects),
		"checkpoints", led.committedIDs())
	return nil
}

// ledgerRel is the ledger's path relative to data_dir, for messages.
func (u *Uploader) ledgerRel() string {
	rel, err := filepath.Rel(u.o.DataDir.Root, u.o.DataDir.UploadRecord())
	if err != nil {
		return u.o.DataDir.UploadRecord()
	}
	return rel
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
