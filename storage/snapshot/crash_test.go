package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/keygroup"
)

// TestCrash writes a snapshot over an older one (and over none) on a
// CrashFS, cuts the power after each file-system operation of the write,
// and restores what survived: it must be the old snapshot (or none) or the
// complete new one, never a damaged or partial file; after Write returned,
// it must be the new one.
func TestCrash(t *testing.T) {
	dir := t.TempDir()
	src := openDB(t, filepath.Join(dir, "src"))
	all := keygroup.Range{Start: 0, End: 127}
	fill(t, src, 300)
	oldSnap, err := src.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer oldSnap.Release()
	fill(t, src, 900)
	newSnap, err := src.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer newSnap.Release()
	const path = "/data/checkpoints/chk-2/stage-0/full.snap"
	oldKeys, newKeys := int64(300+100), int64(900+300)

	dbs := 0
	restore := func(t *testing.T, fsys fileutil.FS) (int64, error) {
		t.Helper()
		dbs++
		db := openDB(t, filepath.Join(dir, fmt.Sprint("dst", dbs)))
		return RestoreFS(fsys, path, db, all)
	}
	for _, withOld := range []bool{true, false} {
		t.Run(fmt.Sprintf("over an old snapshot %v", withOld), func(t *testing.T) {
			for i := 1; ; i++ {
				c := fileutil.NewCrashFS()
				if err := fileutil.CreateDirAllFS(c, filepath.Dir(path)); err != nil {
					t.Fatal(err)
				}
				if withOld {
					if _, err := WriteFS(c, path, oldSnap, src.ColumnFamilies(), all, "snappy"); err != nil {
						t.Fatal(err)
					}
				}
				c.CrashAfter(c.Ops() + i)
				st, err := WriteFS(c, path, newSnap, src.ColumnFamilies(), all, "snappy")
				if err != nil {
					t.Fatal(err)
				}
				if st.Keys != newKeys {
					t.Fatalf("wrote %d keys, want %d", st.Keys, newKeys)
				}
				crashed := c.Crashed()
				if crashed == nil {
					n, err := restore(t, c.CrashClone())
					if err != nil || n != newKeys {
						t.Fatalf("power cut after Write returned: restored %d keys, %v; want the new %d", n, err, newKeys)
					}
					t.Logf("power cut after each of %d file-system operations", i-1)
					return
				}
				n, err := restore(t, crashed)
				switch {
				case errors.Is(err, fs.ErrNotExist) && !withOld:
				case err != nil:
					t.Fatalf("power cut after operation %d: %v", i, err)
				case n != newKeys && !(withOld && n == oldKeys):
					t.Fatalf("power cut after operation %d: restored %d keys, want old %d or new %d", i, n, oldKeys, newKeys)
				}
			}
		})
	}
}
