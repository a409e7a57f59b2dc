package state

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestOpenCorruptIsErrCorrupt: a table file damaged where RocksDB reads it
// at open (its footer) makes Open fail with ErrCorrupt, RocksDB's message
// (naming the file) kept.
func TestOpenCorruptIsErrCorrupt(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, ColumnFamilies: []string{"w"}})
	if err != nil {
		t.Fatal(err)
	}
	put(t, db, db.CF("w"), "a", "1", "b", "2")
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no table file after the flush")
	}
	data, err := os.ReadFile(ssts[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := len(data) - 8; i < len(data); i++ {
		data[i] ^= 0xff // the footer's magic number
	}
	if err := os.WriteFile(ssts[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err = Open(Options{Dir: dir, ColumnFamilies: []string{"w"}})
	if err == nil {
		db.Close()
		t.Fatal("opened a DB whose table file is corrupt")
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open error %v is not ErrCorrupt", err)
	}
	t.Log(err)
	// Another open error stays unclassified: data_dir is a plain file.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(Options{Dir: file}); err == nil || errors.Is(err, ErrCorrupt) {
		if err == nil {
			db.Close()
		}
		t.Fatalf("open of a plain file: %v (want an error that is not ErrCorrupt)", err)
	}
}
