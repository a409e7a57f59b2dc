package pipeline

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/valyala/fastjson/fastfloat"
)

// TestParseNumberMatchesParseBestEffort: parseNumber ends where scanNumber
// ends, fails where it fails, and gives bit for bit the float
// fastfloat.ParseBestEffort gives for the number's text (what the slot
// path gave before parseNumber, and what fastjson's GetFloat64 gives), on
// numbers of every length and form, valid or not, followed by a delimiter
// or not.
func TestParseNumberMatchesParseBestEffort(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	digits := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		return b.String()
	}
	cases := []string{
		"0", "-0", "0.0", "-0.0", "1", "-1", "21.53", "-49.999", "150", "1700000000000", "1.8",
		"123456789012345", "1234567890123456", "12345678901234567890", "0.000000000000001",
		"0.0000000000000001", "999999999999999", "9999999999999999", "-999999999999.999",
		"1e5", "1E+5", "-2.5e-3", "1e400", "-1e-400", "01", "1.", "-", ".5", "-.5", "1.e3", "1e", "1e+",
		"00", "-01", "1.5.5", "4503599627370497.5", "0.1", "0.3", "2.675",
	}
	for range 20000 {
		var s string
		if rng.IntN(2) == 0 {
			s = "-"[:rng.IntN(2)]
		}
		switch rng.IntN(4) {
		case 0:
			s += digits(1 + rng.IntN(20))
		case 1:
			s += digits(1+rng.IntN(10)) + "." + digits(rng.IntN(12))
		case 2:
			s += "0." + digits(1+rng.IntN(18))
		default:
			s += digits(1+rng.IntN(4)) + "." + digits(rng.IntN(4)) + "eE"[rng.IntN(2):][:1] + "+-"[rng.IntN(2):][:rng.IntN(2)] + digits(rng.IntN(4))
		}
		cases = append(cases, s)
	}
	for _, c := range cases {
		for _, tail := range []string{"", ",", "}", " ", "x", "0", "."} {
			p := []byte(c + tail)
			wantEnd, wantOK := scanNumber(p, 0)
			end, f, ok := parseNumber(p, 0)
			if ok != wantOK || ok && end != wantEnd {
				t.Fatalf("%q: parseNumber end %d ok %v, scanNumber end %d ok %v", p, end, ok, wantEnd, wantOK)
			}
			if !ok {
				continue
			}
			if want := fastfloat.ParseBestEffort(string(p[:wantEnd])); math.Float64bits(f) != math.Float64bits(want) {
				t.Fatalf("%q: parseNumber %v (%#x), ParseBestEffort %v (%#x)", p[:wantEnd], f, math.Float64bits(f), want, math.Float64bits(want))
			}
		}
	}
}

// TestScanStringMatchesByteLoop: scanString, eight bytes at a time, finds
// the same end and rejects the same strings as a loop over every byte, for
// strings with a quote, a backslash or a control character at every
// position around the word boundaries, and bytes at 0x1f, 0x20, 0x7f, 0x80
// and above.
func TestScanStringMatchesByteLoop(t *testing.T) {
	ref := func(p []byte, i int) (int, int, bool) {
		for j := i + 1; j < len(p); j++ {
			switch c := p[j]; {
			case c == '"':
				return i + 1, j, true
			case c == '\\' || c < 0x20:
				return 0, 0, false
			}
		}
		return 0, 0, false
	}
	rng := rand.New(rand.NewPCG(7, 8))
	alphabet := []byte{'a', 'Z', '0', ' ', '!', '#', '[', ']', 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xa9, 0xff, '"', '\\', '\n', 0, 0x21, 0x5b, 0x5d}
	for range 200000 {
		n := rng.IntN(40)
		p := make([]byte, 1+n)
		p[0] = '"'
		for j := 1; j <= n; j++ {
			if rng.IntN(6) == 0 {
				p[j] = alphabet[rng.IntN(len(alphabet))]
			} else {
				p[j] = byte('a' + rng.IntN(26))
			}
		}
		ws, we, wok := ref(p, 0)
		s, e, ok := scanString(p, 0)
		if s != ws || e != we || ok != wok {
			t.Fatalf("%q: scanString %d %d %v, byte loop %d %d %v", p, s, e, ok, ws, we, wok)
		}
	}
}

// TestKeyCacheAt: the word comparison of a cached key says yes exactly
// when the bytes are `"name":`, for names of every length around the word
// sizes, a byte changed at every position, and input cut short.
func TestKeyCacheAt(t *testing.T) {
	for n := range 20 {
		name := strings.Repeat("k", n)
		kc := newKeyCache(name, 3)
		pat := `"` + name + `":`
		for _, rest := range []string{"", "1", "1234567890123456", "}"} {
			for change := -1; change < len(pat); change++ {
				b := []byte(pat + rest)
				if change >= 0 {
					b[change] ^= 0x20
				}
				for cut := len(b); cut >= 0; cut-- {
					p := b[:cut]
					want := strings.HasPrefix(string(p), pat)
					got := kc.at(p, 0)
					if got && !want {
						t.Fatalf("name %q, input %q: at says yes", name, p)
					}
					if want && !got && len(pat) <= 16 && len(p) >= max(8, len(pat)) {
						t.Fatalf("name %q, input %q: at says no", name, p)
					}
				}
			}
		}
	}
}
