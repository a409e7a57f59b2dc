package upload

import (
	"maps"
	"slices"
	"sync"

	"github.com/eddy-stream/eddy/storage/checkpoint"
)

// queue decides what to upload next: only the newest offered checkpoint
// waits (pending), one is uploaded at a time (current), and every
// checkpoint offered gets a remote status. It has its own lock; the
// functions it is handed are called with it held and may take only the
// ledger's lock (ledgerState).
type queue struct {
	mu          sync.Mutex
	pending     *checkpoint.Metadata
	current     *checkpoint.Metadata
	newestLocal *checkpoint.Metadata
	offered     []int64 // ids offered that are newer than the newest remote
	status      map[int64]string
	skipped     int64
}

func newQueue() *queue { return &queue{status: map[int64]string{}} }

// offer makes md pending unless a newer checkpoint is pending or being
// uploaded; one that was pending is skipped. remoteNewest returns the
// newest committed remote checkpoint.
func (q *queue) offer(md *checkpoint.Metadata, remoteNewest func() int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.newestLocal == nil || md.ID > q.newestLocal.ID {
		q.newestLocal = md
	}
	if md.ID > remoteNewest() && !slices.Contains(q.offered, md.ID) {
		q.offered = append(q.offered, md.ID)
		if len(q.offered) > 100_000 {
			q.offered = q.offered[len(q.offered)-100_000:]
		}
	}
	switch {
	case q.pending != nil && md.ID <= q.pending.ID:
	case q.current != nil && md.ID <= q.current.ID:
	default:
		if q.pending != nil {
			q.setStatus(q.pending.ID, StatusSkipped)
			q.skipped++
		}
		q.pending = md
		q.setStatus(md.ID, StatusPending)
	}
}

// take returns the checkpoint to upload next (nil: none) and makes it
// current. remote reports whether md needs no upload (the remote has it or
// a newer one) and whether the remote has it.
func (q *queue) take(remote func(md *checkpoint.Metadata) (done, committed bool)) *checkpoint.Metadata {
	q.mu.Lock()
	defer q.mu.Unlock()
	md := q.pending
	q.pending = nil
	if md == nil {
		return nil
	}
	if done, committed := remote(md); done {
		if !committed {
			q.setStatus(md.ID, StatusSkipped)
		}
		return nil
	}
	q.current = md
	q.setStatus(md.ID, StatusUploading)
	return md
}

// requeue puts a checkpoint whose upload failed back, unless a newer one
// is waiting.
func (q *queue) requeue(md *checkpoint.Metadata) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.current == md {
		q.current = nil
	}
	if q.pending == nil {
		q.pending = md
		q.setStatus(md.ID, StatusUploading)
	} else {
		q.setStatus(md.ID, StatusSkipped)
		q.skipped++
	}
}

// drop skips checkpoint id for good (its local files are unusable).
func (q *queue) drop(id int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.setStatus(id, StatusSkipped)
	q.skipped++
}

// finish ends the current upload; committed: md.ID is now on the remote,
// whose newest checkpoint is remoteNewest.
func (q *queue) finish(md *checkpoint.Metadata, committed bool, remoteNewest int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.current = nil
	if committed {
		q.setStatus(md.ID, StatusUploaded)
		q.trim(remoteNewest)
	}
}

// caughtUp drops offered ids the remote has caught up with.
func (q *queue) caughtUp(remoteNewest int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.trim(remoteNewest)
}

func (q *queue) trim(n int64) {
	q.offered = slices.DeleteFunc(q.offered, func(id int64) bool { return id <= n })
}

// protect reports whether id is being uploaded or waits to be.
func (q *queue) protect(id int64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.current != nil && q.current.ID == id || q.pending != nil && q.pending.ID == id
}

func (q *queue) statusOf(id int64) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.status[id]
}

func (q *queue) expired(id int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.setStatus(id, StatusExpired)
}

// setStatus records s for id, forgetting the oldest when there are many.
// q.mu held.
func (q *queue) setStatus(id int64, s string) {
	q.status[id] = s
	if len(q.status) > 256 {
		ids := slices.Sorted(maps.Keys(q.status))
		for _, k := range ids[:len(ids)-200] {
			delete(q.status, k)
		}
	}
}

// queueStats is what Stats shows of the queue.
type queueStats struct {
	current, pending int64
	newestLocal      *checkpoint.Metadata
	offered          int64
	skipped          int64
}

func (q *queue) stats() queueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := queueStats{newestLocal: q.newestLocal, offered: int64(len(q.offered)), skipped: q.skipped}
	if q.current != nil {
		s.current = q.current.ID
	}
	if q.pending != nil {
		s.pending = q.pending.ID
	}
	return s
}
