package state

import "github.com/linxGnu/grocksdb"

// Batch collects writes to apply atomically with DB.Write. The data is
// copied into the batch, so buffers may be reused at once. A Batch is not
// safe for concurrent use; Close it when done.
type Batch struct {
	wb *grocksdb.WriteBatch
}

// NewBatch returns an empty batch for d.
func (d *DB) NewBatch() *Batch { return &Batch{wb: grocksdb.NewWriteBatch()} }

// Put sets key to val in cf (nil: default).
func (b *Batch) Put(cf *CF, key, val []byte) {
	if cf == nil {
		b.wb.Put(key, val)
	} else {
		b.wb.PutCF(cf.h, key, val)
	}
}

// Delete removes key from cf.
func (b *Batch) Delete(cf *CF, key []byte) {
	if cf == nil {
		b.wb.Delete(key)
	} else {
		b.wb.DeleteCF(cf.h, key)
	}
}

// DeleteRange removes the keys in [start, end) from cf.
func (b *Batch) DeleteRange(cf *CF, start, end []byte) {
	if cf == nil {
		b.wb.DeleteRange(start, end)
	} else {
		b.wb.DeleteRangeCF(cf.h, start, end)
	}
}

// Len returns the number of operations in b.
func (b *Batch) Len() int { return b.wb.Count() }

// Size returns the encoded size of b in bytes.
func (b *Batch) Size() int { return len(b.wb.Data()) }

// Clear empties b for reuse.
func (b *Batch) Clear() { b.wb.Clear() }

// Close frees b. It is idempotent.
func (b *Batch) Close() {
	if b.wb != nil {
		b.wb.Destroy()
		b.wb = nil
	}
}
