package state

/*
#cgo LDFLAGS: -ljemalloc
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

// jemalloc's control interface (libjemalloc-dev's <jemalloc/jemalloc.h>
// declares it with the same signature).
int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);

// eddy_jemalloc_purge returns every arena's unused dirty pages to the
// operating system now. 0 on success.
static int eddy_jemalloc_purge(void) {
  char name[64];
  snprintf(name, sizeof name, "arena.%u.purge", 4096u); // MALLCTL_ARENAS_ALL
  return mallctl(name, NULL, NULL, NULL, 0);
}

// eddy_jemalloc_stat refreshes jemalloc's statistics (epoch) and reads the
// size_t statistic name into *v. 0 on success.
static int eddy_jemalloc_stat(const char *name, size_t *v) {
  uint64_t epoch = 1;
  size_t esz = sizeof epoch;
  int err = mallctl("epoch", &epoch, &esz, &epoch, esz);
  if (err != 0) return err;
  size_t sz = sizeof *v;
  return mallctl(name, v, &sz, NULL, 0);
}

// eddy_jemalloc_opt_ssize and _bool read the option name (opt.dirty_decay_ms,
// opt.background_thread, …).
static int eddy_jemalloc_opt_ssize(const char *name, ssize_t *v) {
  size_t sz = sizeof *v;
  return mallctl(name, v, &sz, NULL, 0);
}

static int eddy_jemalloc_opt_bool(const char *name, _Bool *v) {
  size_t sz = sizeof *v;
  return mallctl(name, v, &sz, NULL, 0);
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// The C heap (RocksDB's memtables, block cache, table readers, compaction
// buffers, and every allocation of the cgo calls) comes from jemalloc, not
// glibc's malloc: eddy links libjemalloc, whose malloc and free then
// serve the whole process, and sets its options in jemalloc.c
// (malloc_conf; MALLOC_CONF in the environment overrides them). RocksDB
// recommends jemalloc: glibc kept 56–105 MiB of freed blocks in its arenas
// at the peaks of the 1 GiB benchmarks even with its arenas capped and
// malloc_trim every 5 s, and its malloc and free were ~10 % of a replay's
// CPU (test/bench/README.md has the A/B).

// TrimMalloc returns the C heap's unused pages to the operating system now
// (jemalloc's arena purge). jemalloc does so by itself when a free leaves
// whole pages unused (dirty_decay_ms 0); this is for the
// moments a caller knows a lot was freed: a DB closed, before a benchmark
// resets its peak.
func TrimMalloc() { C.eddy_jemalloc_purge() }

// MallocStats is jemalloc's account of the C heap.
type MallocStats struct {
	InUse int64 // stats.allocated: bytes allocated by the application
	Free  int64 // stats.resident − stats.allocated: resident but not allocated (dirty pages not yet purged, fragmentation, jemalloc's metadata)
}

// Malloc returns jemalloc's statistics of the C heap, refreshed.
func Malloc() MallocStats {
	alloc, err1 := jemallocStat("stats.allocated")
	res, err2 := jemallocStat("stats.resident")
	if err1 != nil || err2 != nil {
		return MallocStats{}
	}
	return MallocStats{InUse: alloc, Free: res - alloc}
}

func jemallocStat(name string) (int64, error) {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	var v C.size_t
	if rc := C.eddy_jemalloc_stat(cs, &v); rc != 0 {
		return 0, fmt.Errorf("state: mallctl %s: error %d", name, int(rc))
	}
	return int64(v), nil
}

// jemallocOptions are the jemalloc options in effect, as jemalloc read
// them (malloc_conf and MALLOC_CONF).
type jemallocOptions struct {
	BackgroundThread bool
	DirtyDecayMS     int64
	MuzzyDecayMS     int64
}

func readJemallocOptions() (jemallocOptions, error) {
	var b C._Bool
	var d, m C.ssize_t
	names := []string{"opt.background_thread", "opt.dirty_decay_ms", "opt.muzzy_decay_ms"}
	cs := make([]*C.char, len(names))
	for i, n := range names {
		cs[i] = C.CString(n)
		defer C.free(unsafe.Pointer(cs[i]))
	}
	for i, rc := range []C.int{
		C.eddy_jemalloc_opt_bool(cs[0], &b),
		C.eddy_jemalloc_opt_ssize(cs[1], &d),
		C.eddy_jemalloc_opt_ssize(cs[2], &m),
	} {
		if rc != 0 {
			return jemallocOptions{}, fmt.Errorf("state: mallctl %s: error %d", names[i], int(rc))
		}
	}
	return jemallocOptions{BackgroundThread: bool(b), DirtyDecayMS: int64(d), MuzzyDecayMS: int64(m)}, nil
}
