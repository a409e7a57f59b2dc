package sink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// File writes outputs as JSON lines to a file, rotating it when the next
// line would take it past MaxSize: path → path.1 → path.2 … up to MaxFiles
// old files.
//
// Durability: Flush returns nil only once every line written so far is
// fsynced and every file it is in has a durable directory entry. A rotation
// fsyncs the full file before closing it and renames it with
// fileutil.RenameFS (which fsyncs the directory), so output confirmed by
// Flush (and then marked published by the job) survives a power cut in
// whichever file it ended up in.
//
// Failures: after a failed operation the file is closed and never fsynced
// again through that descriptor; the next Write reopens it. What the failed
// call (or, for a failed Flush, the Write before it) had put into the
// current file is cut off again on reopen, and a torn last line is cut off
// too, so the file stays valid JSON lines. The caller hands the same batch
// over again (the job's release loop and the sink node both do); the part
// of it that had already reached a rotated, durable file before the failure
// is recognised (same payloads, in order) when the retry is the next Write,
// and not written twice.
type File struct {
	fs       fileutil.FS
	path     string
	maxSize  int64
	maxFiles int
	mu       sync.Mutex
	f        fileutil.File // nil after a failure: the next Write reopens
	w        *bufio.Writer
	size     int64
	closed   bool

	// Redo state of the last Write, kept until a Flush succeeds.
	chunkStart int64    // size of the current file before the last Write's lines in it
	placed     []Output // leading outputs of the last batch that are in rotated, durable files
	// After a failure: cut the current file back to this size on reopen
	// (-1: nothing to cut), and skip placed at the head of the next batch.
	cut  int64
	skip []Output
}

// FileOption configures a File.
type FileOption func(*File)

// WithFS makes the sink write through fsys (default fileutil.OSFS{}).
func WithFS(fsys fileutil.FS) FileOption { return func(s *File) { s.fs = fsys } }

// NewFile opens (appends to) path, creating its directory. maxSize 0 never
// rotates; maxFiles <= 0 keeps 5 rotated files.
func NewFile(path string, maxSize int64, maxFiles int, opts ...FileOption) (*File, error) {
	if maxFiles <= 0 {
		maxFiles = 5
	}
	s := &File{fs: fileutil.OSFS{}, path: path, maxSize: maxSize, maxFiles: maxFiles, cut: -1}
	for _, o := range opts {
		o(s)
	}
	if err := fileutil.CreateDirAllFS(s.fs, filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("sink: file %s: %w", path, err)
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

// open opens the current file for appending: it cuts what a failed call
// left (s.cut) and a torn last line off, and fsyncs the directory so a
// newly created file's entry is durable before anything in it is
// confirmed.
func (s *File) open() error {
	f, err := s.fs.OpenFile(s.path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("sink: file %s: %w", s.path, err)
	}
	size, err := repairTail(f, s.cut)
	if err == nil {
		err = s.fs.SyncDir(filepath.Dir(s.path))
	}
	if err != nil {
		return errors.Join(fmt.Errorf("sink: file %s: %w", s.path, err), f.Close())
	}
	s.f, s.size, s.cut = f, size, -1
	if s.w == nil {
		s.w = bufio.NewWriterSize(f, 256<<10)
	} else {
		s.w.Reset(f)
	}
	return nil
}

// repairTail cuts f back to cut bytes (when cut >= 0 and the file is
// longer) and then cuts a line torn by a crash off its end, so the file
// stays valid JSON lines; the output the cut part held is written again.
// It returns the resulting size.
func repairTail(f fileutil.File, cut int64) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	end := size
	if cut >= 0 && cut < end {
		end = cut
	}
	buf := make([]byte, 64<<10)
	for end > 0 {
		n := min(int64(len(buf)), end)
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	if end == size {
		return size, nil
	}
	return end, f.Truncate(end)
}

// abandon closes the current file after a failure, without another fsync
// of it; the next Write reopens it and cuts it back to cut bytes.
func (s *File) abandon(cut int64, placed []Output) {
	if s.f != nil {
		s.f.Close() // the failure is what the caller hears about
		s.f = nil
	}
	s.cut, s.skip = cut, placed
	s.chunkStart, s.placed = 0, nil
}

// rotate makes the current file durable, closes it, shifts path.i to
// path.i+1 (dropping the oldest beyond maxFiles) and renames path to
// path.1, each rename with a directory fsync, then opens a new path. It
// reports whether path had been renamed when it failed: the lines in it are
// then in path.1.
func (s *File) rotate() (renamed bool, err error) {
	if err := s.w.Flush(); err != nil {
		return false, err
	}
	if err := s.f.Sync(); err != nil {
		return false, err
	}
	if err := s.f.Close(); err != nil {
		s.f = nil
		return false, err
	}
	s.f = nil
	if err := s.shift(); err != nil {
		return false, err
	}
	if err := fileutil.RenameFS(s.fs, s.path, s.path+".1"); err != nil {
		// The rename may have happened with only the directory fsync
		// failing: then the lines are in path.1.
		_, serr := s.fs.Stat(s.path)
		return errors.Is(serr, fs.ErrNotExist), err
	}
	return true, s.open()
}

// shift renumbers the rotated files path.N so that the newest becomes
// path.2, the next path.3 and so on (closing any gap a failed rotation
// left), and removes those that would be numbered beyond maxFiles.
func (s *File) shift() error {
	dir, base := filepath.Split(s.path)
	ents, err := s.fs.ReadDir(filepath.Clean(dir))
	if err != nil {
		return err
	}
	var nums []int
	for _, e := range ents {
		if n, ok := strings.CutPrefix(e.Name(), base+"."); ok {
			if i, err := strconv.Atoi(n); err == nil && i > 0 && strconv.Itoa(i) == n {
				nums = append(nums, i)
			}
		}
	}
	slices.Sort(nums)
	// The k-th newest (k from 0) becomes path.(k+2). With a gap the files
	// after it move down, the ones before it up: the first in ascending,
	// the second in descending order, so no rename replaces a file that is
	// still to move.
	name := func(i int) string { return fmt.Sprintf("%s.%d", s.path, i) }
	for j := len(nums) - 1; j >= 0 && j+2 > s.maxFiles; j-- {
		if err := s.fs.Remove(name(nums[j])); err != nil {
			return err
		}
		nums = nums[:j]
	}
	for j, n := range nums {
		if n > j+2 {
			if err := fileutil.RenameFS(s.fs, name(n), name(j+2)); err != nil {
				return err
			}
		}
	}
	for j := len(nums) - 1; j >= 0; j-- {
		if nums[j] < j+2 {
			if err := fileutil.RenameFS(s.fs, name(nums[j]), name(j+2)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Write appends one line per output and hands the lines to the kernel, so
// a reader of the file sees them; Flush makes them durable.
func (s *File) Write(_ context.Context, outs []Output) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("sink: file sink closed")
	}
	skipped := 0
	if hasPrefix(outs, s.skip) {
		skipped = len(s.skip)
	}
	all := outs
	outs = outs[skipped:]
	s.skip = nil
	if s.f == nil {
		if err := s.open(); err != nil {
			return err
		}
	}
	start, first := s.size, 0 // the current file's chunk of this call
	fail := func(err error) error {
		s.abandon(start, all[:skipped+first])
		return fmt.Errorf("sink: write %s: %w", s.path, err)
	}
	for i, o := range outs {
		if s.maxSize > 0 && s.size > 0 && s.size+int64(len(o.Payload))+1 > s.maxSize {
			renamed, err := s.rotate()
			if renamed {
				start, first = 0, i
			}
			if err != nil {
				return fail(fmt.Errorf("rotate: %w", err))
			}
		}
		s.w.Write(o.Payload)
		if err := s.w.WriteByte('\n'); err != nil {
			return fail(err)
		}
		s.size += int64(len(o.Payload)) + 1
	}
	if err := s.w.Flush(); err != nil {
		return fail(err)
	}
	s.chunkStart, s.placed = start, all[:skipped+first]
	return nil
}

// hasPrefix reports whether outs begins with the payloads of prefix.
func hasPrefix(outs, prefix []Output) bool {
	if len(prefix) == 0 || len(outs) < len(prefix) {
		return false
	}
	for i := range prefix {
		if !bytes.Equal(outs[i].Payload, prefix[i].Payload) {
			return false
		}
	}
	return true
}

// errNeedsWrite is Flush's answer after a failure, until a Write succeeds.
var errNeedsWrite = errors.New("a write failed; hand the batch over again")

// Flush writes buffered lines and fsyncs the file. When it fails, what the
// last Write put into the current file is cut off on the next Write, which
// the caller makes with the same batch.
func (s *File) Flush(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if s.f == nil {
		return fmt.Errorf("sink: sync %s: %w", s.path, errNeedsWrite)
	}
	err := s.w.Flush()
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		s.abandon(s.chunkStart, s.placed)
		return fmt.Errorf("sink: sync %s: %w", s.path, err)
	}
	s.chunkStart, s.placed = s.size, nil
	return nil
}

// Close flushes and closes the file. It is idempotent.
func (s *File) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.f == nil {
		return nil
	}
	return errors.Join(s.w.Flush(), s.f.Close())
}
