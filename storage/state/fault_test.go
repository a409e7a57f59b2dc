package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// TestRestoreFaults fails each file-system operation of
// OpenFromCheckpoint in turn through Options.FS: the restore must report
// the injected error and leave no working directory behind, until a run
// without a fault restores the data.
func TestRestoreFaults(t *testing.T) {
	root := t.TempDir()
	db := openTest(t, filepath.Join(root, "work"), "s")
	put(t, db, db.CF("s"), "a", "1")
	cp := filepath.Join(root, "checkpoints", "chk-1", "task-0")
	if err := db.CreateCheckpoint(cp); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatal("still failing after 1000 operations")
		}
		work := filepath.Join(root, fmt.Sprint("restored-", i), "task-0")
		efs := fileutil.NewErrorFS(fileutil.OSFS{}, i)
		rdb, err := OpenFromCheckpoint(cp, work, Options{FS: efs})
		if !efs.Injected() {
			if err != nil {
				t.Fatalf("no fault injected, got %v", err)
			}
			v, _ := get(t, rdb, rdb.CF("s"), "a")
			rdb.Close()
			if v != "1" {
				t.Fatalf("restored a = %q", v)
			}
			t.Logf("%d file-system operations, each failed once", i)
			return
		}
		if err == nil {
			rdb.Close()
			t.Fatalf("fault %d injected, but the restore reported success", i)
		}
		if !errors.Is(err, fileutil.ErrInjected) {
			t.Errorf("fault %d: %v does not wrap the injected error", i, err)
		}
		if _, serr := os.Stat(work); !errors.Is(serr, fs.ErrNotExist) {
			t.Errorf("fault %d: working dir left behind", i)
		}
	}
}
