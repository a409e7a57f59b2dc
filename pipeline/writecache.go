package pipeline

import (
	"fmt"
	"unsafe"

	"github.com/eddy-stream/eddy/storage/state"
)

// The write-back cache of a window stage (windowOp.cache) is bounded in
// entries (StateSpec.WriteCacheEntries) and in bytes (the DB's share of the
// managed memory, state.Memory.WriteCacheBytes), and evicts the least
// recently used entries first. Entries are on a doubly linked list, most
// recently used at the front. Sizes are estimates of the Go memory an
// entry holds: the structs, the key, the accumulators and timers, and its
// slot in the map.

// Estimated bytes of the parts of a cached entry. TestWriteCacheSizeMatchesHeap
// holds them to the heap the entries take.
const (
	// The struct (112 B, a size class) and its map slot: key header,
	// pointer and control byte (25 B) at the load of a map with entries
	// coming and going — 80 B per entry at 43k entries under LRU churn
	// (Go 1.26 swiss tables: growth doubles, deletes leave tombstones).
	entryBytes = int64(unsafe.Sizeof(keyEntry{})) + 8 + 80
	winBytes   = int64(unsafe.Sizeof(win{})) + 8 // and its pointer in keyEntry.wins
	accBytes   = int64(unsafe.Sizeof(acc{}))
)

// evictTo is the share of each bound the cache is evicted down to when it
// overflows, so that the flush before an eviction is paid once per 1/8 of
// the cache, not once per new entry.
const evictTo = 7.0 / 8

func (op *windowOp) sizeOf(e *keyEntry) int64 {
	return entryBytes + int64(len(e.key)) + int64(cap(e.wins))*8 +
		int64(len(e.wins))*(winBytes+int64(len(op.plan.aggs))*accBytes) + int64(cap(e.timers))*8
}

// release drops the cache and the operator's scratch, for a closed job:
// a stopped Job that is still referenced (a restarted job's predecessor,
// a test's cleanup) held its caches' share of the Go heap until it was
// itself unreachable — in the recovery benchmark a second 64 MiB beside
// the restored job's.
func (op *windowOp) release() {
	op.cache, op.lru, op.bytes = nil, keyEntry{}, 0
	op.dirty, op.miss, op.missKeys, op.missEnds, op.missSlices = nil, nil, nil, nil, nil
	op.keyBuf, op.valBuf, op.asgBuf = nil, nil, nil
	op.pre = preAgg{}
}

// lookup returns the cached entry of key and makes it the most recently
// used.
func (op *windowOp) lookup(key string) (*keyEntry, bool) {
	e, ok := op.cache[key]
	if ok && op.lru.next != e {
		e.unlink()
		op.pushFront(e)
	}
	return e, ok
}

// add caches e as the most recently used entry.
func (op *windowOp) add(e *keyEntry) {
	if op.lru.next == nil {
		op.lru.next, op.lru.prev = &op.lru, &op.lru
	}
	op.cache[e.key] = e
	op.pushFront(e)
	e.size = op.sizeOf(e)
	op.bytes += e.size
}

// remove drops e from the cache; it must be cached and clean, or known
// to need no write.
func (op *windowOp) remove(e *keyEntry) {
	delete(op.cache, e.key)
	e.unlink()
	op.bytes -= e.size
	e.size = 0
}

// resize updates the cache's bytes after e changed.
func (op *windowOp) resize(e *keyEntry) {
	if e.next == nil {
		return // not cached (removed meanwhile)
	}
	n := op.sizeOf(e)
	op.bytes += n - e.size
	e.size = n
}

func (op *windowOp) pushFront(e *keyEntry) {
	e.prev, e.next = &op.lru, op.lru.next
	op.lru.next.prev = e
	op.lru.next = e
}

func (e *keyEntry) unlink() {
	if e.next == nil {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (op *windowOp) overflows(entries int, bytes int64) bool {
	return len(op.cache) > entries || (op.maxBytes > 0 && op.bytes > bytes)
}

// maybeEvict writes the dirty entries once there are dirtyLimit of them,
// and when the cache is over a bound writes them and evicts the least
// recently used entries down to evictTo of both bounds. While a native
// checkpoint is pending it writes nothing (evictHeld, nativecp.go).
func (op *windowOp) maybeEvict() error {
	if held, err := op.held(); held || err != nil {
		if err != nil {
			return err
		}
		return op.evictHeld()
	}
	if len(op.dirty) >= dirtyLimit {
		if err := op.flush(); err != nil {
			return err
		}
	}
	if !op.overflows(op.limit, op.maxBytes) {
		return nil
	}
	if err := op.flush(); err != nil {
		return err
	}
	entries, bytes := int(float64(op.limit)*evictTo), int64(float64(op.maxBytes)*evictTo)
	for op.overflows(entries, bytes) && op.lru.prev != &op.lru {
		op.remove(op.lru.prev) // clean: just flushed
	}
	return nil
}

// prefetch reads the state of every key of evs not in the cache with one
// batched MultiGet and caches it (absent keys as empty entries), so that
// processing the batch finds every key cached.
func (op *windowOp) prefetch(evs []event) error {
	miss := op.miss[:0]
	kb := op.missKeys[:0]
	ends := op.missEnds[:0]
	for i := range evs {
		ev := &evs[i]
		if i > 0 && ev.key == evs[i-1].key {
			continue // cached now: readings of one key come in runs
		}
		if _, ok := op.cache[ev.key]; ok {
			continue
		}
		e := &keyEntry{kg: ev.kg, key: ev.key}
		op.add(e)
		miss = append(miss, e)
		kb = state.AppendKey(kb, ev.kg, []byte(ev.key), nil)
		ends = append(ends, len(kb))
	}
	defer func() {
		clear(miss)
		op.miss, op.missKeys, op.missEnds = miss[:0], kb[:0], ends[:0]
	}()
	if len(miss) == 0 {
		return nil
	}
	keys := op.missSlices[:0]
	start := 0
	for _, end := range ends {
		keys = append(keys, kb[start:end:end])
		start = end
	}
	op.missSlices = keys
	err := op.db.MultiGetFunc(op.cfWin, keys, func(i int, v []byte) error {
		e := miss[i]
		if err := op.decodeEntry(e, v); err != nil {
			return fmt.Errorf("pipeline: stage %s: decode state of key group %d: %w", op.stage, e.kg, err)
		}
		e.inDB = true
		op.resize(e)
		return nil
	})
	clear(keys)
	if err != nil {
		for _, e := range miss {
			op.remove(e)
		}
		return err
	}
	return nil
}
