package timers

import (
	"bytes"
	"errors"
	"testing"

	"github.com/eddy-stream/eddy/storage/keygroup"
)

// TestDecodeSnapshotAndKey: the read-only decoders return what was
// registered, and refuse damage.
func TestDecodeSnapshotAndKey(t *testing.T) {
	h := NewHeap(keygroup.Range{Start: 0, End: 9})
	in := []Timer{
		{KeyGroup: 3, Key: []byte("b"), Timestamp: -5},
		{KeyGroup: 3, Key: []byte("a"), Namespace: []byte{1}, Timestamp: 7},
		{KeyGroup: 1, Key: []byte("c"), Timestamp: 100},
	}
	for _, tm := range in {
		h.Register(tm)
	}
	var buf bytes.Buffer
	if err := h.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSnapshot(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1/c/@100", "3/b/@-5", "3/a/\x01@7"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range got {
		if got[i].String() != want[i] {
			t.Errorf("timer %d: %s, want %q", i, got[i], want[i])
		}
	}
	b := buf.Bytes()
	b[len(b)-6] ^= 1
	if _, err := DecodeSnapshot(b); !errors.Is(err, ErrCorrupt) {
		t.Errorf("damaged snapshot: %v", err)
	}
	for _, tm := range in {
		k, err := DecodeKey(appendKey(nil, tm))
		if err != nil || k.String() != tm.String() {
			t.Errorf("DecodeKey(%s) = %s, %v", tm, k, err)
		}
	}
	if _, err := DecodeKey([]byte{0, 1, 2}); err == nil {
		t.Error("short key decoded")
	}
}
