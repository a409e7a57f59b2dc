package state

import (
	"os"
	"runtime/debug"
)

// goHeadroom is the Go memory GoMemoryLimit allows beyond the write-back
// caches: the pipeline's channels and batches, the ingest log's buffers,
// the HTTP server, the checkpoint verification.
const goHeadroom = 64 << 20

// GoMemoryLimit is the soft memory limit for the Go runtime derived from
// the budget: twice the write-back caches' share (Managed×WriteCacheRatio;
// their byte estimate counts about two thirds of the Go memory a cached
// entry takes, so the live heap may reach 1.5× the share) plus goHeadroom.
// Without a limit the Go heap grows to twice its live size (GOGC=100)
// before a collection, on top of RocksDB's budget.
func (m *Memory) GoMemoryLimit() int64 {
	return 2*m.writeCache*int64(m.opts.NumDBs) + goHeadroom
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
