// Package snapshot writes and reads eddy's full snapshots: one file per
// subtask holding every key of its RocksDB instance in key-group order,
// in CRC32C-framed blocks, optionally snappy-compressed. It is the
// canonical, parallelism-independent form used by checkpoints with
// incremental: false (and by savepoints): a restore reads only the key
// groups it owns. The format is described in docs/snapshot-format.md.
//
// Invariants: a new block starts at every key group, and the index at the
// end of the file gives each key group's first block, so a reader can seek
// to any run of key groups. Every block and the index carry a CRC32C; any
// mismatch is a *fileutil.CorruptionError naming the file and byte offset.
package snapshot

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/golang/snappy"

	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/keygroup"
	"github.com/eddy-stream/eddy/storage/state"
)

const (
	magic       = "EDDYSNP1"
	blockTarget = 64 << 10 // uncompressed bytes per block before a new one starts
	compNone    = 0
	compSnappy  = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Stats describe a written snapshot.
type Stats struct {
	Keys  int64
	Raw   int64 // key and value bytes before compression
	Bytes int64 // file size
}

// Write writes a snapshot to path through the OS (see WriteFS).
func Write(path string, snap *state.Snapshot, cfs []*state.CF, kgs keygroup.Range, compression string) (Stats, error) {
	return WriteFS(fileutil.OSFS{}, path, snap, cfs, kgs, compression)
}

// WriteFS streams every key of cfs in key groups kgs, as seen by snap, to
// path through fsys, atomically (fileutil.CreateAtomic: path.tmp, fsync,
// rename, fsync of path's directory): after a crash path is the complete
// new snapshot or what it was before, never part of the new one.
// compression is "none" or "snappy".
func WriteFS(fsys fileutil.FS, path string, snap *state.Snapshot, cfs []*state.CF, kgs keygroup.Range, compression string) (st Stats, err error) {
	comp := byte(compNone)
	switch compression {
	case "", "none":
	case "snappy":
		comp = compSnappy
	default:
		return st, fmt.Errorf("snapshot: unknown compression %q", compression)
	}
	f, err := fileutil.CreateAtomic(fsys, path, 0o644)
	if err != nil {
		return st, fmt.Errorf("snapshot: %w", err)
	}
	defer func() {
		if aerr := f.Abort(); err == nil && aerr != nil {
			err = fmt.Errorf("snapshot: %w", aerr)
		}
	}()
	w := &writer{bw: bufio.NewWriterSize(f, 1<<20), comp: comp}
	hdr := append([]byte(magic), 1, comp)
	hdr = binary.AppendUvarint(hdr, uint64(kgs.Start))
	hdr = binary.AppendUvarint(hdr, uint64(kgs.End))
	hdr = binary.AppendUvarint(hdr, uint64(len(cfs)))
	for _, cf := range cfs {
		hdr = binary.AppendUvarint(hdr, uint64(len(cf.Name())))
		hdr = append(hdr, cf.Name()...)
	}
	hdr = binary.LittleEndian.AppendUint32(hdr, crc32.Checksum(hdr, castagnoli))
	if err := w.write(hdr); err != nil {
		return st, err
	}
	index := make([]uint64, 0, int(kgs.End)-int(kgs.Start)+1)
	for kg := int(kgs.Start); kg <= int(kgs.End); kg++ {
		if err := w.flushBlock(); err != nil {
			return st, err
		}
		index = append(index, uint64(w.off))
		lower, upper := state.KeyGroupRangeBounds(keygroup.Range{Start: uint16(kg), End: uint16(kg)})
		for ci, cf := range cfs {
			it := snap.NewIterator(cf, lower, upper)
			for ; it.Valid(); it.Next() {
				k, v := it.Key(), it.Value()
				w.block = binary.AppendUvarint(w.block, uint64(ci))
				w.block = binary.AppendUvarint(w.block, uint64(len(k)))
				w.block = append(w.block, k...)
				w.block = binary.AppendUvarint(w.block, uint64(len(v)))
				w.block = append(w.block, v...)
				st.Keys++
				st.Raw += int64(len(k) + len(v))
				if len(w.block) >= blockTarget {
					if err := w.flushBlock(); err != nil {
						it.Close()
						return st, err
					}
				}
			}
			err := it.Err()
			it.Close()
			if err != nil {
				return st, fmt.Errorf("snapshot: read key group %d of %s: %w", kg, cf.Name(), err)
			}
		}
	}
	if err := w.flushBlock(); err != nil {
		return st, err
	}
	// Trailer: an empty block marks the end, then the key-group index.
	if err := w.write(make([]byte, 12)); err != nil {
		return st, err
	}
	var tr []byte
	for _, o := range index {
		tr = binary.LittleEndian.AppendUint64(tr, o)
	}
	tr = binary.LittleEndian.AppendUint64(tr, uint64(st.Keys))
	tr = binary.LittleEndian.AppendUint32(tr, crc32.Checksum(tr, castagnoli))
	tr = binary.LittleEndian.AppendUint32(tr, uint32(len(tr)))
	if err := w.write(tr); err != nil {
		return st, err
	}
	if err := w.bw.Flush(); err != nil {
		return st, fmt.Errorf("snapshot: write %s: %w", path, err)
	}
	if err := f.Commit(); err != nil {
		return st, fmt.Errorf("snapshot: commit %s: %w", path, err)
	}
	st.Bytes = w.off
	return st, nil
}

type writer struct {
	bw    *bufio.Writer
	comp  byte
	off   int64
	block []byte
	cbuf  []byte
}

func (w *writer) write(b []byte) error {
	n, err := w.bw.Write(b)
	w.off += int64(n)
	if err != nil {
		return fmt.Errorf("snapshot: write: %w", err)
	}
	return nil
}

// flushBlock writes the pending records as one block:
// [u32 raw length][u32 stored length][u32 CRC32C of stored bytes][stored].
func (w *writer) flushBlock() error {
	if len(w.block) == 0 {
		return nil
	}
	stored := w.block
	if w.comp == compSnappy {
		w.cbuf = snappy.Encode(w.cbuf[:cap(w.cbuf)], w.block)
		stored = w.cbuf
	}
	var h [12]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(w.block)))
	binary.LittleEndian.PutUint32(h[4:], uint32(len(stored)))
	binary.LittleEndian.PutUint32(h[8:], crc32.Checksum(stored, castagnoli))
	if err := w.write(h[:]); err != nil {
		return err
	}
	if err := w.write(stored); err != nil {
		return err
	}
	w.block = w.block[:0]
	return nil
}

// Restore loads a snapshot read through the OS (see RestoreFS).
func Restore(path string, db *state.DB, want keygroup.Range) (int64, error) {
	return RestoreFS(fileutil.OSFS{}, path, db, want)
}

// RestoreFS loads the keys of the key groups in want from the snapshot at
// path, read through fsys, into db, whose column families must include
// those named in the file. It returns the number of keys loaded. Damage is
// a *fileutil.CorruptionError naming path and the byte offset.
func RestoreFS(fsys fileutil.FS, path string, db *state.DB, want keygroup.Range) (int64, error) {
	var (
		cfs []*state.CF
		b   = db.NewBatch()
	)
	defer b.Close()
	keys, err := scan(fsys, path, want, func(names []string) error {
		cfs = make([]*state.CF, len(names))
		for i, n := range names {
			if cfs[i] = db.CF(n); cfs[i] == nil {
				return fmt.Errorf("snapshot: %s holds column family %q, which the DB lacks", path, n)
			}
		}
		return nil
	}, func(ci int, k, v []byte) error {
		b.Put(cfs[ci], k, v)
		if b.Size() >= 4<<20 {
			if err := db.Write(b); err != nil {
				return err
			}
			b.Clear()
		}
		return nil
	})
	if err != nil {
		return keys, err
	}
	if b.Len() > 0 {
		if err := db.Write(b); err != nil {
			return keys, err
		}
	}
	return keys, nil
}

// Info describes a snapshot file checked by VerifyFS.
type Info struct {
	KeyGroups      keygroup.Range
	ColumnFamilies []string
	Keys           int64
}

// VerifyFS reads the whole snapshot at path through fsys and checks every
// checksum and record, without loading it anywhere. Damage is a
// *fileutil.CorruptionError naming path and the byte offset; a file whose
// key count differs from its trailer's is damage too.
func VerifyFS(fsys fileutil.FS, path string) (Info, error) {
	var info Info
	keys, err := scan(fsys, path, keygroup.Range{Start: 0, End: ^uint16(0)}, func(names []string) error {
		info.ColumnFamilies = names
		return nil
	}, nil)
	info.Keys = keys
	if err != nil {
		return info, err
	}
	data, err := fileutil.ReadFileFS(fsys, path)
	if err != nil {
		return info, fmt.Errorf("snapshot: %w", err)
	}
	hdr := data[len(magic)+2:]
	s, n1 := binary.Uvarint(hdr)
	e, _ := binary.Uvarint(hdr[n1:])
	info.KeyGroups = keygroup.Range{Start: uint16(s), End: uint16(e)}
	// The trailer ends: u64 keys, u32 CRC, u32 length (checked by scan).
	if want := int64(binary.LittleEndian.Uint64(data[len(data)-16:])); want != keys {
		return info, &fileutil.CorruptionError{Path: path, Offset: int64(len(data) - 16),
			Reason: fmt.Sprintf("trailer says %d keys, the blocks hold %d", want, keys)}
	}
	return info, nil
}

// scan checks the snapshot at path and calls fn for every record of the
// key groups in want (fn nil: only check), after cfs with the column
// family names of the header.
func scan(fsys fileutil.FS, path string, want keygroup.Range, cfs func(names []string) error, fn func(ci int, k, v []byte) error) (int64, error) {
	data, err := fileutil.ReadFileFS(fsys, path)
	if err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	corrupt := func(off int, why string, a ...any) error {
		return &fileutil.CorruptionError{Path: path, Offset: int64(off), Reason: fmt.Sprintf(why, a...)}
	}
	if len(data) < len(magic)+2 || string(data[:len(magic)]) != magic {
		return 0, corrupt(0, "not a snapshot file (bad magic)")
	}
	p := len(magic)
	if data[p] != 1 {
		return 0, corrupt(p, "unsupported version %d", data[p])
	}
	comp := data[p+1]
	p += 2
	r := bytes.NewReader(data[p:])
	uv := func() uint64 { v, _ := binary.ReadUvarint(r); return v }
	start, end := uint16(uv()), uint16(uv())
	ncf := int(uv())
	if ncf > len(data) {
		return 0, corrupt(p, "bad header")
	}
	names := make([]string, ncf)
	for i := range names {
		l := int(uv())
		if l > len(data) {
			return 0, corrupt(p, "bad header")
		}
		b := make([]byte, l)
		if _, err := io.ReadFull(r, b); err != nil {
			return 0, corrupt(p, "truncated header")
		}
		names[i] = string(b)
	}
	hlen := p + (len(data[p:]) - r.Len())
	if len(data) < hlen+4 || crc32.Checksum(data[:hlen], castagnoli) != binary.LittleEndian.Uint32(data[hlen:]) {
		return 0, corrupt(0, "header checksum mismatch")
	}
	if err := cfs(names); err != nil {
		return 0, err
	}
	// Trailer.
	if len(data) < 4 {
		return 0, corrupt(len(data), "truncated")
	}
	tl := int(binary.LittleEndian.Uint32(data[len(data)-4:]))
	ts := len(data) - 4 - tl
	nkg := int(end) - int(start) + 1
	if ts < hlen+4 || tl != nkg*8+12 {
		return 0, corrupt(len(data)-4, "bad trailer length %d", tl)
	}
	tr := data[ts : len(data)-4]
	if crc32.Checksum(tr[:len(tr)-4], castagnoli) != binary.LittleEndian.Uint32(tr[len(tr)-4:]) {
		return 0, corrupt(ts, "index checksum mismatch")
	}
	lo, hi := max(start, want.Start), min(end, want.End)
	if lo > hi {
		return 0, nil
	}
	pos := int(binary.LittleEndian.Uint64(tr[int(lo-start)*8:]))
	stop := ts - 12 // the empty end block
	if hi < end {
		stop = int(binary.LittleEndian.Uint64(tr[int(hi-start+1)*8:]))
	}
	if pos < hlen+4 || stop > ts-12 || pos > stop {
		return 0, corrupt(ts, "key-group index points outside the blocks")
	}
	var (
		keys int64
		raw  []byte
	)
	for pos < stop {
		if pos+12 > stop {
			return keys, corrupt(pos, "truncated block header")
		}
		rawLen := int(binary.LittleEndian.Uint32(data[pos:]))
		stLen := int(binary.LittleEndian.Uint32(data[pos+4:]))
		sum := binary.LittleEndian.Uint32(data[pos+8:])
		if pos+12+stLen > stop {
			return keys, corrupt(pos, "block of %d bytes runs past the end", stLen)
		}
		stored := data[pos+12 : pos+12+stLen]
		if crc32.Checksum(stored, castagnoli) != sum {
			return keys, corrupt(pos, "block checksum mismatch")
		}
		block := stored
		if comp == compSnappy {
			if raw, err = snappy.Decode(raw[:cap(raw)], stored); err != nil || len(raw) != rawLen {
				return keys, corrupt(pos, "block does not decompress")
			}
			block = raw
		}
		for len(block) > 0 {
			ci, n1 := binary.Uvarint(block)
			if n1 <= 0 || int(ci) >= ncf {
				return keys, corrupt(pos, "bad record")
			}
			block = block[n1:]
			kl, n2 := binary.Uvarint(block)
			if n2 <= 0 || uint64(len(block)-n2) < kl {
				return keys, corrupt(pos, "bad record key")
			}
			k := block[n2 : n2+int(kl)]
			block = block[n2+int(kl):]
			vl, n3 := binary.Uvarint(block)
			if n3 <= 0 || uint64(len(block)-n3) < vl {
				return keys, corrupt(pos, "bad record value")
			}
			v := block[n3 : n3+int(vl)]
			block = block[n3+int(vl):]
			if fn != nil {
				if err := fn(int(ci), k, v); err != nil {
					return keys, err
				}
			}
			keys++
		}
		pos += 12 + stLen
	}
	return keys, nil
}
