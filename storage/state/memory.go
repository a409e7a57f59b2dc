package state

/*
#cgo CXXFLAGS: -std=c++17 -O2
#cgo LDFLAGS: -lrocksdb -lstdc++
#include <stddef.h>
typedef struct rocksdb_cache_t rocksdb_cache_t;
rocksdb_cache_t* eddy_lru_cache_create(size_t capacity, double high_pri_pool_ratio, int strict_capacity_limit);
typedef struct rocksdb_options_t rocksdb_options_t;
void eddy_options_set_avoid_flush_during_shutdown(rocksdb_options_t* o, int v);
void eddy_options_set_info_log(rocksdb_options_t* o, const char* path, long max, int level);
#include <stdlib.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/linxGnu/grocksdb"
)

// Memory defaults, as Flink's state.backend.rocksdb.memory.* options.
const (
	DefaultManaged           = 128 << 20
	DefaultWriteBufferRatio  = 0.5
	DefaultHighPrioPoolRatio = 0.1
	DefaultWriteCacheRatio   = 0.25
)

// MemoryOptions is one budget for every RocksDB instance of the process.
// Zero fields take the defaults above (NumDBs: 1).
type MemoryOptions struct {
	Managed           int64   // bytes for block cache plus write buffers
	WriteBufferRatio  float64 // share of Managed for memtables, in (0, 1)
	HighPrioPoolRatio float64 // share of the block cache for index and filter blocks, in (0, 1]
	// WriteCacheRatio is the share of Managed for the write-back caches
	// in front of the DBs (Go memory of the keyed subtasks, split over
	// NumDBs), in (0, 1); WriteBufferRatio + WriteCacheRatio < 1, the
	// rest is the block cache.
	WriteCacheRatio float64
	NumDBs          int // RocksDB instances sharing the budget
}

func (o MemoryOptions) withDefaults() MemoryOptions {
	if o.Managed == 0 {
		o.Managed = DefaultManaged
	}
	if o.WriteBufferRatio == 0 {
		o.WriteBufferRatio = DefaultWriteBufferRatio
	}
	if o.HighPrioPoolRatio == 0 {
		o.HighPrioPoolRatio = DefaultHighPrioPoolRatio
	}
	if o.WriteCacheRatio == 0 {
		o.WriteCacheRatio = DefaultWriteCacheRatio
	}
	if o.NumDBs == 0 {
		o.NumDBs = 1
	}
	return o
}

// Validate reports every problem with o at once; zero fields are valid.
func (o MemoryOptions) Validate() error {
	o = o.withDefaults()
	var errs []error
	if o.Managed < 1<<20 {
		errs = append(errs, fmt.Errorf("state: managed memory %d below 1 MiB", o.Managed))
	}
	if !(o.WriteBufferRatio > 0 && o.WriteBufferRatio < 1) {
		errs = append(errs, fmt.Errorf("state: write buffer ratio %v not in (0, 1)", o.WriteBufferRatio))
	}
	if !(o.WriteCacheRatio > 0 && o.WriteCacheRatio < 1) {
		errs = append(errs, fmt.Errorf("state: write cache ratio %v not in (0, 1)", o.WriteCacheRatio))
	} else if o.WriteBufferRatio+o.WriteCacheRatio >= 1 {
		errs = append(errs, fmt.Errorf("state: write buffer ratio %v plus write cache ratio %v not below 1 (nothing left for the block cache)",
			o.WriteBufferRatio, o.WriteCacheRatio))
	}
	if !(o.HighPrioPoolRatio > 0 && o.HighPrioPoolRatio <= 1) {
		errs = append(errs, fmt.Errorf("state: high priority pool ratio %v not in (0, 1]", o.HighPrioPoolRatio))
	}
	if o.NumDBs < 0 {
		errs = append(errs, fmt.Errorf("state: number of DBs %d is negative", o.NumDBs))
	}
	return errors.Join(errs...)
}

// Memory is the managed memory of all RocksDB instances, as Flink's
// RocksDBSharedResources: one LRU block cache whose high-priority pool
// holds index and filter blocks, sized
// Managed×(1−WriteBufferRatio−WriteCacheRatio), a write-back cache budget
// of Managed×WriteCacheRatio/NumDBs per instance (kept by the owner of the
// DB, in Go memory: WriteCacheBytes), and a memtable budget of
// Managed×WriteBufferRatio split evenly over NumDBs instances as each
// instance's db_write_buffer_size (RocksDB 7.8's C API has no
// WriteBufferManager that could share one budget or charge it to the cache).
//
// A Memory may be closed before the DBs that use it: they keep the cache
// alive until they close.
type Memory struct {
	opts          MemoryOptions
	blockCache    int64
	dbWriteBuffer int64
	writeCache    int64

	mu     sync.Mutex
	cache  *grocksdb.Cache  // nil once closed
	numDBs int              // open DBs using this budget
	dbs    map[*DB]struct{} // the open DBs (track), for Usage and Tickers
	stats  bool             // EnableStatistics
}

// grocksdb.Cache must be exactly one C pointer for newCache to fill it in.
var _ [unsafe.Sizeof(grocksdb.Cache{}) - unsafe.Sizeof(uintptr(0))]byte
var _ [unsafe.Sizeof(uintptr(0)) - unsafe.Sizeof(grocksdb.Cache{})]byte

// newCache creates the LRU cache without a strict capacity limit, as
// Flink does: with one, a read that needs a block while the pinned blocks
// of its cache shard (a 64th of the cache) fill the shard fails ("Insert
// failed due to LRU cache being full"), which failed the 1 GiB state
// benchmark at 4.2M keys with the default 256 MiB budget. Index and
// filter blocks are partitioned (Open), so what is pinned stays small and
// the cache stays close to its capacity. It goes through cache.cc and wraps it in a
// grocksdb.Cache, whose only field is the C pointer (checked above), so it
// can be passed to BlockBasedTableOptions.SetBlockCache and destroyed by
// grocksdb.
func newCache(capacity int64, highPri float64) *grocksdb.Cache {
	c := new(grocksdb.Cache)
	*(**C.rocksdb_cache_t)(unsafe.Pointer(c)) = C.eddy_lru_cache_create(C.size_t(capacity), C.double(highPri), 0)
	return c
}

// NewMemory creates the shared block cache of the budget o.
func NewMemory(o MemoryOptions) (*Memory, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	wb := int64(float64(o.Managed) * o.WriteBufferRatio)
	wc := int64(float64(o.Managed) * o.WriteCacheRatio)
	m := &Memory{
		opts:          o,
		blockCache:    o.Managed - wb - wc,
		dbWriteBuffer: wb / int64(o.NumDBs),
		writeCache:    wc / int64(o.NumDBs),
	}
	m.cache = newCache(m.blockCache, o.HighPrioPoolRatio)
	return m, nil
}

// Options returns the options of m with defaults applied.
func (m *Memory) Options() MemoryOptions { return m.opts }

// WriteCacheBytes is the write-back cache budget of each instance:
// Managed×WriteCacheRatio/NumDBs.
func (m *Memory) WriteCacheBytes() int64 { return m.writeCache }

// WriteCacheBytes is the write-back cache budget of d: its Memory's
// WriteCacheBytes.
func (d *DB) WriteCacheBytes() int64 { return d.mem.WriteCacheBytes() }

// BlockCacheCapacity is Managed×(1−WriteBufferRatio−WriteCacheRatio).
func (m *Memory) BlockCacheCapacity() int64 { return m.blockCache }

// DBWriteBufferSize is each instance's db_write_buffer_size:
// Managed×WriteBufferRatio/NumDBs.
func (m *Memory) DBWriteBufferSize() int64 { return m.dbWriteBuffer }

// BlockCacheUsage returns the bytes held by the block cache (0 once closed).
func (m *Memory) BlockCacheUsage() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cache == nil {
		return 0
	}
	return int64(m.cache.GetUsage())
}

// BlockCachePinnedUsage returns the bytes of cache entries in use, such as
// pinned L0 index and filter blocks (0 once closed).
func (m *Memory) BlockCachePinnedUsage() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cache == nil {
		return 0
	}
	return int64(m.cache.GetPinnedUsage())
}

// Close releases m's reference to the cache. It is idempotent.
func (m *Memory) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cache != nil {
		m.cache.Destroy()
		m.cache = nil
	}
}

// acquire counts a DB against the budget and sets the shared cache in t;
// over reports that more DBs are open than the budget was split for.
func (m *Memory) acquire(t *grocksdb.BlockBasedTableOptions) (over bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cache == nil {
		return false, ErrMemoryClosed
	}
	t.SetBlockCache(m.cache)
	m.numDBs++
	return m.numDBs > m.opts.NumDBs, nil
}

func (m *Memory) release() {
	m.mu.Lock()
	m.numDBs--
	m.mu.Unlock()
}

// setAvoidFlushDuringShutdown sets avoid_flush_during_shutdown on o; the
// C pointer is the first field of grocksdb.Options.
func setAvoidFlushDuringShutdown(o *grocksdb.Options) {
	c := *(**C.rocksdb_options_t)(unsafe.Pointer(o))
	C.eddy_options_set_avoid_flush_during_shutdown(c, 1)
}

// setInfoLog makes path, written with stdio ignoring errors, the info log
// (RocksDB's LOG) of the DB opened with o, at level; past max bytes it
// starts again from empty. See InfoLog in cache.cc for why.
func setInfoLog(o *grocksdb.Options, path string, max int64, level grocksdb.InfoLogLevel) {
	c := *(**C.rocksdb_options_t)(unsafe.Pointer(o))
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	C.eddy_options_set_info_log(c, p, C.long(max), C.int(level))
}
