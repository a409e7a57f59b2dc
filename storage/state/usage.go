package state

import (
	"bufio"
	"strconv"
	"strings"
)

// Usage is the native memory RocksDB reports for the DBs of one Memory.
type Usage struct {
	Memtables    int64 // rocksdb.cur-size-all-mem-tables, summed
	TableReaders int64 // rocksdb.estimate-table-readers-mem, summed: index and filter blocks outside the block cache
	BlockCache   int64 // the shared block cache's usage (pinned entries included)
	Pinned       int64 // of BlockCache, entries in use (pinned index and filter blocks, blocks being read)
}

// Total is Memtables + TableReaders + BlockCache.
func (u Usage) Total() int64 { return u.Memtables + u.TableReaders + u.BlockCache }

// track and untrack keep the open DBs of m for Usage and Tickers.
func (m *Memory) track(d *DB) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dbs == nil {
		m.dbs = map[*DB]struct{}{}
	}
	m.dbs[d] = struct{}{}
}

func (m *Memory) untrack(d *DB) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.dbs, d)
}

// open returns the DBs open with m. The caller queries them without m.mu:
// DB.Close holds the DB's lock while it takes m.mu.
func (m *Memory) open() []*DB {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*DB, 0, len(m.dbs))
	for d := range m.dbs {
		out = append(out, d)
	}
	return out
}

// Usage sums RocksDB's memory figures over the DBs open with m.
func (m *Memory) Usage() Usage {
	var u Usage
	for _, d := range m.open() {
		u.Memtables += d.MemtableBytes()
		u.TableReaders += d.sumProperty("rocksdb.estimate-table-readers-mem")
	}
	u.BlockCache = m.BlockCacheUsage()
	u.Pinned = m.BlockCachePinnedUsage()
	return u
}

// EnableStatistics makes the DBs opened with m from now on keep RocksDB's
// statistics (tickers such as rocksdb.block.cache.data.miss), read with
// Tickers. It costs some CPU per operation: for benchmarks and diagnosis.
func (m *Memory) EnableStatistics() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats = true
}

func (m *Memory) statistics() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// Tickers sums RocksDB's ticker counts ("rocksdb.block.cache.index.miss"
// → count) over the DBs open with m that keep statistics
// (EnableStatistics); nil if none does.
func (m *Memory) Tickers() map[string]int64 {
	var out map[string]int64
	for _, d := range m.open() {
		s := d.statisticsString()
		if s == "" {
			continue
		}
		if out == nil {
			out = map[string]int64{}
		}
		for name, n := range parseTickers(s) {
			out[name] += n
		}
	}
	return out
}

// statisticsString is RocksDB's statistics dump of d, "" without
// statistics or once closed.
func (d *DB) statisticsString() string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed || !d.stats {
		return ""
	}
	return d.opts[0].GetStatisticsString()
}

// parseTickers reads the "name COUNT : n" lines of a statistics dump
// (histogram lines have no COUNT field of that form and are skipped).
func parseTickers(s string) map[string]int64 {
	out := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 4 && f[1] == "COUNT" && f[2] == ":" {
			if n, err := strconv.ParseInt(f[3], 10, 64); err == nil {
				out[f[0]] = n
			}
		}
	}
	return out
}

// SumProperty sums the RocksDB property name, an integer (such as
// "rocksdb.estimate-pending-compaction-bytes", or
// "rocksdb.num-files-at-level0", which RocksDB gives as a string), over
// every column family of the DBs open with m.
func (m *Memory) SumProperty(name string) int64 {
	var n int64
	for _, d := range m.open() {
		n += d.sumProperty(name)
	}
	return n
}
