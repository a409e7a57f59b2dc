package keygroup

import (
	"fmt"
	"strings"
	"testing"
)

func TestMurmur3Vectors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		seed uint32
		want uint32
	}{
		{"", 0, 0},
		{"", 1, 0x514e28b7},
		{"", 0xffffffff, 0x81f16f39},
		{"\x00\x00\x00\x00", 0, 0x2362f9de},
		{"\xff\xff\xff\xff", 0, 0x76293b50},
		{"\x21\x43\x65\x87", 0, 0xf55b516b},
		{"\x21\x43\x65", 0, 0x7e4a8634},
		{"\x21\x43", 0, 0xa0f7b07a},
		{"\x21", 0, 0x72661cf4},
		{"hello", 0, 0x248bfa47},
		{"abc", 0, 0xb3dd93fa},
		{"aaaa", 0x9747b28c, 0x5a97808a},
		{"Hello, world!", 0x9747b28c, 0x24884cba},
		{"The quick brown fox jumps over the lazy dog", 0x9747b28c, 0x2fa826cd},
	} {
		if got := Murmur3([]byte(tc.in), tc.seed); got != tc.want {
			t.Errorf("Murmur3(%q, %#x) = %#08x, want %#08x", tc.in, tc.seed, got, tc.want)
		}
	}
}

func TestOf(t *testing.T) {
	// murmur3("hello") = 0x248bfa47 = 613153351.
	for _, tc := range []struct {
		key  string
		maxP int
		want uint16
	}{
		{"hello", 128, 613153351 % 128},
		{"hello", 32768, 613153351 % 32768},
		{"hello", 1, 0},
		{"", 128, 0},
	} {
		if got := Of([]byte(tc.key), tc.maxP); got != tc.want {
			t.Errorf("Of(%q, %d) = %d, want %d", tc.key, tc.maxP, got, tc.want)
		}
	}
	// The sign bit is masked, never producing a negative modulus.
	for i := range 10000 {
		k := []byte(fmt.Sprint("key-", i))
		if kg := Of(k, 1000); kg >= 1000 {
			t.Fatalf("Of(%q, 1000) = %d", k, kg)
		}
	}
}

func TestRangeFor(t *testing.T) {
	for _, tc := range []struct {
		op, maxP, p int
		want        Range
	}{
		{0, 128, 1, Range{0, 127}},
		{0, 128, 2, Range{0, 63}},
		{1, 128, 2, Range{64, 127}},
		{0, 10, 3, Range{0, 3}},
		{1, 10, 3, Range{4, 6}},
		{2, 10, 3, Range{7, 9}},
		{0, 32768, 32768, Range{0, 0}},
		{32767, 32768, 32768, Range{32767, 32767}},
		{6, 7, 7, Range{6, 6}},
	} {
		if got := RangeFor(tc.op, tc.maxP, tc.p); got != tc.want {
			t.Errorf("RangeFor(%d, %d, %d) = %v, want %v", tc.op, tc.maxP, tc.p, got, tc.want)
		}
	}
}

// TestRangeInvariant checks, for many (maxP, p), that the ranges tile
// [0, maxP) in order and that OperatorIndex agrees with RangeFor.
func TestRangeInvariant(t *testing.T) {
	maxPs := []int{1, 2, 3, 7, 10, 128, 129, 1000, 4096, 32767, 32768}
	for _, maxP := range maxPs {
		for _, p := range []int{1, 2, 3, 5, 7, 16, 100, 127, 128, 1000, maxP - 1, maxP} {
			if p < 1 || p > maxP {
				continue
			}
			next := 0
			for op := range p {
				r := RangeFor(op, maxP, p)
				if int(r.Start) != next || r.Empty() {
					t.Fatalf("maxP=%d p=%d op=%d: range %v, want start %d and non-empty", maxP, p, op, r, next)
				}
				for kg := int(r.Start); kg <= int(r.End); kg++ {
					if got := OperatorIndex(uint16(kg), maxP, p); got != op {
						t.Fatalf("maxP=%d p=%d: OperatorIndex(%d) = %d, want %d", maxP, p, kg, got, op)
					}
				}
				next = int(r.End) + 1
			}
			if next != maxP {
				t.Fatalf("maxP=%d p=%d: ranges end at %d", maxP, p, next)
			}
		}
	}
}

func TestRangeOps(t *testing.T) {
	r := Range{10, 20}
	for kg, want := range map[uint16]bool{9: false, 10: true, 15: true, 20: true, 21: false} {
		if r.Contains(kg) != want {
			t.Errorf("%v.Contains(%d) = %v", r, kg, !want)
		}
	}
	for _, tc := range []struct {
		a, b Range
		want Range
		ok   bool
	}{
		{Range{10, 20}, Range{15, 30}, Range{15, 20}, true},
		{Range{10, 20}, Range{0, 10}, Range{10, 10}, true},
		{Range{10, 20}, Range{21, 30}, Range{}, false},
		{Range{10, 20}, Range{12, 13}, Range{12, 13}, true},
		{Range{1, 0}, Range{0, 5}, Range{}, false},
	} {
		got, ok := tc.a.Intersect(tc.b)
		if ok != tc.ok || (ok && got != tc.want) || (!ok && !got.Empty()) {
			t.Errorf("%v ∩ %v = %v, %v; want %v, %v", tc.a, tc.b, got, ok, tc.want, tc.ok)
		}
	}
	if n := (Range{10, 20}).Len(); n != 11 {
		t.Errorf("Len = %d", n)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		maxP, p int
		err     string
	}{
		{128, 1, ""},
		{32768, 32768, ""},
		{0, 1, "max parallelism 0"},
		{32769, 1, "max parallelism 32769"},
		{128, 0, "parallelism 0"},
		{128, 129, "parallelism 129"},
	} {
		err := Validate(tc.maxP, tc.p)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("Validate(%d, %d) = %v, want %q", tc.maxP, tc.p, err, tc.err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("RangeFor with op ≥ p did not panic")
		}
	}()
	RangeFor(3, 128, 3)
}

func BenchmarkOf(b *testing.B) {
	key := []byte("sensor-000123/temperature")
	for b.Loop() {
		Of(key, 128)
	}
}
