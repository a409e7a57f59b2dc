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

// eddy_jemalloc_refresh makes jemalloc's stats.* current (epoch). 0 on
// success.
static int eddy_jemalloc_refresh(void) {
  uint64_t epoch = 1;
  size_t sz = sizeof epoch;
  return mallctl("epoch", &epoch, &sz, &epoch, sz);
}

// eddy_mallctl_read reads the sz-byte value name (a statistic or an
// option) into v. 0 on success.
static int eddy_mallctl_read(const char *name, void *v, size_t sz) {
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

// Malloc returns jemalloc's statistics of the C heap, refreshed; zero if
// jemalloc cannot give them.
func Malloc() MallocStats {
	var alloc, res C.size_t
	if C.eddy_jemalloc_refresh() != 0 ||
		mallctlRead("stats.allocated", unsafe.Pointer(&alloc), unsafe.Sizeof(alloc)) != nil ||
		mallctlRead("stats.resident", unsafe.Pointer(&res), unsafe.Sizeof(res)) != nil {
		return MallocStats{}
	}
	return MallocStats{InUse: int64(alloc), Free: int64(res) - int64(alloc)}
}

// mallctlRead reads jemalloc's value name, size bytes, into v.
func mallctlRead(name string, v unsafe.Pointer, size uintptr) error {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	if rc := C.eddy_mallctl_read(cs, v, C.size_t(size)); rc != 0 {
		return fmt.Errorf("state: mallctl %s: error %d", name, int(rc))
	}
	return nil
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
	for _, e := range []error{
		mallctlRead("opt.background_thread", unsafe.Pointer(&b), unsafe.Sizeof(b)),
		mallctlRead("opt.dirty_decay_ms", unsafe.Pointer(&d), unsafe.Sizeof(d)),
		mallctlRead("opt.muzzy_decay_ms", unsafe.Pointer(&m), unsafe.Sizeof(m)),
	} {
		if e != nil {
			return jemallocOptions{}, e
		}
	}
	return jemallocOptions{BackgroundThread: bool(b), DirtyDecayMS: int64(d), MuzzyDecayMS: int64(m)}, nil
}
