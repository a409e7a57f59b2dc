package ingestlog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

const readBufSize = 1 << 20

var errIncomplete = errors.New("incomplete record")

// Reader reads a Log's durable records in offset order. It is not safe
// for concurrent use; any number of Readers may read one Log.
type Reader struct {
	l      *Log
	from   uint64
	seg    uint64 // base offset of the segment s reads
	s      segReader
	limit  int64 // s reads no byte at or beyond limit
	sealed bool  // the segment is complete: limit is its size
}

// NewReader returns a Reader whose first record is the one at offset from,
// FirstOffset() <= from <= NextOffset(). It returns an error wrapping
// ErrOffsetTruncated if from < FirstOffset() and ErrOffsetOutOfRange if
// from > NextOffset().
func (l *Log) NewReader(from uint64) (*Reader, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return nil, ErrClosed
	case from < l.segs[0].base:
		return nil, fmt.Errorf("%w: offset %d, log starts at %d", ErrOffsetTruncated, from, l.segs[0].base)
	case from > l.next:
		return nil, fmt.Errorf("%w: offset %d, log ends at %d", ErrOffsetOutOfRange, from, l.next)
	}
	i, found := slices.BinarySearchFunc(l.segs, from, bySegBase)
	if !found {
		i--
	}
	// Never open a segment beyond the durable one: recovery after a failed
	// write or fsync removes and recreates those files. Next skips the
	// records below from.
	if l.segs[i].base > l.durable.seg {
		i, _ = slices.BinarySearchFunc(l.segs, l.durable.seg, bySegBase)
	}
	r := &Reader{l: l, from: from}
	if err := r.openLocked(l.segs[i].base); err != nil {
		return nil, err
	}
	return r, nil
}

// openLocked switches r to the segment starting at base; l.mu is held, so
// TruncateFront cannot have removed the file.
func (r *Reader) openLocked(base uint64) error {
	path := r.l.segPath(base)
	f, err := r.l.fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("ingestlog: open reader: %w", err)
	}
	if r.s.f != nil {
		r.s.f.Close()
	}
	buf, topics := r.s.buf, r.s.topics
	if buf == nil {
		buf, topics = make([]byte, readBufSize), make(map[string]string)
	}
	r.seg, r.limit, r.sealed = base, 0, false
	r.s = segReader{f: f, path: path, next: base, buf: buf, topics: topics}
	return nil
}

// Next reads the next record into dst. dst.Payload aliases the Reader's
// buffer and is valid only until the next call of Next; dst.Topic is
// shared with earlier records of the same topic and never changes.
//
// Next returns ErrNoData when the Reader has caught up with SyncedOffset
// (call Wait, or wait on Notify, and try again), ErrClosed once the Log is
// closed, an error wrapping ErrOffsetTruncated when TruncateFront removed
// the next segment before the Reader got to it, and a
// *fileutil.CorruptionError for a damaged record or a gap between
// segments.
func (r *Reader) Next(dst *Record) error {
	if r.s.f == nil {
		return ErrClosed
	}
	for {
		err := r.s.read(dst, r.limit)
		switch {
		case err == nil && dst.Offset >= r.from:
			return nil
		case err == io.EOF:
			if err := r.advance(); err != nil {
				return err
			}
		case err != nil:
			return err
		}
	}
}

// advance raises r.limit to what the Log has made durable, moving on to
// the next segment when the current one is read to its end.
func (r *Reader) advance() error {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	switch d := l.durable; {
	case l.closed:
		return ErrClosed
	case r.sealed:
		return r.nextSegmentLocked()
	case r.seg < d.seg: // rolled, so complete and fsynced
		fi, err := r.s.f.Stat()
		if err != nil {
			return fmt.Errorf("ingestlog: read: %w", err)
		}
		r.limit, r.sealed = fi.Size(), true
	case r.seg == d.seg && d.size > r.limit:
		r.limit = d.size
	default:
		return ErrNoData
	}
	return nil
}

func (r *Reader) nextSegmentLocked() error {
	l, next := r.l, r.s.next
	if next < l.segs[0].base {
		return fmt.Errorf("%w: reader at offset %d, log starts at %d", ErrOffsetTruncated, next, l.segs[0].base)
	}
	i, _ := slices.BinarySearchFunc(l.segs, r.seg+1, bySegBase)
	if i == len(l.segs) {
		return ErrNoData
	}
	if base := l.segs[i].base; base != next {
		return &fileutil.CorruptionError{Path: l.segPath(base), Err: fmt.Errorf("offset gap: segment starts at %d, previous segment ends at %d", base, next)}
	}
	return r.openLocked(next)
}

// Wait blocks until a record at or after Offset() is durable, ctx is done
// (returning ctx.Err()) or the Log is closed (returning ErrClosed).
func (r *Reader) Wait(ctx context.Context) error {
	for {
		r.l.mu.Lock()
		ch, synced, closed := r.l.notify, r.l.durable.next, r.l.closed
		r.l.mu.Unlock()
		switch {
		case closed:
			return ErrClosed
		case r.Offset() < synced:
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Offset returns the offset of the record the next call of Next returns.
func (r *Reader) Offset() uint64 { return max(r.s.next, r.from) }

// Close releases the Reader's file. It is idempotent.
func (r *Reader) Close() error {
	if r.s.f == nil {
		return nil
	}
	err := r.s.f.Close()
	r.s.f = nil
	return err
}

// segReader reads the records of one segment file in order, through one
// large buffer: one read system call serves thousands of records.
type segReader struct {
	f      fileutil.File
	path   string
	next   uint64 // offset the next record must carry
	buf    []byte
	r, w   int   // unread bytes are buf[r:w]
	off    int64 // file offset of buf[w]
	topics map[string]string
}

// pos returns the file offset of the next unread byte.
func (s *segReader) pos() int64 { return s.off - int64(s.w-s.r) }

func (s *segReader) corrupt(err error) *fileutil.CorruptionError {
	return &fileutil.CorruptionError{Path: s.path, Offset: s.pos(), Err: err}
}

// read decodes the next record into dst, reading no byte at or beyond
// limit. It returns io.EOF exactly when pos() == limit, and a
// *fileutil.CorruptionError for a record that is damaged, does not end before
// limit, or does not carry the next offset.
func (s *segReader) read(dst *Record, limit int64) error {
	for {
		n, err := decodeFrame(s.buf[s.r:s.w], dst, s.topics)
		switch {
		case err == nil && dst.Offset != s.next:
			return s.corrupt(fmt.Errorf("record offset %d, want %d", dst.Offset, s.next))
		case err == nil:
			s.r += n
			s.next++
			return nil
		case err != errShort:
			return s.corrupt(err)
		case s.pos() == limit:
			return io.EOF
		case s.pos()+int64(max(n, headerSize)) > limit:
			return s.corrupt(errIncomplete)
		}
		if err := s.fill(n, limit); err != nil {
			return err
		}
	}
}

// fill moves the unread bytes to the front of the buffer, growing it to
// hold a frame of n bytes, and reads up to limit.
func (s *segReader) fill(n int, limit int64) error {
	buf := s.buf
	if n > len(buf) {
		buf = make([]byte, n)
	}
	s.w, s.r = copy(buf, s.buf[s.r:s.w]), 0
	s.buf = buf
	end := len(buf)
	if rest := limit - s.off; rest < int64(end-s.w) {
		end = s.w + int(rest)
	}
	m, err := s.f.ReadAt(buf[s.w:end], s.off)
	s.w += m
	s.off += int64(m)
	switch {
	case m > 0:
		return nil
	case err == io.EOF:
		return s.corrupt(errIncomplete) // the file is shorter than limit
	default:
		return fmt.Errorf("ingestlog: read: %w", err)
	}
}

func bySegBase(s segment, base uint64) int { return cmp.Compare(s.base, base) }
