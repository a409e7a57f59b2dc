package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"path/filepath"

	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/keygroup"
)

// channelStateFile holds, in an unaligned checkpoint, the in-flight batches
// and watermarks a keyed subtask's barrier overtook: what reached it on each
// input after its snapshot and before that input's barrier, in the order it
// processed them. On restore they are replayed in that order before anything
// read from the inputs. Format: docs/checkpoint-format.md ("Channel state").
const channelStateFile = "channel-state"

const (
	chanMagic   = "EDDYCHS2"
	chanMagicV1 = "EDDYCHS1" // batches only, no input index (read, never written)
	frameHeader = 8          // u32 payload length, u32 CRC-32C of the payload
	chanEnd     = math.MaxUint32
)

// Kinds of in-flight element in a channel-state frame.
const (
	flightBatch     = 0
	flightWatermark = 1
	flightIdle      = 2 // the input went idle; wm is what the box's clock allows
)

// flight is one in-flight element read back: a batch (kind flightBatch, its
// events cut to the reader's key groups) or a watermark, with the input of
// the old subtask it came in on (-1: unknown, a version 1 file).
type flight struct {
	kind uint8
	in   int
	b    *batch
	wm   int64
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// chanState accumulates the in-flight batches of one unaligned checkpoint
// of one keyed subtask, already encoded.
type chanState struct {
	buf    []byte
	frames uint32
	events int64
}

func newChanState() *chanState { return &chanState{buf: []byte(chanMagic)} }

// begin starts a frame of kind for input in.
func (c *chanState) begin(kind uint8, in int) int {
	start := len(c.buf)
	c.buf = append(c.buf, make([]byte, frameHeader)...)
	c.buf = append(c.buf, kind)
	c.buf = binary.LittleEndian.AppendUint16(c.buf, uint16(in))
	return start
}

// end closes the frame begun at start and returns the bytes it took.
func (c *chanState) end(start int) int64 {
	payload := c.buf[start+frameHeader:]
	binary.LittleEndian.PutUint32(c.buf[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(c.buf[start+4:], crc32.Checksum(payload, castagnoli))
	c.frames++
	return int64(len(c.buf) - start)
}

// addWatermark appends a watermark (or, idle, an idle marker) of input in
// as one frame and returns the bytes it took.
func (c *chanState) addWatermark(in int, wm int64, idle bool) int64 {
	kind := uint8(flightWatermark)
	if idle {
		kind = flightIdle
	}
	start := c.begin(kind, in)
	c.buf = binary.LittleEndian.AppendUint64(c.buf, uint64(wm))
	return c.end(start)
}

// add appends the events of batch b (k input values each) of input in as
// one frame and returns the bytes it took.
func (c *chanState) add(in int, b *batch, k int) int64 {
	start := c.begin(flightBatch, in)
	c.buf = binary.LittleEndian.AppendUint16(c.buf, uint16(k))
	c.buf = binary.LittleEndian.AppendUint32(c.buf, uint32(len(b.events)))
	for i := range b.events {
		e := &b.events[i]
		c.buf = binary.LittleEndian.AppendUint16(c.buf, e.kg)
		c.buf = binary.LittleEndian.AppendUint16(c.buf, uint16(len(e.key)))
		c.buf = append(c.buf, e.key...)
		c.buf = binary.LittleEndian.AppendUint64(c.buf, uint64(e.ts))
		for _, v := range b.vals[i*k : (i+1)*k] {
			c.buf = binary.LittleEndian.AppendUint64(c.buf, math.Float64bits(v))
		}
		c.buf = binary.LittleEndian.AppendUint16(c.buf, uint16(len(e.src.source)))
		c.buf = append(c.buf, e.src.source...)
		c.buf = binary.LittleEndian.AppendUint64(c.buf, e.src.offset)
	}
	c.events += int64(len(b.events))
	return c.end(start)
}

// bytes returns the file's content: the frames and the end frame.
func (c *chanState) bytes() []byte {
	out := binary.LittleEndian.AppendUint32(c.buf, chanEnd)
	return binary.LittleEndian.AppendUint32(out, c.frames)
}

// write stores the channel state in the task's checkpoint directory.
func (c *chanState) write(fsys fileutil.FS, dir string) error {
	return fileutil.WriteFileAtomicFS(fsys, filepath.Join(dir, channelStateFile), c.bytes(), 0o644)
}

// readChanState reads the channel-state file at path and returns its
// elements in order, keeping only the events of key groups in kgs (a
// restore at another parallelism reads every overlapping old subtask's
// file; a batch left without events is dropped, every watermark is kept). A
// missing file is no channel state. Damage is a *fileutil.CorruptionError
// with path and offset.
func readChanState(fsys fileutil.FS, path string, kgs keygroup.Range) ([]flight, error) {
	data, err := fileutil.ReadFileFS(fsys, path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pipeline: read channel state: %w", err)
	}
	return decodeChanState(path, data, kgs)
}

func decodeChanState(path string, data []byte, kgs keygroup.Range) ([]flight, error) {
	corrupt := func(off int, format string, args ...any) error {
		return &fileutil.CorruptionError{Path: path, Offset: int64(off), Reason: fmt.Sprintf(format, args...)}
	}
	if len(data) < len(chanMagic) || (string(data[:len(chanMagic)]) != chanMagic && string(data[:len(chanMagic)]) != chanMagicV1) {
		return nil, corrupt(0, "not a channel-state file (bad magic)")
	}
	v1 := string(data[:len(chanMagic)]) == chanMagicV1
	var out []flight
	off, frames := len(chanMagic), uint32(0)
	for {
		if len(data)-off < frameHeader {
			return nil, corrupt(len(data), "truncated: no end frame")
		}
		n := binary.LittleEndian.Uint32(data[off:])
		if n == chanEnd {
			if got := binary.LittleEndian.Uint32(data[off+4:]); got != frames {
				return nil, corrupt(off+4, "end frame counts %d frames, file has %d", got, frames)
			}
			if off+frameHeader != len(data) {
				return nil, corrupt(off+frameHeader, "%d bytes after the end frame", len(data)-off-frameHeader)
			}
			return out, nil
		}
		if uint64(n) > uint64(len(data)-off-frameHeader) {
			return nil, corrupt(off, "truncated frame (%d of %d bytes)", len(data)-off-frameHeader, n)
		}
		p := data[off+frameHeader : off+frameHeader+int(n)]
		if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(data[off+4:]) {
			return nil, corrupt(off, "frame checksum mismatch")
		}
		f, err := decodeFrame(p, kgs, v1)
		if err != nil {
			return nil, corrupt(off+frameHeader, "frame: %v", err)
		}
		if f.kind != flightBatch || len(f.b.events) > 0 {
			out = append(out, f)
		}
		frames++
		off += frameHeader + int(n)
	}
}

var errShortFrame = errors.New("frame shorter than its events")

func decodeFrame(p []byte, kgs keygroup.Range, v1 bool) (flight, error) {
	r := frameReader{p: p}
	f := flight{kind: flightBatch, in: -1}
	if !v1 {
		if b := r.bytes(1); b != nil {
			f.kind = b[0]
		}
		f.in = int(r.u16())
	}
	switch {
	case r.short:
		return f, errShortFrame
	case f.kind == flightWatermark || f.kind == flightIdle:
		f.wm = int64(r.u64())
		if r.short {
			return f, errShortFrame
		}
		if len(r.p) != 0 {
			return f, fmt.Errorf("%d bytes after its watermark", len(r.p))
		}
		return f, nil
	case f.kind != flightBatch:
		return f, fmt.Errorf("unknown kind %d", f.kind)
	}
	var err error
	f.b, err = decodeBatch(&r, kgs)
	return f, err
}

func decodeBatch(r *frameReader, kgs keygroup.Range) (*batch, error) {
	k, n := int(r.u16()), r.u32()
	b := &batch{}
	for range n {
		kg := r.u16()
		key := string(r.bytes(int(r.u16())))
		ts := int64(r.u64())
		start := len(b.vals)
		for range k {
			b.vals = append(b.vals, math.Float64frombits(r.u64()))
		}
		src := srcPos{source: string(r.bytes(int(r.u16())))}
		src.offset = r.u64()
		if r.short {
			return nil, errShortFrame
		}
		if !kgs.Contains(kg) {
			b.vals = b.vals[:start]
			continue
		}
		b.events = append(b.events, event{kg: kg, key: key, ts: ts, src: src})
	}
	if r.short {
		return nil, errShortFrame
	}
	if len(r.p) != 0 {
		return nil, fmt.Errorf("%d bytes after its events", len(r.p))
	}
	return b, nil
}

type frameReader struct {
	p     []byte
	short bool
}

func (r *frameReader) bytes(n int) []byte {
	if len(r.p) < n {
		r.short, r.p = true, nil
		return nil
	}
	b := r.p[:n]
	r.p = r.p[n:]
	return b
}

func (r *frameReader) u16() uint16 {
	if b := r.bytes(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *frameReader) u32() uint32 {
	if b := r.bytes(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *frameReader) u64() uint64 {
	if b := r.bytes(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}
