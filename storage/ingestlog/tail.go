package ingestlog

import (
	"encoding/binary"
	"weak"
)

// tail holds the frames of the records not yet durable, as a stream of
// bytes in chunks of about flushSize: positions are stream offsets, the
// first live byte is at first (the durable end), the last before end. A
// frame never straddles two chunks, so a chunk boundary is a frame
// boundary. Chunks below the durable end are recycled until the next
// garbage collection, so the steady state allocates little and never
// copies a record once appended, and a burst's chunks do not stay.
type tail struct {
	chunks [][]byte
	start  int64 // stream offset of chunks[0][0]
	first  int64 // stream offset of the first byte not yet durable
	end    int64 // stream offset after the last byte
	// free holds recycled chunks weakly: the collector frees those not
	// reused by its next cycle (a burst of appends left up to 16 MiB of
	// them held for good: the live Go heap of the 1 GiB benchmarks).
	free []weak.Pointer[chunkBuf]
}

// chunkCap is the capacity of a chunk of ordinary records: flushSize and
// room for the frame that crosses it.
const chunkCap = flushSize + 4096

type chunkBuf [chunkCap]byte

// appendFrame appends the frame of r and returns its stream offset.
func (t *tail) appendFrame(r *Record) int64 {
	at := t.end
	size := maxFrameSize(r)
	if n := len(t.chunks); n == 0 || len(t.chunks[n-1]) >= flushSize ||
		len(t.chunks[n-1])+size > cap(t.chunks[n-1]) {
		// A new chunk also when the frame does not fit the last one's
		// room: growing it would copy the chunk and leave one too large
		// to recycle.
		var c []byte
		for size <= chunkCap && c == nil && len(t.free) > 0 {
			wp := t.free[len(t.free)-1]
			t.free = t.free[:len(t.free)-1]
			if p := wp.Value(); p != nil {
				c = p[:0]
			}
		}
		if c == nil {
			if size <= chunkCap {
				c = new(chunkBuf)[:0]
			} else {
				c = make([]byte, 0, size) // a huge record: a chunk of its own
			}
		}
		t.chunks = append(t.chunks, c)
	}
	last := &t.chunks[len(t.chunks)-1]
	before := len(*last)
	*last = appendRecord(*last, r)
	t.end += int64(len(*last) - before)
	return at
}

// maxFrameSize bounds the frame of r: header, varints at their longest,
// flags, packet id, topic and payload.
func maxFrameSize(r *Record) int {
	return headerSize + 3*binary.MaxVarintLen64 + 3 + len(r.Topic) + len(r.Payload)
}

// each calls fn with the bytes of [from, to), chunk by chunk.
func (t *tail) each(from, to int64, fn func([]byte) error) error {
	s := t.start
	for _, c := range t.chunks {
		lo, hi := max(from-s, 0), min(to-s, int64(len(c)))
		if lo < hi {
			if err := fn(c[lo:hi]); err != nil {
				return err
			}
		}
		s += int64(len(c))
		if s >= to {
			break
		}
	}
	return nil
}

// drop releases the bytes below to, a frame boundary: they are durable.
func (t *tail) drop(to int64) {
	t.first = to
	for len(t.chunks) > 0 && t.start+int64(len(t.chunks[0])) <= to {
		c := t.chunks[0]
		t.start += int64(len(c))
		t.chunks[0] = nil
		t.chunks = t.chunks[1:]
		if cap(c) == chunkCap && len(t.free) < maxFreeChunks { // not the chunk of a huge record
			t.free = append(t.free, weak.Make((*chunkBuf)(c[:chunkCap])))
		}
	}
	if len(t.chunks) == 0 {
		t.chunks = nil
	}
}

// frames calls fn with the stream offsets of every live frame, in order.
func (t *tail) frames(fn func(start, end int64)) {
	s := t.start
	for _, c := range t.chunks {
		p := int64(0)
		if s < t.first {
			p = t.first - s
		}
		for p < int64(len(c)) {
			n := int64(headerSize) + int64(binary.LittleEndian.Uint32(c[p:]))
			fn(s+p, s+p+n)
			p += n
		}
		s += int64(len(c))
	}
}

// maxFreeChunks bounds the recycled chunks (16 MiB): what one group
// commit round holds at a few million records per second.
const maxFreeChunks = 64
