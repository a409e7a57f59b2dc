package state

import (
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWarmPageCacheReadsWholeFile: warmPageCache brings all of a file the
// page cache dropped back, not only the readahead window of one
// WILLNEED call (read_ahead_kb). On a filesystem whose DONTNEED drops
// nothing (tmpfs) the file is resident throughout and the test is trivial.
func TestWarmPageCacheReadsWholeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "000001.sst")
	data := make([]byte, 24<<20)
	rand.Read(data)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	f.Close()
	res, size, err := Resident(path)
	if err != nil || size != int64(len(data)) {
		t.Fatalf("Resident: %d of %d, %v", res, size, err)
	}
	t.Logf("resident after DONTNEED: %d of %d bytes", res, size)

	warmPageCache([]string{path}, size, slog.New(slog.DiscardHandler))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		res, _, err := Resident(path)
		if err != nil {
			t.Fatal(err)
		}
		if res == size {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after warmPageCache %d of %d bytes resident", res, size)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
}
