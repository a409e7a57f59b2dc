// Package timers is the event-time timer service of keyed operators, with
// Flink's two implementations (state.backend.rocksdb.timer-service.factory):
// NewRocksDB keeps timers in a RocksDB column family, NewHeap keeps them in
// memory and writes them into each checkpoint.
//
// A timer is identified by (key group, key, namespace, timestamp):
// registering it twice keeps one. Timers fire in ascending timestamp order
// across all key groups; ties go by key group, then by the encoded key
// (the uvarint length of the key, the key, the namespace). Both
// implementations fire exactly the same timers in the same order.
//
// The encoded timer, also the RocksDB key, is
// [key group u16 BE][timestamp u64 BE with the sign bit flipped][uvarint len(key)][key][namespace],
// so in each key group timers sort by timestamp (docs/state-layout.md).
//
// A Service belongs to its task's goroutine and is not safe for concurrent
// use.
package timers

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/eddy-stream/eddy/storage/keygroup"
	"github.com/eddy-stream/eddy/storage/state"
)

// Timer is one event-time timer.
type Timer struct {
	KeyGroup  uint16
	Key       []byte
	Namespace []byte
	Timestamp int64
}

// String formats t as kg/key/namespace@timestamp.
func (t Timer) String() string {
	return fmt.Sprintf("%d/%s/%s@%d", t.KeyGroup, t.Key, t.Namespace, t.Timestamp)
}

// Service is a set of timers of one subtask's key groups.
type Service interface {
	// Register adds t; registering the same timer again is a no-op.
	// It panics if t's key group is outside the service's range. It keeps
	// a copy of t's key and namespace, not the slices.
	Register(t Timer)
	// Delete removes t if registered; it does not keep t's slices.
	Delete(t Timer)
	// Advance calls fn for every timer with Timestamp ≤ wm, in ascending
	// timestamp order across key groups, removing each before its call.
	// fn may Register and Delete timers; new ones due at wm fire in the same
	// Advance. If fn fails, Advance returns its error and the timers not yet
	// fired stay registered.
	Advance(wm int64, fn func(Timer) error) error
	// Len returns the number of timers. The RocksDB service estimates it
	// from RocksDB's key estimate plus buffered changes.
	Len() int
	// Flush adds buffered changes to b, which the caller writes before any
	// other call: the operator does so before a checkpoint's native snapshot.
	// The heap service has nothing to flush.
	Flush(b *state.Batch) error
	// Snapshot writes the timers for a checkpoint's non-keyed part: the heap
	// service writes all of them (key-group ordered, CRC32C); the RocksDB
	// service writes nothing, its timers are in the checkpoint's SSTs.
	Snapshot(w io.Writer) error
	// Restore loads timers: the heap service adds those of a snapshot that
	// fall in its key groups (call it once per old snapshot after a
	// rescale); the RocksDB service ignores r and rebuilds its in-memory
	// state from the column family.
	Restore(r io.Reader) error
}

// ErrCorrupt reports a heap snapshot that fails its checks.
var ErrCorrupt = errors.New("timers: corrupt snapshot")

const (
	headLen = 10 // key group + timestamp
	signBit = 1 << 63
)

// appendKey appends the encoded timer t to dst.
func appendKey(dst []byte, t Timer) []byte {
	dst = binary.BigEndian.AppendUint16(dst, t.KeyGroup)
	dst = binary.BigEndian.AppendUint64(dst, uint64(t.Timestamp)^signBit)
	dst = binary.AppendUvarint(dst, uint64(len(t.Key)))
	dst = append(dst, t.Key...)
	return append(dst, t.Namespace...)
}

func keyGroupOf(k string) uint16 { return uint16(k[0])<<8 | uint16(k[1]) }

func timestampOf[T string | []byte](k T) int64 {
	var u uint64
	for i := 2; i < headLen; i++ {
		u = u<<8 | uint64(k[i])
	}
	return int64(u ^ signBit)
}

// parseKey decodes an encoded timer; Key and Namespace are fresh copies.
func parseKey(k string) (Timer, error) {
	if len(k) < headLen+1 {
		return Timer{}, fmt.Errorf("timers: malformed key %x", k)
	}
	n, w := binary.Uvarint([]byte(k[headLen:min(len(k), headLen+binary.MaxVarintLen64)]))
	if w <= 0 || n > uint64(len(k)-headLen-w) {
		return Timer{}, fmt.Errorf("timers: malformed key %x", k)
	}
	key := k[headLen+w : headLen+w+int(n)]
	return Timer{
		KeyGroup:  keyGroupOf(k),
		Key:       []byte(key),
		Namespace: []byte(k[headLen+w+int(n):]),
		Timestamp: timestampOf(k),
	}, nil
}

// DecodeKey decodes a key of the RocksDB timer column family (the
// encoded timer, docs/state-layout.md); Key and Namespace are fresh
// copies. eddy state inspect uses it.
func DecodeKey(k []byte) (Timer, error) { return parseKey(string(k)) }

// less orders encoded timers: timestamp, key group, rest.
func less(a, b string) bool {
	if c := strings.Compare(a[2:headLen], b[2:headLen]); c != 0 {
		return c < 0
	}
	return a[:2] < b[:2] || (a[:2] == b[:2] && a[headLen:] < b[headLen:])
}

func checkRange(r keygroup.Range, kg uint16) {
	if !r.Contains(kg) {
		panic(fmt.Sprintf("timers: key group %d outside %v", kg, r))
	}
}

const noTimer = math.MaxInt64 // a key group's minimum when it may be empty
