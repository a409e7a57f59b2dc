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

#include <rocksdb/options.h>

// Same layout as in RocksDB's db/c.cc.
struct rocksdb_options_t {
  rocksdb::Options rep;
};

// avoid_flush_during_shutdown has no setter in RocksDB 7.8's C API.
extern "C" void eddy_options_set_avoid_flush_during_shutdown(rocksdb_options_t* o,
                                                            int v) {
  o->rep.avoid_flush_during_shutdown = v != 0;
}

#include <sys/time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <mutex>

#include <rocksdb/env.h>

// InfoLog writes RocksDB's LOG with stdio and ignores every error. RocksDB
// 7.8's own logger writes through a WritableFileWriter, and once an append
// fails (a full disk) its next line aborts the process on an assertion
// (writable_file_writer.h, sync_without_flush_called_) — from any thread,
// including DB close. Past max bytes the file starts again from empty.
class InfoLog : public rocksdb::Logger {
 public:
  InfoLog(FILE* f, long max, rocksdb::InfoLogLevel level)
      : rocksdb::Logger(level), f_(f), max_(max) {}
  ~InfoLog() override {
    if (f_ != nullptr) fclose(f_);
  }
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    std::lock_guard<std::mutex> g(mu_);
    if (f_ == nullptr) return;
    if (ftell(f_) > max_ && ftruncate(fileno(f_), 0) == 0) rewind(f_);
    struct timeval now;
    gettimeofday(&now, nullptr);
    struct tm t;
    localtime_r(&now.tv_sec, &t);
    fprintf(f_, "%04d/%02d/%02d-%02d:%02d:%02d.%06ld ", t.tm_year + 1900,
            t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
            static_cast<long>(now.tv_usec));
    vfprintf(f_, format, ap);
    fputc('\n', f_);
    fflush(f_);
    clearerr(f_);
  }

 private:
  std::mutex mu_;
  FILE* f_;
  long max_;
};

// eddy_options_set_info_log makes path (appended to; nothing is logged if
// it cannot be opened) the info log of the DB opened with o.
extern "C" void eddy_options_set_info_log(rocksdb_options_t* o, const char* path,
                                          long max, int level) {
  FILE* f = fopen(path, "a");
  o->rep.info_log = std::make_shared<InfoLog>(
      f, max, static_cast<rocksdb::InfoLogLevel>(level));
}
