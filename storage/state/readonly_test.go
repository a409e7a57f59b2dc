package state

import (
	"os"
	"path/filepath"
	"testing"
)

// TestOpenCheckpointReadOnly: the copy reads what the checkpoint holds,
// refuses writes, and leaves every file of the checkpoint as it was.
func TestOpenCheckpointReadOnly(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: filepath.Join(dir, "work"), ColumnFamilies: []string{"w"}})
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	b.Put(db.CF("w"), []byte("k1"), []byte("v1"))
	if err := db.Write(b); err != nil {
		t.Fatal(err)
	}
	b.Close()
	chk := filepath.Join(dir, "chk")
	if err := db.CreateCheckpoint(chk); err != nil {
		t.Fatal(err)
	}
	db.Close()
	snap := func() map[string]string {
		m := map[string]string{}
		es, _ := os.ReadDir(chk)
		for _, e := range es {
			data, err := os.ReadFile(filepath.Join(chk, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			m[e.Name()] = string(data)
		}
		return m
	}
	before := snap()
	ro, err := OpenCheckpointReadOnly(chk, filepath.Join(dir, "scratch"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, err := ro.Get(ro.CF("w"), []byte("k1")); err != nil || !ok || string(v) != "v1" {
		t.Errorf("Get k1 = %q, %v, %v", v, ok, err)
	}
	b = ro.NewBatch()
	b.Put(ro.CF("w"), []byte("k2"), []byte("v2"))
	if err := ro.Write(b); err == nil {
		t.Error("write on a read-only DB succeeded")
	}
	b.Close()
	ro.Close()
	after := snap()
	if len(after) != len(before) {
		t.Errorf("checkpoint had %d files, has %d", len(before), len(after))
	}
	for n, d := range before {
		if after[n] != d {
			t.Errorf("%s changed", n)
		}
	}
	if _, err := OpenCheckpointReadOnly(chk, filepath.Join(dir, "scratch"), nil); err == nil {
		t.Error("scratch dir that exists was reused")
	}
}
