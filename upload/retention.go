package upload

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// retain deletes remote checkpoints beyond NumRetained: first each one's
// _metadata (so it is no longer committed), then its private objects and
// the shared objects no retained checkpoint references (the shared-state
// registry is the union of the retained manifests' keys). Failures are
// logged; what is left behind is an orphan for the sweep.
func (u *Uploader) retain(ctx context.Context) {
	var ids []int64
	u.ledger.with(func(l *ledger) { ids = l.committedIDs() })
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
		u.ledger.with(func(l *ledger) {
			keys = append(keys, l.Committed[id].Keys...)
			delete(l.Committed, id)
			delete(l.Objects, MetadataRel(id))
		})
		u.queue.expired(id)
	}
	var refs map[string]bool
	u.ledger.with(func(l *ledger) { refs = l.referenced() })
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
	u.ledger.with(func(l *ledger) {
		for _, k := range gone {
			delete(l.Objects, k)
		}
	})
	u.stats.addDeleted(int64(len(gone) + len(drop)))
	u.log.Info("remote retention", "removed_checkpoints", drop, "removed_objects", len(gone))
	if err := u.ledger.save(); err != nil {
		u.log.Warn("saving the upload ledger", "err", err)
	}
}

// uncommit deletes the remote _metadata of id (a checkpoint of another
// history that reused the id).
func (u *Uploader) uncommit(ctx context.Context, id int64) error {
	dctx, cancel := u.opCtx(ctx)
	defer cancel()
	if err := u.o.Store.Delete(dctx, u.layout.Key(MetadataRel(id))); err != nil {
		return err
	}
	u.ledger.with(func(l *ledger) {
		delete(l.Committed, id)
		delete(l.Objects, MetadataRel(id))
		for rel := range l.Objects {
			if _, cid, _ := parseRel(rel); cid == id {
				delete(l.Objects, rel)
			}
		}
	})
	return nil
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
	var refs map[string]bool
	u.ledger.with(func(l *ledger) { refs = l.referenced() })
	now := time.Now()
	for _, oi := range objs {
		if oi.ModTime.After(now) {
			now = oi.ModTime // the remote's clock runs ahead
		}
	}
	// A valid _metadata the ledger does not know (it should not happen:
	// this loop commits and reconcile reads them all) keeps what it names.
	for _, oi := range objs {
		rel := u.layout.Rel(oi.Key)
		if _, id, meta := parseRel(rel); meta && !refs[rel] {
			m, err := u.readManifest(ctx, id)
			if err != nil {
				continue // damaged or gone: never deleted here, see below
			}
			u.log.Warn("orphan sweep: a remote checkpoint the ledger does not know; keeping its objects", "checkpoint", id)
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
	listed := map[string]bool{}
	for _, oi := range objs {
		listed[u.layout.Rel(oi.Key)] = true
	}
	u.ledger.with(func(l *ledger) {
		for _, k := range gone {
			delete(l.Objects, k)
		}
		for k := range l.Objects {
			if !listed[k] {
				delete(l.Objects, k) // gone from the remote behind our back
			}
		}
	})
	u.stats.swept(int64(len(gone)))
	if len(gone) > 0 {
		u.log.Info("orphan sweep removed objects", "count", len(gone))
	}
	return u.ledger.save()
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
