package ingestlog

import (
	"errors"
	"testing"
)

// TestSegmentsAndRecordPosition: Segments lists an open log's segment
// files, and RecordPosition finds every record's byte position, the end
// of a segment for the offset after its last record, and refuses offsets
// the segment does not reach.
func TestSegmentsAndRecordPosition(t *testing.T) {
	o := Options{Dir: t.TempDir(), SegmentSize: 300, MaxSize: 1 << 20, ManualSync: true}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 20 {
		if _, err := l.Append(&Record{Timestamp: int64(i), Topic: "t", Payload: []byte("payload of some length")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	segs, err := Segments(nil, o.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) < 2 || segs[0].Base != 0 {
		t.Fatalf("segments %+v, want several from 0", segs)
	}
	for i, s := range segs {
		next := l.NextOffset()
		if i+1 < len(segs) {
			next = segs[i+1].Base
		}
		pos, err := RecordPosition(nil, s, next)
		if err != nil || pos != s.Size {
			t.Fatalf("segment %d: position of %d is %d, %v; want its size %d", s.Base, next, pos, err, s.Size)
		}
		if s.Base+1 < next {
			pos, err := RecordPosition(nil, s, s.Base+1)
			if err != nil || pos <= 0 || pos >= s.Size {
				t.Fatalf("segment %d: position of its second record %d, %v", s.Base, pos, err)
			}
		}
		if _, err := RecordPosition(nil, s, next+1); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("segment %d: position beyond its end: %v", s.Base, err)
		}
	}
}
