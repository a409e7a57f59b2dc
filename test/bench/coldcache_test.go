package bench

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/eddy-stream/eddy/storage/state"
)

// dropPageCache asks the kernel to drop the cached pages of every regular
// file under dir (posix_fadvise DONTNEED after an fdatasync, so no page is
// dirty), as a reboot would; hard links share the pages, so a restored
// working directory starts cold too. It returns the bytes of the files
// advised. Dropping the whole page cache would need root and hit every
// other process on the box.
func dropPageCache(b *testing.B, dir string) int64 {
	b.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		fd := int(f.Fd())
		if err := unix.Fdatasync(fd); err != nil {
			return err
		}
		if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	if err != nil {
		b.Fatalf("drop page cache of %s: %v", dir, err)
	}
	return n
}

// freshMemory is a new RocksDB budget like e.mem, with an empty block
// cache: a restarted process has none of the old one's blocks (block cache
// keys of an SST file survive a reopen, so e.mem would still be warm).
func (e *env) freshMemory() *state.Memory {
	e.b.Helper()
	m, err := state.NewMemory(e.mem.Options())
	if err != nil {
		e.b.Fatal(err)
	}
	e.b.Cleanup(m.Close)
	return m
}
