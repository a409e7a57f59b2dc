// A shared LRU block cache with the options RocksDB 7.8's C API cannot set:
// strict capacity limit together with a high-priority pool ratio.
#include <memory>

#include <rocksdb/cache.h>

// Same layout as the definition in RocksDB's db/c.cc, so the result can be
// used and destroyed through the C API (rocksdb_cache_destroy).
struct rocksdb_cache_t {
  std::shared_ptr<rocksdb::Cache> rep;
};

extern "C" rocksdb_cache_t* eddy_lru_cache_create(size_t capacity,
                                                  double high_pri_pool_ratio,
                                                  int strict_capacity_limit) {
  rocksdb::LRUCacheOptions o;
  o.capacity = capacity;
  o.num_shard_bits = -1;
  o.strict_capacity_limit = strict_capacity_limit != 0;
  o.high_pri_pool_ratio = high_pri_pool_ratio;
  return new rocksdb_cache_t{rocksdb::NewLRUCache(o)};
}
