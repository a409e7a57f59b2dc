package checkpoint

import (
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

const checksumBufSize = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, checksumBufSize); return &b }}

// ChecksumFile returns the CRC32C (Castagnoli) of the file at path and the
// number of bytes read (see ChecksumFileFS).
func ChecksumFile(path string) (uint32, int64, error) {
	return ChecksumFileFS(fileutil.OSFS{}, path)
}

// ChecksumFileFS returns the CRC32C (Castagnoli) of the file at path,
// read through fsys with a 1 MiB buffer, and the number of bytes read.
func ChecksumFileFS(fsys fileutil.FS, path string) (uint32, int64, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0, 0, err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var crc uint32
	var n int64
	for {
		k, rerr := f.Read(buf)
		crc = crc32.Update(crc, castagnoli, buf[:k])
		n += int64(k)
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Close()
			return 0, n, rerr
		}
	}
	return crc, n, f.Close()
}

// ChecksumCache lists the files of a task directory with their sizes and
// CRC32C checksums for TaskState.Files. SST files are immutable, so the
// checksum of each (task, name, size) is computed once and remembered:
// successive incremental checkpoints, whose SSTs are mostly hard links
// of the same files, read only their new SSTs. An entry is used only while
// the file is still the same inode with the same modification time, so a
// different file that reuses a name and size (state wiped, or restored
// from a download) is read again. Non-SST files (MANIFEST, CURRENT,
// OPTIONS, the task state file) change and are read every time.
//
// The zero value reads through the OS and is ready to use. A
// ChecksumCache is safe for concurrent use.
type ChecksumCache struct {
	// FS is the file system to read through; nil means the OS.
	FS fileutil.FS

	mu sync.Mutex
	m  map[cacheKey]cacheEntry
}

// cacheKey names one file: (task, name, size) and, where the FS reports
// them, device and inode, so that a different file reusing a name and
// size gets an entry of its own.
type cacheKey struct {
	task, name string
	size       int64
	dev, ino   uint64
}

type cacheEntry struct {
	crc   uint32
	mtime time.Time
}

// Files returns every regular file directly in dir, in name order, with
// its size and CRC32C; SST is set for names ending in ".sst". The task is
// the last element of dir, so that chk-N/<task> and the task's working
// directory share entries. Subdirectories and *.tmp files are skipped.
func (c *ChecksumCache) Files(dir string) ([]File, error) {
	fsys := c.FS
	if fsys == nil {
		fsys = fileutil.OSFS{}
	}
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list task files: %w", err)
	}
	task := filepath.Base(dir)
	files := make([]File, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasSuffix(name, tmpSuffix) {
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := fsys.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: list task files: %w", err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		f := File{Name: name, Size: fi.Size(), SST: strings.HasSuffix(name, ".sst")}
		key := cacheKey{task: task, name: name, size: f.Size}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			key.dev, key.ino = uint64(st.Dev), st.Ino
		}
		if f.SST {
			if crc, ok := c.lookup(key, fi.ModTime()); ok {
				f.CRC32C = crc
				files = append(files, f)
				continue
			}
		}
		crc, n, err := ChecksumFileFS(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: checksum %s: %w", p, err)
		}
		if n != f.Size {
			return nil, fmt.Errorf("checkpoint: checksum %s: size changed from %d to %d while reading", p, f.Size, n)
		}
		f.CRC32C = crc
		if f.SST {
			c.store(key, cacheEntry{crc, fi.ModTime()})
		}
		files = append(files, f)
	}
	return files, nil
}

// Forget drops the remembered checksum of every SST for which keep(task,
// name) is false, such as those no retained checkpoint holds any more.
func (c *ChecksumCache) Forget(keep func(task, name string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if !keep(k.task, k.name) {
			delete(c.m, k)
		}
	}
}

func (c *ChecksumCache) lookup(k cacheKey, mtime time.Time) (uint32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || !e.mtime.Equal(mtime) {
		return 0, false
	}
	return e.crc, true
}

func (c *ChecksumCache) store(k cacheKey, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[cacheKey]cacheEntry)
	}
	c.m[k] = e
}
