package pipeline

import "github.com/eddy-stream/eddy/storage/keygroup"

// KeyGroup is the key group a keyed stage with key fields keyBy and
// maxParallelism maxP puts a reading or result with fields into, as the
// shuffle does; false if a key field is missing or not a string or number.
// `eddy plan` counts results by it to report key skew.
func KeyGroup(fields map[string]any, keyBy []string, maxP int) (uint16, bool) {
	parts := make([]string, 0, len(keyBy))
	for _, f := range keyBy {
		v, ok := fields[f]
		if !ok || v == nil {
			return 0, false
		}
		s, ok := keyString(v)
		if !ok {
			return 0, false
		}
		parts = append(parts, s)
	}
	return keygroup.Of(encodeKey(nil, parts), maxP), true
}
