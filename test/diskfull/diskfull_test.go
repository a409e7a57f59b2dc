package diskfull_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/eddy-stream/eddy/test/diskfull"
)

func write(dir, name string, n int) error {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	_, err = f.Write(bytes.Repeat([]byte("x"), n))
	return errors.Join(err, f.Sync(), f.Close())
}

func mounted(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte(" "+dir+" "))
}

func TestFill(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mount func(testing.TB, int64) string
	}{
		{"tmpfs", diskfull.Tmpfs},
		{"ext4", diskfull.Ext4Image},
	} {
		var dir string
		t.Run(tc.name, func(t *testing.T) {
			dir = tc.mount(t, 16<<20)
			if !mounted(t, dir) {
				t.Fatalf("%s is not a mount point", dir)
			}
			h := diskfull.FillHog(t, dir)
			if h.Size() == 0 {
				t.Fatal("hog is empty")
			}
			if err := write(dir, "a", 4096); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("write after Fill: %v, want ENOSPC", err)
			}
			if err := h.Free(1 << 20); err != nil {
				t.Fatal(err)
			}
			if err := write(dir, "b", 64<<10); err != nil {
				t.Fatalf("write after Free: %v", err)
			}
			h.Release()
			h.Release()
			if err := write(dir, "c", 4<<20); err != nil {
				t.Fatalf("write after Release: %v", err)
			}

			release := diskfull.Fill(t, dir)
			if err := write(dir, "d", 4096); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("write after second Fill: %v, want ENOSPC", err)
			}
			release()
			if err := write(dir, "d", 4096); err != nil {
				t.Fatalf("write after release: %v", err)
			}
		})
		if dir != "" && mounted(t, dir) {
			t.Errorf("%s still mounted after the test", dir)
		}
	}
}
