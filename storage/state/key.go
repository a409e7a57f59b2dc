package state

import (
	"encoding/binary"

	"github.com/eddy-stream/eddy/storage/keygroup"
)

// AppendKey appends the state key [kg u16 BE][uvarint len(key)][key][ns]
// to dst. The length prefix makes the encoding unambiguous, so
// AppendKey(dst, kg, key, nil) is a prefix of the state key of every
// namespace of key and of no other key. Keys sort by key group first; within
// a key group the order is (length, key bytes, namespace), not key order.
func AppendKey(dst []byte, kg uint16, key, ns []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, kg)
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	return append(dst, ns...)
}

// ParseKey splits a state key made by AppendKey. key and ns alias k.
func ParseKey(k []byte) (kg uint16, key, ns []byte, err error) {
	if len(k) < 3 {
		return 0, nil, nil, ErrMalformedKey
	}
	n, w := binary.Uvarint(k[2:])
	if w <= 0 || n > uint64(len(k)-2-w) {
		return 0, nil, nil, ErrMalformedKey
	}
	key = k[2+w : 2+w+int(n)]
	return binary.BigEndian.Uint16(k), key, k[2+w+int(n):], nil
}

// KeyGroupPrefix returns the two-byte prefix of every key in key group kg.
func KeyGroupPrefix(kg uint16) []byte {
	return binary.BigEndian.AppendUint16(nil, kg)
}

// KeyGroupRangeBounds returns [lower, upper): the byte range holding every
// key of the key groups in r, in any column family whose keys start with
// the key group (state and timers alike). upper is the prefix of r.End+1,
// which fits in a uint16 because key groups are below 1<<15.
func KeyGroupRangeBounds(r keygroup.Range) (lower, upper []byte) {
	return KeyGroupPrefix(r.Start), KeyGroupPrefix(r.End + 1)
}
