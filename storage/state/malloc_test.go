package state

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestMallocIsJemalloc checks that RocksDB's allocations come from
// jemalloc, with the options of jemalloc.c: if glibc's malloc still served
// them (libjemalloc linked after libc, or not at all), jemalloc would count
// next to nothing allocated while a memtable holds megabytes.
func TestMallocIsJemalloc(t *testing.T) {
	o, err := readJemallocOptions()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("MALLOC_CONF") == "" {
		if want := (jemallocOptions{BackgroundThread: true, DirtyDecayMS: 0, MuzzyDecayMS: 0}); o != want {
			t.Errorf("jemalloc options %+v, want %+v (malloc_conf in jemalloc.c not read?)", o, want)
		}
	}
	before := Malloc()
	db := openTest(t, t.TempDir(), "a")
	val := []byte(strings.Repeat("v", 1000))
	b := db.NewBatch()
	for i := range 16_000 {
		b.Put(db.CF("a"), fmt.Appendf(nil, "key-%08d", i), val)
	}
	if err := db.Write(b); err != nil {
		t.Fatal(err)
	}
	b.Close()
	after := Malloc()
	if grew := after.InUse - before.InUse; grew < 16<<20 {
		t.Fatalf("jemalloc's allocated bytes grew by %d while a memtable took 16 MB (before %+v, after %+v): malloc is not jemalloc's", grew, before, after)
	}
	if after.Free < 0 {
		t.Errorf("resident below allocated: %+v", after)
	}
	TrimMalloc()
}
