package checkpoint

import (
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

func TestChecksumFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"buffer - 1", checksumBufSize - 1},
		{"buffer", checksumBufSize},
		{"buffer + 1", checksumBufSize + 1},
		{"3 buffers and a bit", 3*checksumBufSize + 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := content(tc.name, tc.size)
			p := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			crc, n, err := ChecksumFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if want := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)); crc != want || n != int64(tc.size) {
				t.Errorf("ChecksumFile = %08x, %d; want %08x, %d", crc, n, want, tc.size)
			}
		})
	}
	if _, _, err := ChecksumFile(filepath.Join(t.TempDir(), "none")); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}

// countingFS counts the files opened, by base name.
type countingFS struct {
	fileutil.FS
	mu    sync.Mutex
	opens map[string]int
}

func (c *countingFS) OpenFile(name string, flag int, perm os.FileMode) (fileutil.File, error) {
	c.mu.Lock()
	c.opens[filepath.Base(name)]++
	c.mu.Unlock()
	return c.FS.OpenFile(name, flag, perm)
}

// take returns the counts so far and resets them.
func (c *countingFS) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.opens
	c.opens = map[string]int{}
	return m
}

func TestChecksumCache(t *testing.T) {
	root := t.TempDir()
	work := filepath.Join(root, "state", "t-0") // the task's working DB
	chk := filepath.Join(root, "chk-1", "t-0")  // its checkpoint: hard links
	for _, d := range []string{work, chk, filepath.Join(work, "archive")} {
		os.MkdirAll(d, 0o755)
	}
	write := func(dir, name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(work, "000010.sst", "ten")
	write(work, "000011.sst", "eleven")
	write(work, "MANIFEST-000003", "manifest")
	write(work, "CURRENT.tmp", "skipped")
	cfs := &countingFS{FS: fileutil.OSFS{}, opens: map[string]int{}}
	c := &ChecksumCache{FS: cfs}

	files := func(dir string) []File {
		t.Helper()
		fs, err := c.Files(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			crc, size, err := ChecksumFile(filepath.Join(dir, f.Name))
			if err != nil || f.CRC32C != crc || f.Size != size {
				t.Errorf("%s: %+v, file has %08x, %d (%v)", f.Name, f, crc, size, err)
			}
		}
		return fs
	}
	opened := func(step string, want ...string) {
		t.Helper()
		got := slices.Sorted(maps.Keys(cfs.take()))
		if slices.Sort(want); !slices.Equal(got, want) {
			t.Errorf("%s: read %v, want %v", step, got, want)
		}
	}

	got := files(work)
	if names := fileNames(got); !slices.Equal(names, []string{"000010.sst", "000011.sst", "MANIFEST-000003"}) {
		t.Errorf("Files = %v", names)
	}
	if !got[0].SST || !got[1].SST || got[2].SST {
		t.Errorf("SST flags wrong: %+v", got)
	}
	opened("first listing", "000010.sst", "000011.sst", "MANIFEST-000003")

	// The checkpoint hard-links the SSTs and copies the MANIFEST; a new SST
	// appeared. Only the new SST and the MANIFEST are read.
	for _, name := range []string{"000010.sst", "000011.sst"} {
		if err := os.Link(filepath.Join(work, name), filepath.Join(chk, name)); err != nil {
			t.Fatal(err)
		}
	}
	write(chk, "000012.sst", "twelve")
	write(chk, "MANIFEST-000003", "manifest")
	files(chk)
	opened("checkpoint", "000012.sst", "MANIFEST-000003")
	files(chk)
	opened("same checkpoint again", "MANIFEST-000003")

	// Another file under a known (task, name, size): read again.
	other := filepath.Join(root, "restored", "t-0")
	os.MkdirAll(other, 0o755)
	write(other, "000010.sst", "TEN")
	files(other)
	opened("different file, same name and size", "000010.sst")

	// Another task with the same file names shares nothing.
	t1 := filepath.Join(root, "state", "t-1")
	os.MkdirAll(t1, 0o755)
	if err := os.Link(filepath.Join(work, "000011.sst"), filepath.Join(t1, "000011.sst")); err != nil {
		t.Fatal(err)
	}
	files(t1)
	opened("other task", "000011.sst")

	c.Forget(func(task, name string) bool { return task == "t-0" && name != "000011.sst" })
	files(work)
	opened("after Forget", "000011.sst", "MANIFEST-000003")
	files(t1)
	opened("other task after Forget", "000011.sst")
}

func TestChecksumCacheZeroValue(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "1.sst"), []byte("x"), 0o644)
	var c ChecksumCache
	fs, err := c.Files(dir)
	if err != nil || len(fs) != 1 {
		t.Fatalf("Files = %v, %v", fs, err)
	}
	if _, err := c.Files(filepath.Join(dir, "none")); !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("missing dir: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func fileNames(fs []File) []string {
	var names []string
	for _, f := range fs {
		names = append(names, f.Name)
	}
	return names
}

func BenchmarkChecksumFile(b *testing.B) {
	const size = 64 << 20
	p := filepath.Join(b.TempDir(), "000001.sst")
	if err := os.WriteFile(p, content("benchmark", size), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	for b.Loop() {
		if _, n, err := ChecksumFile(p); err != nil || n != size {
			b.Fatal(n, err)
		}
	}
}
