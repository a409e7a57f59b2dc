package ingestlog

import (
	"bytes"
	"runtime"
	"testing"
)

// TestTail appends frames of mixed sizes (one larger than a chunk) to a
// tail, checks the bytes and frame boundaries it gives back against a
// flat copy, drops durable prefixes at frame boundaries, and checks that
// chunks are recycled.
func TestTail(t *testing.T) {
	var tl tail
	var flat []byte // the whole stream
	var starts []int64
	add := func(i, size int) {
		r := testRecord(i, size)
		r.Offset = uint64(i)
		at := tl.appendFrame(&r)
		if at != int64(len(flat)) {
			t.Fatalf("frame %d at %d, want %d", i, at, len(flat))
		}
		starts = append(starts, at)
		flat = appendRecord(flat, &r)
		if tl.end != int64(len(flat)) {
			t.Fatalf("end %d, want %d", tl.end, len(flat))
		}
	}
	check := func() {
		t.Helper()
		var got []byte
		if err := tl.each(tl.first, tl.end, func(b []byte) error { got = append(got, b...); return nil }); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, flat[tl.first:]) {
			t.Fatalf("each(%d, %d) returned %d bytes, not the stream's %d", tl.first, tl.end, len(got), len(flat[tl.first:]))
		}
		var bounds []int64
		tl.frames(func(s, e int64) {
			bounds = append(bounds, s)
			if e > tl.end {
				t.Fatalf("frame [%d, %d) beyond end %d", s, e, tl.end)
			}
		})
		var want []int64
		for _, s := range starts {
			if s >= tl.first {
				want = append(want, s)
			}
		}
		if len(bounds) != len(want) {
			t.Fatalf("frames gave %d starts, want %d", len(bounds), len(want))
		}
		for i := range want {
			if bounds[i] != want[i] {
				t.Fatalf("frame %d starts at %d, want %d", i, bounds[i], want[i])
			}
		}
		// A middle range spanning chunks.
		from, to := tl.first+(tl.end-tl.first)/3, tl.end-(tl.end-tl.first)/3
		got = got[:0]
		_ = tl.each(from, to, func(b []byte) error { got = append(got, b...); return nil })
		if !bytes.Equal(got, flat[from:to]) {
			t.Fatalf("each(%d, %d) differs from the stream", from, to)
		}
	}
	for i := range 3000 {
		size := 100 + i%700
		if i == 1500 {
			size = 2 * flushSize // a chunk of its own, grown past its capacity
		}
		add(i, size)
	}
	check()
	for _, k := range []int{1, 700, 1499, 1500, 1501, 2999} {
		tl.drop(starts[k])
		check()
	}
	if len(tl.free) == 0 {
		t.Fatal("no chunk recycled")
	}
	tl.drop(tl.end)
	if len(tl.chunks) != 0 {
		t.Fatalf("%d chunks left after dropping everything", len(tl.chunks))
	}
	// Every chunk but the huge record's own was recycled (a chunkBuf by
	// type): the stream held 3000 records of 100–800 bytes in chunks of
	// flushSize.
	if n, want := len(tl.free), int(tl.end/flushSize)-2; n < want {
		t.Fatalf("%d chunks recycled, want at least %d", n, want)
	}
	add(3000, 100) // from a recycled chunk, unless collected meanwhile
	check()
	// What is recycled and not reused does not outlive a collection.
	tl.drop(tl.end)
	runtime.GC()
	for i, wp := range tl.free {
		if wp.Value() != nil {
			t.Fatalf("recycled chunk %d of %d still held after a collection", i, len(tl.free))
		}
	}
	add(3001, 100) // from a new chunk
	check()
}
