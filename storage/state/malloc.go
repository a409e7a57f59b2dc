package state

/*
#include <malloc.h>
#include <stdlib.h>

// eddy_malloc_arenas caps glibc's malloc arenas at n unless the
// environment chose (MALLOC_ARENA_MAX, which glibc reads itself).
static void eddy_malloc_arenas(int n) {
  if (getenv("MALLOC_ARENA_MAX") == NULL) mallopt(M_ARENA_MAX, n);
}
*/
import "C"

// mallocArenas is the cap on glibc malloc arenas set at start-up. glibc
// gives a thread that finds the arenas busy a new one, up to 8 per core,
// each holding freed memory of its own: RocksDB's reads run on whichever
// threads the Go scheduler makes cgo calls from, and its flushes and
// compactions on threads of their own, so the freed blocks of the block
// cache and memtables ended up spread over many arenas that each kept
// their high-water mark.
const mallocArenas = 2

func init() { C.eddy_malloc_arenas(mallocArenas) }

// TrimMalloc returns the free memory at the top of every malloc arena to
// the operating system (glibc malloc_trim): after memtables or a DB are
// released, glibc keeps the pages otherwise.
func TrimMalloc() { C.malloc_trim(0) }
