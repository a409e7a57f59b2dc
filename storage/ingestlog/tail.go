package ingestlog

import "encoding/binary"

// tail holds the frames of the records not yet durable, as a stream of
// bytes in chunks of about flushSize: positions are stream offsets, the
// first live byte is at first (the durable end), the last before end. A
// frame never straddles two chunks, so a chunk boundary is a frame
// boundary. Chunks below the durable end are recycled, so the steady
// state allocates nothing and never copies a record once appended.
type tail struct {
	chunks [][]byte
	start  int64 // stream offset of chunks[0][0]
	first  int64 // stream offset of the first byte not yet durable
	end    int64 // stream offset after the last byte
	free   [][]byte
}

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
		if n := len(t.free); n > 0 && size <= cap(t.free[n-1]) {
			c, t.free = t.free[n-1][:0], t.free[:n-1]
		} else {
			c = make([]byte, 0, max(flushSize+4096, size))
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
		if cap(c) <= 2*flushSize && len(t.free) < maxFreeChunks { // not the chunk of a huge record
			t.free = append(t.free, c)
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
