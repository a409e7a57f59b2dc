// Package state is eddy's RocksDB state backend, after Flink's
// EmbeddedRocksDBStateBackend: one RocksDB instance per keyed subtask, one
// column family per kind of state, every key prefixed by its key group.
//
// # Keys
//
// A state key is [key group u16 BE][uvarint len(key)][key][namespace]
// (AppendKey). A run of key groups is therefore one contiguous byte range
// (KeyGroupRangeBounds) in every column family, so a subtask iterates,
// clips (DB.DeleteKeyGroupRange) or hands over its key groups as ranges.
// docs/state-layout.md describes the layout, with the timer layout of
// storage/timers.
//
// # Memory
//
// One Memory is shared by every DB of the process, as Flink's managed
// memory: a single LRU block cache (no strict capacity limit: reads would
// fail once pinned blocks fill a shard), whose high-priority pool holds the
// partitioned index and filter blocks (cached with high priority, the top
// level and L0 ones pinned), takes Managed×(1−WriteBufferRatio−
// WriteCacheRatio). Managed×WriteCacheRatio is for the write-back caches
// the DBs' owners keep in Go memory in front of them (WriteCacheBytes per
// DB). Managed×WriteBufferRatio is the memtable budget; RocksDB 7.8's C API offers no shared
// WriteBufferManager, so each DB gets db_write_buffer_size =
// Managed×WriteBufferRatio/NumDBs. grocksdb cannot create a cache with a
// high-priority pool ratio either, so cache.cc does it with the C++ API.
//
// # Durability
//
// Writes skip the write-ahead log, as in Flink. A working DB is disposable:
// durability comes from checkpoints. DB.CreateCheckpoint flushes every
// memtable and hard-links the SST files into a new directory (RocksDB's
// Checkpoint); OpenFromCheckpoint rebuilds a working directory from one by
// hard-linking the SSTs and copying the few small mutable files, so local
// recovery copies no data. Both directories must share a filesystem.
package state
