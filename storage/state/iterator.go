package state

import (
	"bytes"
	"fmt"

	"github.com/linxGnu/grocksdb"
)

// Iterator walks the keys of one column family in [lower, upper) in
// ascending byte order. Key and Value alias RocksDB memory and are valid
// only until the next move; copy what you keep. An Iterator belongs to one
// goroutine; Close it before closing the DB (DB.Close releases iterators
// left open, which then report ErrClosed).
type Iterator struct {
	db           *DB
	it           *grocksdb.Iterator
	ro           *grocksdb.ReadOptions
	lower, upper []byte // owned copies: RocksDB keeps pointers to them
	err          error
}

// NewIterator returns an iterator over cf (nil: default) positioned at
// the first key ≥ lower. A nil bound is open.
func (d *DB) NewIterator(cf *CF, lower, upper []byte) *Iterator {
	return d.newIterator(cf, lower, upper, nil)
}

func (d *DB) newIterator(cf *CF, lower, upper []byte, snap *grocksdb.Snapshot) *Iterator {
	it := &Iterator{db: d}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if err := d.usable(); err != nil {
		it.err = err
		return it
	}
	it.ro = grocksdb.NewDefaultReadOptions()
	if snap != nil {
		it.ro.SetSnapshot(snap)
		it.ro.SetFillCache(false) // a full snapshot reads everything once
	}
	if lower != nil {
		it.lower = bytes.Clone(lower)
		it.ro.SetIterateLowerBound(it.lower)
	}
	if upper != nil {
		it.upper = bytes.Clone(upper)
		it.ro.SetIterateUpperBound(it.upper)
	}
	it.it = d.db.NewIteratorCF(it.ro, d.handle(cf))
	d.itMu.Lock()
	d.iters[it] = struct{}{}
	d.itMu.Unlock()
	it.it.SeekToFirst()
	return it
}

// Valid reports whether the iterator is at a key.
func (it *Iterator) Valid() bool { return it.it != nil && it.it.Valid() }

// Next moves to the next key.
func (it *Iterator) Next() { it.it.Next() }

// Seek moves to the first key ≥ key (and ≥ lower).
func (it *Iterator) Seek(key []byte) {
	if it.it != nil {
		it.it.Seek(key)
	}
}

// Key returns the current key.
func (it *Iterator) Key() []byte { return it.it.Key().Data() }

// Value returns the current value.
func (it *Iterator) Value() []byte { return it.it.Value().Data() }

// Err returns the error that ended the iteration, if any.
func (it *Iterator) Err() error {
	if it.err != nil || it.it == nil {
		return it.err
	}
	if err := it.it.Err(); err != nil {
		return fmt.Errorf("state: iterate keys: %w", err)
	}
	return nil
}

// Close releases the iterator. It is idempotent.
func (it *Iterator) Close() {
	if it.it == nil {
		return
	}
	it.db.itMu.Lock()
	delete(it.db.iters, it)
	it.db.itMu.Unlock()
	it.release(nil)
}

func (it *Iterator) release(err error) {
	if it.it != nil {
		it.it.Close()
		it.ro.Destroy()
		it.it, it.ro = nil, nil
		it.err = err
	}
}
