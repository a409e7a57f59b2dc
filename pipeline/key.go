package pipeline

import (
	"encoding/binary"
	"errors"
)

// encodeKey joins key field values into one string: each value is prefixed
// by its uvarint length, so no separator can collide with a value.
func encodeKey(dst []byte, parts []string) []byte {
	for _, p := range parts {
		dst = binary.AppendUvarint(dst, uint64(len(p)))
		dst = append(dst, p...)
	}
	return dst
}

func decodeKey(k string, n int) ([]string, error) {
	out := make([]string, 0, n)
	b := []byte(k)
	for len(b) > 0 {
		l, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < l {
			return nil, errors.New("pipeline: malformed key")
		}
		out = append(out, string(b[w:w+int(l)]))
		b = b[w+int(l):]
	}
	if len(out) != n {
		return nil, errors.New("pipeline: key has wrong number of fields")
	}
	return out, nil
}
