// jemalloc reads its options from this symbol at start-up, then from
// MALLOC_CONF in the environment, which overrides them (see malloc.go):
//
//   background_thread  a jemalloc thread returns freed pages to the OS on
//                      time, not only when the application next allocates;
//   dirty_decay_ms     freed pages go back to the OS at once (jemalloc's
//                      default is 10 s: RocksDB frees a memtable's blocks at
//                      every flush and cached blocks at every eviction, and
//                      RSS would carry up to 10 s of them; with 1 s the 1 GiB
//                      benchmarks' peaks were 2–20 MiB higher than with 0,
//                      at no CPU cost the runs could show);
//   muzzy_decay_ms     and are released at once (MADV_DONTNEED), not kept as
//                      lazily freed pages that still count in RSS.
const char *malloc_conf = "background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0";
