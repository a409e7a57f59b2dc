package diskspace

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/eddy-stream/eddy/test/diskfull"
)

// TestReserveEnsureRelease: Ensure allocates the blocks (not a sparse
// file), a reopened reserve adopts the file, Release deletes it, and a
// failed allocation leaves neither the file nor a *.tmp.
func TestReserveEnsureRelease(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "_reserve")
	r, err := OpenReserve(path)
	if err != nil || r.Size() != 0 {
		t.Fatalf("OpenReserve of nothing: %v, size %d", err, r.Size())
	}
	if err := r.Ensure(3 << 20); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 3<<20 || allocated(st) != 3<<20 || r.Size() != 3<<20 {
		t.Fatalf("reserve: size %d, allocated %d, Size %d; want 3 MiB each", st.Size(), allocated(st), r.Size())
	}
	again, err := OpenReserve(path)
	if err != nil || again.Size() != 3<<20 {
		t.Fatalf("reopened reserve: %v, size %d", err, again.Size())
	}
	if err := again.Ensure(1 << 20); err != nil || again.Size() != 1<<20 {
		t.Fatalf("shrink: %v, size %d", err, again.Size())
	}
	if n, err := again.Release(); err != nil || n != 1<<20 {
		t.Fatalf("Release = %d, %v", n, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reserve file after Release: %v", err)
	}
	if n, err := again.Release(); err != nil || n != 0 {
		t.Fatalf("second Release = %d, %v", n, err)
	}

	// A sparse file holds nothing back.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 8<<20); err != nil {
		t.Fatal(err)
	}
	if sparse, err := OpenReserve(path); err != nil || sparse.Size() != 0 {
		t.Fatalf("sparse reserve: %v, size %d; want 0", err, sparse.Size())
	}

	full := &Reserve{path: filepath.Join(dir, "full"), fallocate: func(int, uint32, int64, int64) error { return unix.ENOSPC }}
	if err := full.Ensure(1 << 20); !errors.Is(err, syscall.ENOSPC) || full.Size() != 0 {
		t.Fatalf("Ensure on no room = %v, size %d", err, full.Size())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "full*")); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// TestReserveNoFallocate: where fallocate is not supported the reserve is
// written as zeros.
func TestReserveNoFallocate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "_reserve")
	r := &Reserve{path: path, fallocate: func(int, uint32, int64, int64) error { return unix.EOPNOTSUPP }}
	if err := r.Ensure(3<<20 + 5); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) != 3<<20+5 || !bytes.Equal(b, make([]byte, len(b))) {
		t.Fatalf("reserve written as zeros: %v, %d bytes", err, len(b))
	}
}

// TestReserveRealFullDisk, on a real 16 MiB tmpfs: the reserve takes its
// space at once (statfs), a hog fills the rest to zero free, a write then
// fails with ENOSPC; after Release the same write succeeds; with the hog
// gone the reserve is made again, and Ensure fails with ENOSPC when there
// is no room for it.
func TestReserveRealFullDisk(t *testing.T) {
	dir := diskfull.Tmpfs(t, 16<<20)
	before, err := Statfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenReserve(filepath.Join(dir, "_reserve"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Ensure(4 << 20); err != nil {
		t.Fatal(err)
	}
	after, err := Statfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := before.Free - after.Free; got < 4<<20 {
		t.Fatalf("the reserve took %d bytes of free space, want 4 MiB", got)
	}
	hog := diskfull.FillHog(t, dir)
	if u, _ := Statfs(dir); u.Free != 0 {
		t.Fatalf("%d bytes free after the hog", u.Free)
	}
	write := func() error { return os.WriteFile(filepath.Join(dir, "checkpoint"), make([]byte, 2<<20), 0o600) }
	if err := write(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write on a full disk: %v, want ENOSPC", err)
	}
	if n, err := r.Release(); err != nil || n != 4<<20 {
		t.Fatalf("Release = %d, %v", n, err)
	}
	if err := write(); err != nil {
		t.Fatalf("write on the released reserve: %v", err)
	}
	if err := r.Ensure(4 << 20); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Ensure with the hog still there: %v, want ENOSPC", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "_reserve*")); len(left) != 0 {
		t.Fatalf("left behind after a failed Ensure: %v", left)
	}
	hog.Release()
	if err := r.Ensure(4 << 20); err != nil || r.Size() != 4<<20 {
		t.Fatalf("Ensure after the hog went: %v, size %d", err, r.Size())
	}
}

// TestWatcherMissing: Missing raises a path's threshold (and is reported
// in its status), OnSample sees every sample before OnChange.
func TestWatcherMissing(t *testing.T) {
	free := uint64(60)
	missing := uint64(0)
	var calls []string
	w, err := New(Options{
		Paths:     []string{"/d"},
		Threshold: Threshold{Bytes: 50},
		Statfs:    func(string) (Usage, error) { return Usage{Free: free, Total: 1000}, nil },
		Missing: func(p string, u Usage) uint64 {
			if p != "/d" || u.Free != free {
				t.Errorf("Missing(%q, %+v)", p, u)
			}
			return missing
		},
		OnSample: func(st []PathStatus) { calls = append(calls, "sample") },
		OnChange: func(low []string) { calls = append(calls, "change") },
	})
	if err != nil {
		t.Fatal(err)
	}
	if low := w.Sample(); len(low) != 0 {
		t.Fatalf("low %v with 60 free of 50", low)
	}
	missing = 20
	if low := w.Sample(); !slices.Equal(low, []string{"/d"}) {
		t.Fatalf("low %v with 60 free of 50 + 20 missing", low)
	}
	if st := w.Status()[0]; st.MinFree != 70 || st.Missing != 20 || !st.Low {
		t.Fatalf("status %+v", st)
	}
	free = 70
	w.Sample()
	if want := []string{"sample", "sample", "change", "sample", "change"}; !slices.Equal(calls, want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
}
