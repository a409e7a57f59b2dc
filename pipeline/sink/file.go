package sink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// File writes outputs as JSON lines to a file, rotating it when it
// exceeds MaxSize: path → path.1 → path.2 … up to MaxFiles old files.
type File struct {
	path     string
	maxSize  int64
	maxFiles int
	mu       sync.Mutex
	f        *os.File
	w        *bufio.Writer
	size     int64
	closed   bool
}

// NewFile opens (appends to) path, creating its directory.
func NewFile(path string, maxSize int64, maxFiles int) (*File, error) {
	if maxFiles <= 0 {
		maxFiles = 5
	}
	s := &File{path: path, maxSize: maxSize, maxFiles: maxFiles}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("sink: file sink: %w", err)
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *File) open() error {
	if err := repairTail(s.path); err != nil {
		return fmt.Errorf("sink: file sink: %w", err)
	}
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("sink: file sink: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("sink: file sink: %w", err)
	}
	s.f, s.w, s.size = f, bufio.NewWriterSize(f, 256<<10), st.Size()
	return nil
}

// repairTail cuts a line torn by a crash off the end of path, so the file
// stays valid JSON lines; the output it held is published again.
func repairTail(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	end := st.Size()
	buf := make([]byte, 64<<10)
	for end > 0 {
		n := int64(len(buf))
		if end < n {
			n = end
		}
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	if end == st.Size() {
		return nil
	}
	return f.Truncate(end)
}

func (s *File) rotate() error {
	if err := s.w.Flush(); err != nil {
		return err
	}
	if err := s.f.Close(); err != nil {
		return err
	}
	for i := s.maxFiles - 1; i >= 1; i-- {
		from := fmt.Sprintf("%s.%d", s.path, i)
		if _, err := os.Stat(from); err == nil {
			if err := os.Rename(from, fmt.Sprintf("%s.%d", s.path, i+1)); err != nil {
				return err
			}
		}
	}
	os.Remove(fmt.Sprintf("%s.%d", s.path, s.maxFiles+1))
	if err := os.Rename(s.path, s.path+".1"); err != nil {
		return err
	}
	return s.open()
}

// Write appends one line per output.
func (s *File) Write(_ context.Context, outs []Output) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("sink: file sink closed")
	}
	for _, o := range outs {
		if s.maxSize > 0 && s.size > 0 && s.size+int64(len(o.Payload))+1 > s.maxSize {
			if err := s.rotate(); err != nil {
				return fmt.Errorf("sink: rotate %s: %w", s.path, err)
			}
		}
		s.w.Write(o.Payload)
		if err := s.w.WriteByte('\n'); err != nil {
			return fmt.Errorf("sink: write %s: %w", s.path, err)
		}
		s.size += int64(len(o.Payload)) + 1
	}
	// Hand the lines to the kernel now so a reader of the file sees them;
	// Flush adds the fsync.
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("sink: write %s: %w", s.path, err)
	}
	return nil
}

// Flush writes buffered lines and fsyncs the file.
func (s *File) Flush(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("sink: write %s: %w", s.path, err)
	}
	return s.f.Sync()
}

// Close flushes and closes the file. It is idempotent.
func (s *File) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return errors.Join(s.w.Flush(), s.f.Close())
}
