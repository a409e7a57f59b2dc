package timers

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/eddy-stream/eddy/storage/keygroup"
	"github.com/eddy-stream/eddy/storage/state"
)

// heapService keeps every timer in memory (Flink's HEAP timer service).
type heapService struct {
	q   *queue
	buf []byte
}

// NewHeap returns an in-memory timer service for the key groups r. Its
// timers survive a restart only through Snapshot and Restore.
func NewHeap(r keygroup.Range) Service { return &heapService{q: newQueue(r)} }

func (h *heapService) Register(t Timer) {
	checkRange(h.q.r, t.KeyGroup)
	h.buf = appendKey(h.buf[:0], t)
	if _, ok := h.q.set[string(h.buf)]; !ok {
		h.q.add(string(h.buf))
	}
}

func (h *heapService) Delete(t Timer) {
	checkRange(h.q.r, t.KeyGroup)
	h.buf = appendKey(h.buf[:0], t)
	if _, ok := h.q.set[string(h.buf)]; ok {
		h.q.remove(string(h.buf))
	}
}

func (h *heapService) Advance(wm int64, fn func(Timer) error) error {
	for {
		k, ok := h.q.peek()
		if !ok || timestampOf(k) > wm {
			return nil
		}
		h.q.remove(k)
		t, err := parseKey(k)
		if err != nil {
			return err
		}
		if err := fn(t); err != nil {
			return err
		}
	}
}

func (h *heapService) Len() int { return h.q.len() }

func (h *heapService) Flush(*state.Batch) error { return nil }

// Snapshot format, all integers big-endian or (u)varint:
//
//	"ETMR" version(1)
//	uvarint number of key groups that follow, in ascending order, each:
//	  u16 key group, uvarint number of timers, then per timer in order:
//	    timestamp: varint for the first, uvarint increase for the others
//	    uvarint len(key), key, uvarint len(namespace), namespace
//	u32 CRC32C (Castagnoli) of everything before it
var magic = []byte("ETMR\x01")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (h *heapService) Snapshot(w io.Writer) error {
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriter(io.MultiWriter(w, crc))
	var b []byte
	b = append(b, magic...)
	var groups int
	h.q.sorted(func(uint16, []string) error { groups++; return nil })
	b = binary.AppendUvarint(b, uint64(groups))
	err := h.q.sorted(func(kg uint16, ks []string) error {
		b = binary.BigEndian.AppendUint16(b, kg)
		b = binary.AppendUvarint(b, uint64(len(ks)))
		var prev int64
		for i, k := range ks {
			t, err := parseKey(k)
			if err != nil {
				return err
			}
			if i == 0 {
				b = binary.AppendVarint(b, t.Timestamp)
			} else {
				b = binary.AppendUvarint(b, uint64(t.Timestamp-prev))
			}
			prev = t.Timestamp
			b = binary.AppendUvarint(b, uint64(len(t.Key)))
			b = append(b, t.Key...)
			b = binary.AppendUvarint(b, uint64(len(t.Namespace)))
			b = append(b, t.Namespace...)
			if len(b) > 32<<10 {
				if _, err := bw.Write(b); err != nil {
					return err
				}
				b = b[:0]
			}
		}
		return nil
	})
	if err == nil {
		_, err = bw.Write(b)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		_, err = w.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
	}
	if err != nil {
		return fmt.Errorf("timers: write snapshot: %w", err)
	}
	return nil
}

func (h *heapService) Restore(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("timers: read snapshot: %w", err)
	}
	ts, err := DecodeSnapshot(data)
	if err != nil {
		return err
	}
	for _, t := range ts {
		if h.q.r.Contains(t.KeyGroup) {
			h.q.add(string(appendKey(nil, t)))
		}
	}
	return nil
}

// DecodeSnapshot returns every timer of a heap snapshot (what Snapshot
// writes), in its order: key groups ascending, each in firing order. It
// checks magic, checksum and structure (ErrCorrupt) and only reads data;
// Key and Namespace point into it. eddy state inspect uses it.
func DecodeSnapshot(data []byte) ([]Timer, error) {
	if len(data) < len(magic)+4 || string(data[:len(magic)]) != string(magic) {
		return nil, fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	d := decoder{b: body[len(magic):]}
	var ts []Timer
	groups := d.uvarint()
	for g := uint64(0); g < groups && !d.bad; g++ {
		kg := d.u16()
		n := d.uvarint()
		var t Timer
		for i := uint64(0); i < n && !d.bad; i++ {
			if i == 0 {
				t.Timestamp = d.varint()
			} else {
				t.Timestamp += int64(d.uvarint())
			}
			t.KeyGroup, t.Key, t.Namespace = kg, d.bytes(), d.bytes()
			ts = append(ts, t)
		}
	}
	if d.bad || len(d.b) != 0 {
		return nil, fmt.Errorf("%w: malformed body", ErrCorrupt)
	}
	return ts, nil
}

// decoder reads a snapshot body; bad sticks on the first error.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u16() uint16 {
	if len(d.b) < 2 {
		d.bad, d.b = true, nil
		return 0
	}
	v := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}
