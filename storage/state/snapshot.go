package state

import "github.com/linxGnu/grocksdb"

// Snapshot is a consistent, read-only view of a DB at one instant (a
// RocksDB snapshot). Full checkpoints take one in the synchronous phase and
// stream it in the asynchronous phase while the task keeps writing.
type Snapshot struct {
	db *DB
	s  *grocksdb.Snapshot
}

// NewSnapshot pins the current state. Release it when done; the DB must
// not be closed before.
func (d *DB) NewSnapshot() (*Snapshot, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if err := d.usable(); err != nil {
		return nil, err
	}
	return &Snapshot{db: d, s: d.db.NewSnapshot()}, nil
}

// NewIterator iterates cf in [lower, upper) as of the snapshot.
func (s *Snapshot) NewIterator(cf *CF, lower, upper []byte) *Iterator {
	return s.db.newIterator(cf, lower, upper, s.s)
}

// Release frees the snapshot. It is idempotent.
func (s *Snapshot) Release() {
	if s.s == nil {
		return
	}
	s.db.mu.RLock()
	defer s.db.mu.RUnlock()
	if !s.db.closed {
		s.db.db.ReleaseSnapshot(s.s)
	}
	s.s = nil
}
