package ingestlog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// SegmentFile is one segment file of a log, as Segments lists it.
type SegmentFile struct {
	Base uint64 // offset of its first record
	Path string
	Size int64 // bytes when listed
}

// SegmentName is the file name of the segment whose first record has
// offset base.
func SegmentName(base uint64) string { return fmt.Sprintf("%020d%s", base, segSuffix) }

// Segments lists the segment files of the log in dir by base offset,
// without opening the log: a log another goroutine has open may be listed
// (its active segment grows meanwhile; front truncation may remove a
// listed segment).
func Segments(fsys fileutil.FS, dir string) ([]SegmentFile, error) {
	if fsys == nil {
		fsys = fileutil.OSFS{}
	}
	l := &Log{opts: Options{Dir: dir}, fs: fsys}
	segs, err := l.listSegments()
	if err != nil {
		return nil, fmt.Errorf("ingestlog: list %s: %w", dir, err)
	}
	out := make([]SegmentFile, 0, len(segs))
	for _, s := range segs {
		path := l.segPath(s.base)
		fi, err := fsys.Stat(path)
		if err != nil {
			return nil, err
		}
		out = append(out, SegmentFile{Base: s.base, Path: path, Size: fi.Size()})
	}
	return out, nil
}

// RecordPosition returns the byte position in segment seg at which the
// record with offset off begins (off one past the segment's last record:
// the position after it), reading only complete, intact records from the
// start of the file. It fails if the segment ends before off.
func RecordPosition(fsys fileutil.FS, seg SegmentFile, off uint64) (int64, error) {
	if fsys == nil {
		fsys = fileutil.OSFS{}
	}
	if off < seg.Base {
		return 0, fmt.Errorf("%w: segment %s starts at %d", ErrOffsetTruncated, seg.Path, seg.Base)
	}
	f, err := fsys.OpenFile(seg.Path, os.O_RDONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	s := segReader{f: f, path: seg.Path, next: seg.Base, buf: make([]byte, readBufSize)}
	var rec Record
	for s.next < off {
		err := s.read(&rec, fi.Size())
		if errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("%w: segment %s ends at offset %d, before %d", ErrOffsetOutOfRange, filepath.Base(seg.Path), s.next, off)
		}
		if err != nil {
			return 0, err
		}
	}
	return s.pos(), nil
}
