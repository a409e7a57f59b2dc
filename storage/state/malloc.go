package state

/*
#include <malloc.h>
#include <stdlib.h>

// eddy_malloc_tune caps glibc's malloc arenas at arenas and fixes the
// mmap threshold at mmap_threshold bytes, each unless the environment
// chose (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_, which glibc reads
// itself).
static void eddy_malloc_tune(int arenas, int mmap_threshold) {
  if (getenv("MALLOC_ARENA_MAX") == NULL) mallopt(M_ARENA_MAX, arenas);
  if (getenv("MALLOC_MMAP_THRESHOLD_") == NULL) mallopt(M_MMAP_THRESHOLD, mmap_threshold);
}
*/
import "C"

import "time"

// mallocArenas is the cap on glibc malloc arenas set at start-up. glibc
// gives a thread that finds the arenas busy a new one, up to 8 per core,
// each holding freed memory of its own: RocksDB's reads run on whichever
// threads the Go scheduler makes cgo calls from, and its flushes and
// compactions on threads of their own, so the freed blocks of the block
// cache and memtables ended up spread over many arenas that each kept
// their high-water mark.
const mallocArenas = 2

// mallocMmapThreshold is the size from which glibc maps an allocation on
// its own and unmaps it when freed. glibc's threshold starts at 128 KiB
// and rises to the size of every mapped block freed (up to 32 MiB), after
// which RocksDB's memtable arena blocks (write_buffer_size/8, 4 MiB with the
// defaults) come from the arenas and stay there after the memtable is
// flushed; fixed, it does not rise.
const mallocMmapThreshold = 1 << 20

func init() { C.eddy_malloc_tune(mallocArenas, mallocMmapThreshold) }

// TrimMalloc returns the free memory at the top of every malloc arena to
// the operating system (glibc malloc_trim): after memtables or a DB are
// released, glibc keeps the pages otherwise.
func TrimMalloc() { C.malloc_trim(0) }

// trimInterval is how often a Memory returns malloc's free memory to the
// operating system while open.
const trimInterval = 5 * time.Second

// trimLoop calls TrimMalloc every trimInterval until stop is closed, then
// closes done. Memtables are freed whenever they are flushed and cached
// blocks whenever they are evicted, and glibc keeps what it cannot
// return from the top of an arena: 92 MiB free in the arenas at the peak
// of the 1 GiB recovery benchmark, on top of the 141 MiB in use.
func trimLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(trimInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			TrimMalloc()
		}
	}
}

// MallocStats is glibc's account of the C heap (mallinfo2).
type MallocStats struct {
	InUse  int64 // allocated: in arenas (uordblks) and mapped on their own (hblkhd)
	Free   int64 // free in the arenas, kept by malloc (fordblks): fragmentation and retained memory
	Mapped int64 // of InUse, the blocks mapped on their own (hblkhd)
}

// Malloc returns glibc's malloc statistics. It walks every arena.
func Malloc() MallocStats {
	mi := C.mallinfo2()
	return MallocStats{
		InUse:  int64(mi.uordblks + mi.hblkhd),
		Free:   int64(mi.fordblks),
		Mapped: int64(mi.hblkhd),
	}
}
