package pipeline

import (
	"encoding/binary"
	"slices"
	"unsafe"

	"github.com/valyala/fastjson/fastfloat"

	"github.com/eddy-stream/eddy/storage/ingestlog"
)

// scanSlots is the slot path's own JSON reader: it fills the slots of
// every reading of a message straight from the payload bytes, reading only
// the fields the chain uses and skipping the rest, without building
// fastjson's tree. It accepts a strict subset of what fastjson accepts —
// an object, or a non-empty array of objects, of strict JSON with strings
// free of escapes and control characters, and no object or array in a
// field the chain uses — and decodes it to the same values (numbers with
// fastfloat.ParseBestEffort, as fastjson's GetFloat64). For anything else
// it reports false before emitting anything, and the message takes the
// fastjson path, which also writes its dead letters.
func (ps *parser) scanSlots(r *ingestlog.Record, emit func(*Reading) error, dl *deadLetters) (bool, error) {
	p := r.Payload
	ps.scanVals, ps.scanN = ps.scanVals[:0], 0
	i := skipWS(p, 0)
	if i >= len(p) {
		return false, nil
	}
	array := false
	switch p[i] {
	case '{':
		var ok bool
		if i, ok = ps.scanObject(r, p, i); !ok {
			return false, nil
		}
	case '[':
		array = true
		i = skipWS(p, i+1)
		for {
			if i >= len(p) || p[i] != '{' {
				return false, nil // also the empty array
			}
			var ok bool
			if i, ok = ps.scanObject(r, p, i); !ok {
				return false, nil
			}
			if i = skipWS(p, i); i >= len(p) {
				return false, nil
			}
			if p[i] == ']' {
				i++
				break
			}
			if p[i] != ',' {
				return false, nil
			}
			i = skipWS(p, i+1)
		}
	default:
		return false, nil
	}
	if skipWS(p, i) != len(p) {
		return false, nil
	}
	w := len(ps.vals)
	for k := range ps.scanN {
		if array {
			ps.ref.Index = k
		}
		if err := ps.finishSlots(ps.scanVals[k*w:(k+1)*w:(k+1)*w], r, emit, dl); err != nil {
			return true, err
		}
	}
	return true, nil
}

func skipWS(p []byte, i int) int {
	if i < len(p) && p[i] > ' ' {
		return i // compact JSON: one comparison
	}
	for i < len(p) && (p[i] == ' ' || p[i] == '\n' || p[i] == '\t' || p[i] == '\r') {
		i++
	}
	return i
}

// scanObject reads the object at p[i] into the slots of a new reading.
func (ps *parser) scanObject(r *ingestlog.Record, p []byte, i int) (int, bool) {
	start := len(ps.scanVals)
	ps.scanVals = slices.Grow(ps.scanVals, len(ps.vals))[:start+len(ps.vals)]
	vals := ps.scanVals[start:]
	ps.scanN++
	ps.topicSlots(r, vals)
	i = skipWS(p, i+1)
	if i < len(p) && p[i] == '}' {
		return i + 1, true
	}
	for pos := 0; ; pos++ {
		if i >= len(p) || p[i] != '"' {
			return 0, false
		}
		// The key at this position in the reading before was scanned then
		// (no escape, no control character, no quote): compare it, with
		// the colon after it if the JSON is compact.
		var idx int
		if kc := ps.keyAt(pos); kc != nil && kc.at(p, i) {
			idx, i = kc.idx, i+kc.n
		} else {
			var ke int
			if kc != nil && stringIs(p, i, kc.name) {
				idx, ke = kc.idx, i+1+len(kc.name)
			} else {
				ks, e, ok := scanString(p, i)
				if !ok {
					return 0, false
				}
				idx, ke = ps.slotIndex(pos, p[ks:e]), e
			}
			if i = skipWS(p, ke+1); i >= len(p) || p[i] != ':' {
				return 0, false
			}
			i++
		}
		if i = skipWS(p, i); i >= len(p) {
			return 0, false
		}
		var v slot
		switch c := p[i]; {
		case c == '"':
			s, e, ok := scanString(p, i)
			if !ok {
				return 0, false
			}
			v = stringSlot(unsafe.String(unsafe.SliceData(p[s:]), e-s))
			i = e + 1
		case c == '-' || c >= '0' && c <= '9':
			var (
				e  int
				ok bool
			)
			if idx >= 0 {
				var f float64
				e, f, ok = parseNumber(p, i)
				v = floatSlot(f)
			} else {
				e, ok = scanNumber(p, i)
			}
			if !ok {
				return 0, false
			}
			i = e
		case c == 't' && hasLit(p, i, "true"):
			v, i = boolSlot(true), i+4
		case c == 'f' && hasLit(p, i, "false"):
			v, i = boolSlot(false), i+5
		case c == 'n' && hasLit(p, i, "null"):
			i += 4
		case (c == '{' || c == '[') && idx < 0:
			var ok bool
			if i, ok = skipValue(p, i, 0); !ok {
				return 0, false
			}
		default:
			return 0, false // an object or array the chain reads, or not JSON
		}
		if idx >= 0 {
			vals[idx] = v
		}
		if i = skipWS(p, i); i >= len(p) {
			return 0, false
		}
		if p[i] == '}' {
			return i + 1, true
		}
		if p[i] != ',' {
			return 0, false
		}
		i = skipWS(p, i+1)
	}
}

// keyAt is the key cache of position pos, nil if none.
func (ps *parser) keyAt(pos int) *keyCache {
	if pos < len(ps.keys) {
		return &ps.keys[pos]
	}
	return nil
}

// stringIs reports whether the string at p[i] (a quote) is name, which
// holds no quote.
func stringIs(p []byte, i int, name string) bool {
	e := i + 1 + len(name)
	return e < len(p) && p[e] == '"' && string(p[i+1:e]) == name
}

// Masks of scanString's word-at-a-time test.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// scanString finds the string at p[i] (a quote): its content is p[s:e],
// p[e] the closing quote. ok is false for escapes and control characters.
func scanString(p []byte, i int) (s, e int, ok bool) {
	j := i + 1
	// Eight bytes at a time while none is a quote, a backslash or below
	// 0x20 (the test may also flag a word that has none: the byte loop
	// below then decides).
	for ; j+8 <= len(p); j += 8 {
		w := binary.LittleEndian.Uint64(p[j:])
		q, bs := w^(ones*'"'), w^(ones*'\\')
		if ((q-ones)&^q|(bs-ones)&^bs|(w-ones*0x20)&^w)&highs != 0 {
			break
		}
	}
	for ; j < len(p); j++ {
		switch c := p[j]; {
		case c == '"':
			return i + 1, j, true
		case c == '\\' || c < 0x20:
			return 0, 0, false
		}
	}
	return 0, 0, false
}

// pow10 holds the powers of ten that are exact float64s, as fastfloat's
// table does.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// parseNumber is scanNumber and the value of the number, in one pass for
// the common form (no exponent, at most 15 digits), computed as
// fastfloat.ParseBestEffort computes it there (the digits as one uint64,
// divided once by the exact power of ten): bit for bit the same float.
// Other numbers are scanned again and parsed by ParseBestEffort.
func parseNumber(p []byte, i int) (int, float64, bool) {
	start, neg := i, p[i] == '-'
	if neg {
		i++
	}
	var d uint64
	nd := 0 // digits
	if i < len(p) && p[i] == '0' {
		i, nd = i+1, 1
	} else {
		for ; i+8 <= len(p); i += 8 { // eight digits at a time (event times in ms have 13)
			w := binary.LittleEndian.Uint64(p[i:])
			if !eightDigits(w) {
				break
			}
			d = d*100_000_000 + eightDigitsValue(w)
			nd += 8
		}
		for ; i < len(p) && p[i] >= '0' && p[i] <= '9'; i++ {
			d = d*10 + uint64(p[i]-'0')
			nd++
		}
		if nd == 0 {
			return 0, 0, false
		}
	}
	frac := 0
	if i < len(p) && p[i] == '.' {
		for i++; i < len(p) && p[i] >= '0' && p[i] <= '9'; i++ {
			d = d*10 + uint64(p[i]-'0')
			frac++
		}
		if frac == 0 {
			return 0, 0, false
		}
	}
	if nd+frac > 15 || i < len(p) && (p[i] == 'e' || p[i] == 'E') {
		e, ok := scanNumber(p, start)
		if !ok {
			return 0, 0, false
		}
		return e, fastfloat.ParseBestEffort(unsafe.String(unsafe.SliceData(p[start:]), e-start)), true
	}
	f := float64(d)
	if frac > 0 {
		f /= pow10[frac]
	}
	if neg {
		f = -f
	}
	return i, f, true
}

// eightDigits reports whether the eight bytes of w are all '0' … '9'.
func eightDigits(w uint64) bool {
	return w&0xf0f0f0f0f0f0f0f0 == 0x3030303030303030 &&
		(w+0x0606060606060606)&0xf0f0f0f0f0f0f0f0 == 0x3030303030303030
}

// eightDigitsValue is the number the eight digits of w (read little
// endian: the first digit in the lowest byte) spell, exactly.
func eightDigitsValue(w uint64) uint64 {
	w = (w & 0x0f0f0f0f0f0f0f0f) * 2561 >> 8
	w = (w & 0x00ff00ff00ff00ff) * 6553601 >> 16
	return (w & 0x0000ffff0000ffff) * 42949672960001 >> 32
}

// scanNumber finds the end of the strict JSON number at p[i].
func scanNumber(p []byte, i int) (int, bool) {
	if p[i] == '-' {
		i++
	}
	digits := func() bool {
		j := i
		for i < len(p) && p[i] >= '0' && p[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < len(p) && p[i] == '0' {
		i++
	} else if !digits() {
		return 0, false
	}
	if i < len(p) && p[i] == '.' {
		i++
		if !digits() {
			return 0, false
		}
	}
	if i < len(p) && (p[i] == 'e' || p[i] == 'E') {
		i++
		if i < len(p) && (p[i] == '+' || p[i] == '-') {
			i++
		}
		if !digits() {
			return 0, false
		}
	}
	return i, true
}

func hasLit(p []byte, i int, lit string) bool {
	return len(p)-i >= len(lit) && string(p[i:i+len(lit)]) == lit
}

// skipValue skips the strict JSON value at p[i].
func skipValue(p []byte, i, depth int) (int, bool) {
	if depth > 32 {
		return 0, false
	}
	switch c := p[i]; {
	case c == '"':
		_, e, ok := scanString(p, i)
		return e + 1, ok
	case c == '-' || c >= '0' && c <= '9':
		return scanNumber(p, i)
	case c == 't' && hasLit(p, i, "true"):
		return i + 4, true
	case c == 'f' && hasLit(p, i, "false"):
		return i + 5, true
	case c == 'n' && hasLit(p, i, "null"):
		return i + 4, true
	case c == '{' || c == '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		if i = skipWS(p, i+1); i < len(p) && p[i] == end {
			return i + 1, true
		}
		for {
			if i >= len(p) {
				return 0, false
			}
			if c == '{' {
				if p[i] != '"' {
					return 0, false
				}
				_, e, ok := scanString(p, i)
				if !ok {
					return 0, false
				}
				if i = skipWS(p, e+1); i >= len(p) || p[i] != ':' {
					return 0, false
				}
				if i = skipWS(p, i+1); i >= len(p) {
					return 0, false
				}
			}
			var ok bool
			if i, ok = skipValue(p, i, depth+1); !ok {
				return 0, false
			}
			if i = skipWS(p, i); i >= len(p) {
				return 0, false
			}
			if p[i] == end {
				return i + 1, true
			}
			if p[i] != ',' {
				return 0, false
			}
			i = skipWS(p, i+1)
		}
	}
	return 0, false
}
