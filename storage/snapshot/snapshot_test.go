package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/keygroup"
	"github.com/eddy-stream/eddy/storage/state"
)

func openDB(t *testing.T, dir string) *state.DB {
	t.Helper()
	db, err := state.Open(state.Options{Dir: dir, ColumnFamilies: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func fill(t *testing.T, db *state.DB, n int) {
	t.Helper()
	b := db.NewBatch()
	defer b.Close()
	for i := range n {
		k := []byte(fmt.Sprintf("key-%05d", i))
		kg := keygroup.Of(k, 128)
		b.Put(db.CF("a"), state.AppendKey(nil, kg, k, nil), []byte(fmt.Sprintf("value-%d", i)))
		if i%3 == 0 {
			b.Put(db.CF("b"), state.AppendKey(nil, kg, k, []byte("ns")), []byte{byte(i)})
		}
	}
	if err := db.Write(b); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, db *state.DB, cf string, r keygroup.Range) int {
	lo, hi := state.KeyGroupRangeBounds(r)
	it := db.NewIterator(db.CF(cf), lo, hi)
	defer it.Close()
	n := 0
	for ; it.Valid(); it.Next() {
		n++
	}
	return n
}

func TestRoundTripAndKeyGroupRanges(t *testing.T) {
	for _, comp := range []string{"none", "snappy"} {
		t.Run(comp, func(t *testing.T) {
			dir := t.TempDir()
			src := openDB(t, filepath.Join(dir, "src"))
			fill(t, src, 20000)
			snap, err := src.NewSnapshot()
			if err != nil {
				t.Fatal(err)
			}
			fill(t, src, 25000) // writes after the snapshot are not in it
			path := filepath.Join(dir, "full.snap")
			all := keygroup.Range{Start: 0, End: 127}
			st, err := Write(path, snap, src.ColumnFamilies(), all, comp)
			snap.Release()
			if err != nil {
				t.Fatal(err)
			}
			if st.Keys != 20000+6667 {
				t.Errorf("keys = %d", st.Keys)
			}
			if comp == "snappy" && st.Bytes >= st.Raw {
				t.Errorf("snappy did not compress: %d >= %d", st.Bytes, st.Raw)
			}
			// Restore two halves into two DBs, as after rescaling to 2.
			total := 0
			for i := range 2 {
				r := keygroup.RangeFor(i, 128, 2)
				dst := openDB(t, filepath.Join(dir, fmt.Sprint("dst", i)))
				n, err := Restore(path, dst, r)
				if err != nil {
					t.Fatal(err)
				}
				if got := count(t, dst, "a", all) + count(t, dst, "b", all); int64(got) != n {
					t.Errorf("range %v: restored %d, db has %d", r, n, got)
				}
				if count(t, dst, "a", all) != count(t, dst, "a", r) {
					t.Errorf("range %v: keys outside the range were restored", r)
				}
				total += int(n)
			}
			if int64(total) != st.Keys {
				t.Errorf("halves restored %d keys, want %d", total, st.Keys)
			}
		})
	}
}

func TestCorruptionIsReportedWithOffset(t *testing.T) {
	dir := t.TempDir()
	src := openDB(t, filepath.Join(dir, "src"))
	fill(t, src, 5000)
	snap, _ := src.NewSnapshot()
	path := filepath.Join(dir, "full.snap")
	if _, err := Write(path, snap, src.ColumnFamilies(), keygroup.Range{Start: 0, End: 127}, "snappy"); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	good, _ := os.ReadFile(path)
	for _, at := range []int{0, 12, len(good) / 2, len(good) - 20, len(good) - 1} {
		bad := append([]byte(nil), good...)
		bad[at] ^= 0x40
		os.WriteFile(path, bad, 0o644)
		_, err := Restore(path, openDB(t, filepath.Join(dir, fmt.Sprint("dst", at))), keygroup.Range{Start: 0, End: 127})
		var ce *fileutil.CorruptionError
		if !errors.As(err, &ce) || ce.Path != path {
			t.Errorf("flip at %d: got %v, want *fileutil.CorruptionError for %s", at, err, path)
		}
	}
	os.WriteFile(path, good[:len(good)/3], 0o644)
	if _, err := Restore(path, openDB(t, filepath.Join(dir, "trunc")), keygroup.Range{Start: 0, End: 127}); err == nil {
		t.Error("truncated file restored without error")
	}
}
