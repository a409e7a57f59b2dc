package state

import (
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/eddy-stream/eddy/test/diskfull"
)

// TestDiskFullFailsDB runs a DB on a small real file system filled by a
// hog: the first RocksDB error (a flush or checkpoint with no space left)
// marks the DB failed, every later call returns that error without
// reaching RocksDB (which would abort on a writer that saw an error),
// Close releases it, and the last checkpoint restores once space returns.
func TestDiskFullFailsDB(t *testing.T) {
	root := diskfull.Tmpfs(t, 48<<20)
	work := filepath.Join(root, "work")
	db, err := Open(Options{Dir: work, ColumnFamilies: []string{"s"}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cf := db.CF("s")
	put(t, db, cf, "a", "1")
	cp1 := filepath.Join(root, "cp", "chk-1")
	if err := db.CreateCheckpoint(cp1); err != nil {
		t.Fatal(err)
	}
	hog := diskfull.FillHog(t, root)

	// Incompressible values, so that a flush needs the space.
	val := make([]byte, 4<<10)
	var first error
	for i := 0; first == nil; i++ {
		if i > 1e6 {
			t.Fatal("no error from a full disk")
		}
		b := db.NewBatch()
		for j := range 64 {
			rand.Read(val)
			b.Put(cf, fmt.Appendf(nil, "k%08d-%02d", i, j), val)
		}
		first = db.Write(b)
		b.Close()
		if first == nil && i%16 == 15 {
			first = db.CreateCheckpoint(filepath.Join(root, "cp", fmt.Sprint("chk-x", i)))
		}
	}
	t.Logf("first error: %v", first)
	if !errors.Is(first, ErrFailed) {
		t.Fatalf("first error %v does not wrap ErrFailed", first)
	}
	if !db.Failed() {
		t.Fatal("db not marked failed")
	}
	if !errors.Is(first, syscall.ENOSPC) && !errors.Is(db.Err(), ErrFailed) {
		t.Fatal("unreachable")
	}
	b := db.NewBatch()
	b.Put(cf, []byte("z"), []byte("z"))
	if err := db.Write(b); !errors.Is(err, ErrFailed) {
		t.Errorf("write after failure: %v", err)
	}
	b.Close()
	if err := db.Flush(); !errors.Is(err, ErrFailed) {
		t.Errorf("flush after failure: %v", err)
	}
	if err := db.CreateCheckpoint(filepath.Join(root, "cp", "chk-2")); !errors.Is(err, ErrFailed) {
		t.Errorf("checkpoint after failure: %v", err)
	}
	if _, _, err := db.Get(cf, []byte("a")); !errors.Is(err, ErrFailed) {
		t.Errorf("get after failure: %v", err)
	}
	if err := db.Close(); !errors.Is(err, ErrFailed) {
		t.Errorf("close of a failed db: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}

	hog.Release()
	rdb, err := OpenFromCheckpoint(cp1, filepath.Join(root, "restored"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if v, _ := get(t, rdb, rdb.CF("s"), "a"); v != "1" {
		t.Fatalf("restored a = %q", v)
	}
}
