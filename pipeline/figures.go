package pipeline

// StateFigures are one keyed subtask's RocksDB figures, read for /metrics.
type StateFigures struct {
	Task string // subtask name, as in TaskOverview.Name: "<stage>-<i>"
	// MemtableBytes is memory held by active and unflushed memtables
	// (rocksdb.cur-size-all-mem-tables over every column family).
	MemtableBytes int64
	// LiveSSTBytes is the size of the live SST files.
	LiveSSTBytes int64
	// EstimatedKeys is RocksDB's estimate of the number of keys, which counts
	// overwrites and deletions until they are compacted away.
	EstimatedKeys int64
}

// StateFigures returns the RocksDB figures of every keyed subtask. It is
// safe to call at any time, also after Close (the figures are then zero).
func (j *Job) StateFigures() []StateFigures {
	out := make([]StateFigures, 0, len(j.keyed))
	for _, t := range j.keyed {
		out = append(out, StateFigures{
			Task:          t.name,
			MemtableBytes: t.db.MemtableBytes(),
			LiveSSTBytes:  t.db.LiveSSTBytes(),
			EstimatedKeys: t.db.EstimateNumKeys(),
		})
	}
	return out
}
