package state

import (
	"os"
	"runtime/debug"
)

// goHeadroom is the Go memory GoMemoryLimit allows beyond the write-back
// caches: the rest of the live heap (the pipeline's channels and batches,
// the ingest log's buffers, the HTTP server, the checkpoint verification:
// 10–25 MiB in the 1 GiB benchmarks), the runtime's own (stacks, heap
// metadata, free pages not yet returned) and the garbage a collection
// cycle allocates into (some 40 MiB).
const goHeadroom = 80 << 20

// GoMemoryLimit is the soft memory limit for the Go runtime derived from
// the budget: the write-back caches' share (Managed×WriteCacheRatio; their
// byte estimate is what their entries take on the heap, see
// pipeline.TestWriteCacheSizeMatchesHeap) plus goHeadroom, 144 MiB with
// the default 256 MiB budget. Without a limit the Go heap grows to twice
// its live size (GOGC=100) before a collection, on top of RocksDB's budget.
func (m *Memory) GoMemoryLimit() int64 {
	return m.writeCache*int64(m.opts.NumDBs) + goHeadroom
}

// SetGoMemoryLimit sets the Go runtime's soft memory limit to
// m.GoMemoryLimit() unless GOMEMLIMIT is set in the environment, and
// returns the limit in effect.
func SetGoMemoryLimit(m *Memory) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1)
	}
	limit := m.GoMemoryLimit()
	debug.SetMemoryLimit(limit)
	return limit
}
