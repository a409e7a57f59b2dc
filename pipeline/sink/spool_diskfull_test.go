package sink

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/storage/ingestlog"
	"github.com/eddy-stream/eddy/test/diskfull"
)

// TestSpoolRealDiskFull puts a spool on a real 8 MiB tmpfs and fills the
// rest with a hog: an append then fails (ENOSPC, or the log's "not taking
// records" while it recovers from that) and returns at once, each time it
// is retried, without marking the batch spooled; nothing spooled before is
// lost. A retry for a newer checkpoint (carrying the failed epoch too)
// drives the log's recovery once the hog is removed and succeeds; the
// spool holds every epoch exactly once, also after a reopen.
func TestSpoolRealDiskFull(t *testing.T) {
	fs := diskfull.Tmpfs(t, 8<<20)
	o := SpoolOptions{Dir: filepath.Join(fs, "spool", "results"), MaxSize: 64 << 20, SegmentSize: 1 << 20}
	s, _ := openSpool(t, o, -1)
	for id := int64(1); id <= 3; id++ {
		if err := s.Append(id, []Epoch{epochOut(id, 10)}); err != nil {
			t.Fatal(err)
		}
	}
	hog := diskfull.FillHog(t, fs)
	big := epochOut(4, 5000) // about 100 KiB: more than the last page the hog left
	var err error
	for range 3 {
		if err = s.Append(4, []Epoch{big}); err == nil {
			t.Fatal("append on a full disk succeeded")
		}
		if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, ingestlog.ErrUnavailable) {
			t.Fatalf("append on a full disk: %v, want ENOSPC or ErrUnavailable", err)
		}
		if s.Spooled() != 3 {
			t.Fatalf("spooled %d after a failed append, want 3", s.Spooled())
		}
	}
	t.Logf("append on a full disk: %v", err)
	// Meanwhile checkpoint 5 completed: the retry carries epochs 4 and 5.
	retry := []Epoch{big, epochOut(5, 10)}
	if err := s.Append(5, retry); err == nil {
		t.Fatal("append on a full disk succeeded")
	}

	hog.Release()
	deadline := time.Now().Add(time.Minute)
	for err = s.Append(5, retry); err != nil; err = s.Append(5, retry) {
		if time.Now().After(deadline) {
			t.Fatalf("append still failing a minute after the hog went: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling the log's recovery, not waiting for it
	}
	if s.Spooled() != 5 {
		t.Fatalf("spooled %d, want 5", s.Spooled())
	}
	var want []string
	for id := int64(1); id <= 5; id++ {
		n := 10
		if id == 4 {
			n = 5000
		}
		for i := range n {
			want = append(want, fmt.Sprintf("r%d-%d", id, i))
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ = openSpool(t, o, 5)
	defer s.Close()
	ids, upTo := readAll(t, s, true)
	if upTo != 5 || !slices.Equal(ids, want) {
		t.Fatalf("after the full disk: %d ids up to %d, want %d up to 5, each once", len(ids), upTo, len(want))
	}
}
