// Package keygroup assigns keys to key groups and key groups to operator
// subtasks exactly as Flink's KeyGroupRangeAssignment does.
//
// A key group is the unit of keyed state: every key hashes to one of
// maxParallelism key groups, and subtask i of an operator with parallelism p
// owns the contiguous run RangeFor(i, maxParallelism, p). Because state keys
// start with their key group (see storage/state), a subtask's state is one
// byte range, which is what makes rescaling a matter of clipping ranges.
//
// maxParallelism is fixed for the life of the state: changing it moves
// every key to another key group.
//
// Functions panic on arguments that fail Validate; check configuration once
// with Validate at startup.
package keygroup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// MaxParallelism is the upper bound on maxParallelism (Flink's 1<<15).
const MaxParallelism = 1 << 15

// Validate reports whether 1 ≤ p ≤ maxP ≤ MaxParallelism.
func Validate(maxP, p int) error {
	var errs []error
	if maxP < 1 || maxP > MaxParallelism {
		errs = append(errs, fmt.Errorf("keygroup: max parallelism %d not in [1, %d]", maxP, MaxParallelism))
	}
	if p < 1 || p > maxP {
		errs = append(errs, fmt.Errorf("keygroup: parallelism %d not in [1, max parallelism %d]", p, maxP))
	}
	return errors.Join(errs...)
}

func mustValidate(maxP, p int) {
	if err := Validate(maxP, p); err != nil {
		panic(err)
	}
}

// Of returns the key group of key: murmur3_32(key, seed 0) & 0x7fffffff % maxP.
func Of(key []byte, maxP int) uint16 {
	mustValidate(maxP, 1)
	return uint16(int(Murmur3(key, 0)&0x7fffffff) % maxP)
}

// OperatorIndex returns the subtask that owns key group kg: kg·p / maxP.
func OperatorIndex(kg uint16, maxP, p int) int {
	mustValidate(maxP, p)
	if int(kg) >= maxP {
		panic(fmt.Sprintf("keygroup: key group %d not below max parallelism %d", kg, maxP))
	}
	return int(kg) * p / maxP
}

// RangeFor returns the key groups of subtask op:
// [(op·maxP + p − 1)/p, ((op+1)·maxP − 1)/p].
func RangeFor(op, maxP, p int) Range {
	mustValidate(maxP, p)
	if op < 0 || op >= p {
		panic(fmt.Sprintf("keygroup: operator index %d not in [0, %d)", op, p))
	}
	return Range{
		Start: uint16((op*maxP + p - 1) / p),
		End:   uint16(((op+1)*maxP - 1) / p),
	}
}

// Range is an inclusive run of key groups [Start, End]. A Range with
// End < Start is empty.
type Range struct {
	Start, End uint16
}

// Empty reports whether r holds no key group.
func (r Range) Empty() bool { return r.End < r.Start }

// Len returns the number of key groups in r.
func (r Range) Len() int {
	if r.Empty() {
		return 0
	}
	return int(r.End) - int(r.Start) + 1
}

// Contains reports whether kg lies in r.
func (r Range) Contains(kg uint16) bool { return r.Start <= kg && kg <= r.End }

// Intersect returns the key groups in both r and o; ok is false when there
// are none.
func (r Range) Intersect(o Range) (_ Range, ok bool) {
	x := Range{Start: max(r.Start, o.Start), End: min(r.End, o.End)}
	if r.Empty() || o.Empty() || x.Empty() {
		return Range{Start: 1, End: 0}, false
	}
	return x, true
}

func (r Range) String() string { return fmt.Sprintf("[%d, %d]", r.Start, r.End) }

// Murmur3 is MurmurHash3 x86_32 of data.
func Murmur3(data []byte, seed uint32) uint32 {
	const c1, c2 = 0xcc9e2d51, 0x1b873593
	h := seed
	n := len(data)
	for ; len(data) >= 4; data = data[4:] {
		k := binary.LittleEndian.Uint32(data)
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
		h = bits.RotateLeft32(h, 13)
		h = h*5 + 0xe6546b64
	}
	var k uint32
	switch len(data) {
	case 3:
		k ^= uint32(data[2]) << 16
		fallthrough
	case 2:
		k ^= uint32(data[1]) << 8
		fallthrough
	case 1:
		k ^= uint32(data[0])
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
	}
	h ^= uint32(n)
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}
