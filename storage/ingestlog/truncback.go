package ingestlog

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// TruncateBack cuts the closed log in o.Dir so that its next record is
// the one at offset from: every record at or after from is removed, and
// the log reopened by Open continues at offset from. Segments after the
// one holding from are removed newest first (one directory fsync each, so
// a crash leaves contiguous segments), then that segment is truncated at
// the record's byte position and fsynced. from must lie within the log:
// FirstOffset() <= from <= NextOffset(). The log must not be open.
//
// It is for logs whose tail may be void, such as a sink's spool after a
// restore from an older checkpoint; the ingest log itself never drops
// received records.
func TruncateBack(o Options, from uint64) error {
	l := &Log{opts: o, fs: o.FS, log: o.Logger}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.fs == nil {
		l.fs = fileutil.OSFS{Logger: l.log}
	}
	if err := l.truncateBack(from); err != nil {
		if _, ok := errors.AsType[*fileutil.CorruptionError](err); ok {
			return err
		}
		return fmt.Errorf("ingestlog: truncate %s back to offset %d: %w", o.Dir, from, err)
	}
	return nil
}

func (l *Log) truncateBack(from uint64) error {
	segs, err := l.listSegments()
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		if from == 0 {
			return nil
		}
		return fmt.Errorf("%w: the log is empty", ErrOffsetOutOfRange)
	}
	i, found := slices.BinarySearchFunc(segs, from, bySegBase)
	if !found {
		i--
	}
	if i < 0 {
		return fmt.Errorf("%w: log starts at %d", ErrOffsetTruncated, segs[0].base)
	}
	for j := len(segs) - 1; j > i; j-- {
		if err := l.fs.Remove(l.segPath(segs[j].base)); err != nil {
			return err
		}
		if err := l.fs.SyncDir(l.opts.Dir); err != nil {
			return err
		}
	}
	path := l.segPath(segs[i].base)
	f, err := l.fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	s := segReader{f: f, path: path, next: segs[i].base, buf: make([]byte, readBufSize)}
	var rec Record
	for s.next < from {
		if err := s.read(&rec, size); err != nil {
			if err == io.EOF {
				return fmt.Errorf("%w: log ends at %d", ErrOffsetOutOfRange, s.next)
			}
			return err
		}
	}
	at := s.pos()
	if at == size {
		return nil
	}
	l.log.Info("truncating log back", "path", path, "at", at, "bytes", size-at, "next_offset", from)
	if err := f.Truncate(at); err != nil {
		return err
	}
	return f.Sync()
}
