package ingestlog

import (
	"errors"
	"testing"
)

// TruncateBack cuts a closed log at any offset, across segments; the
// reopened log continues at that offset with the records before it.
func TestTruncateBack(t *testing.T) {
	for _, at := range []uint64{0, 1, 7, 13, 20, 29, 30} {
		o := DefaultOptions(t.TempDir())
		o.SegmentSize, o.MaxSize, o.ManualSync = 300, 1<<20, true
		l, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 30 {
			r := testRecord(i, 40)
			if _, err := l.Append(&r); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := TruncateBack(o, at); err != nil {
			t.Fatalf("at %d: %v", at, err)
		}
		if l, err = Open(o); err != nil {
			t.Fatalf("at %d: reopen: %v", at, err)
		}
		if l.NextOffset() != at {
			t.Errorf("at %d: next offset %d", at, l.NextOffset())
		}
		r := testRecord(99, 40)
		if off, err := l.Append(&r); err != nil || off != at {
			t.Errorf("at %d: append after cut: offset %d, %v", at, off, err)
		}
		l.Sync()
		rd, err := l.NewReader(0)
		if err != nil {
			t.Fatal(err)
		}
		var rec Record
		n := uint64(0)
		for ; rd.Next(&rec) == nil; n++ {
			if rec.Offset != n {
				t.Fatalf("at %d: record %d has offset %d", at, n, rec.Offset)
			}
		}
		if n != at+1 {
			t.Errorf("at %d: read %d records, want %d", at, n, at+1)
		}
		rd.Close()
		l.Close()
		if err := TruncateBack(o, at+5); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Errorf("at %d: cut beyond the end: %v", at, err)
		}
	}
}
