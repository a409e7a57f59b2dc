package pipeline

import (
	"errors"
	"fmt"

	"github.com/eddy-stream/eddy/internal/failpoint"
	"github.com/eddy-stream/eddy/storage/state"
)

// A native (incremental) checkpoint is taken in two parts, like Flink's
// copy-on-write heap snapshots: the synchronous phase writes the write-back
// cache's dirty entries into RocksDB (memtable only, no WAL) and passes the
// barrier on; the RocksDB checkpoint itself (memtable flush, hard links,
// MANIFEST copy, fsyncs) runs off the task's goroutine. Until it has
// returned the task must not write to RocksDB, or writes after the barrier
// would be in the checkpoint. So while one is pending the window operator
// holds every write back (windowOp.held):
//
//   - dirty entries stay in the cache, also past dirtyLimit, and so do the
//     tombstones of keys whose windows all fired and the rocksdb timer
//     service's pending puts and deletes (written by flush only);
//   - an overflowing cache evicts only clean entries (their state is in
//     RocksDB as of the barrier, which is what a later read returns);
//   - once the cache is over its bounds by heldSlack the task waits for the
//     checkpoint (back-pressure), then writes and evicts as usual;
//   - flush, so the next synchronous phase and the task's end, waits for it.
//
// Reads (Get, MultiGet, the timer scans) go on meanwhile.

// msgSyncPhase is the debug log line of a keyed task's synchronous phase:
// took, and of it wait (for the previous native checkpoint) and write (the
// dirty entries into RocksDB).
const msgSyncPhase = "pipeline: sync phase"

// nativeCP is a native checkpoint whose RocksDB part is in progress.
type nativeCP struct {
	task string
	done chan struct{} // closed when CreateCheckpoint has returned
	err  error         // its error; read after done
}

// testHookNative, set only by tests, runs before the RocksDB checkpoint of
// every native checkpoint (to hold it while the task goes on).
var testHookNative func(task string, id int64)

// testHookHeldWait, set only by tests, runs when a task starts waiting for a
// pending native checkpoint because its cache is over the held bound.
var testHookHeldWait func(task string)

// startNative starts the RocksDB checkpoint of checkpoint id into dir and
// holds the task's writes until it returns. The returned pre waits for it
// in the asynchronous phase.
func (t *keyedTask) startNative(id int64, dir string) func(dir string) error {
	p := &nativeCP{task: t.name, done: make(chan struct{})}
	t.op.pending = p
	t.cp.j.async.Go(func() {
		defer close(p.done)
		if testHookNative != nil {
			testHookNative(t.name, id)
		}
		if p.err = t.db.CreateCheckpoint(dir); p.err == nil {
			failpoint.Hit(failpoint.CheckpointSync)
		}
	})
	return func(string) error {
		<-p.done
		if p.err != nil {
			return fmt.Errorf("native checkpoint: %w", p.err)
		}
		return nil
	}
}

// held reports whether a native checkpoint is pending, so that op must not
// write. It notices one that has returned; if that failed the DB
// (state.ErrFailed), the error ends the task as a failed synchronous phase
// did: the checkpoint is reported failed by its asynchronous phase and the
// daemon rebuilds the job from the last completed checkpoint.
func (op *windowOp) held() (bool, error) {
	p := op.pending
	if p == nil {
		return false, nil
	}
	select {
	case <-p.done:
		return false, op.finishPending()
	default:
		return true, nil
	}
}

// waitPending waits until the pending native checkpoint, if any, has
// returned.
func (op *windowOp) waitPending() error {
	if op.pending == nil {
		return nil
	}
	<-op.pending.done
	return op.finishPending()
}

func (op *windowOp) finishPending() error {
	p := op.pending
	op.pending = nil
	if errors.Is(p.err, state.ErrFailed) {
		return fmt.Errorf("task %s: native checkpoint: %w", p.task, p.err)
	}
	return nil
}

// heldSlack is how far, in entries, the cache may grow past its entry bound
// while writes are held; in bytes it may grow by its byte bound once more.
func (op *windowOp) heldSlack() int { return max(op.limit, dirtyLimit) }

// evictHeld is maybeEvict while a native checkpoint is pending: evict clean
// entries only, least recently used first, and wait for the checkpoint
// once the cache is over its bounds by the slack.
func (op *windowOp) evictHeld() error {
	if !op.overflows(op.limit, op.maxBytes) {
		return nil
	}
	entries, bytes := int(float64(op.limit)*evictTo), int64(float64(op.maxBytes)*evictTo)
	for e := op.lru.prev; e != &op.lru && op.overflows(entries, bytes); {
		prev := e.prev
		if !e.dirty {
			op.remove(e)
		}
		e = prev
	}
	if !op.overflows(op.limit+op.heldSlack(), 2*op.maxBytes) {
		return nil
	}
	if testHookHeldWait != nil {
		testHookHeldWait(op.stage)
	}
	if err := op.waitPending(); err != nil {
		return err
	}
	return op.maybeEvict()
}
