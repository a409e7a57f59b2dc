package ingestlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Record is one received MQTT message.
type Record struct {
	Offset    uint64 // assigned by Append: dense, 0 for the first record ever
	Timestamp int64  // receive time, unix ms, set by the caller
	Topic     string
	PacketID  uint16
	Dup       bool
	QoS       byte
	Payload   []byte
}

const (
	headerSize = 8         // u32 body length, u32 CRC32C of the body
	minBody    = 6         // offset, timestamp, flags, packet id (2), topic length
	maxBody    = 256 << 20 // MQTT's largest packet

	flagQoS = 0b011
	flagDup = 0b100
)

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)

	errChecksum = errors.New("checksum mismatch")
	errLength   = errors.New("invalid record length")
	errShort    = errors.New("short record")
)

// appendRecord appends the frame of r to b.
func appendRecord(b []byte, r *Record) []byte {
	start := len(b)
	b = append(b, make([]byte, headerSize)...)
	b = binary.AppendUvarint(b, r.Offset)
	b = binary.AppendVarint(b, r.Timestamp)
	flags := r.QoS & flagQoS
	if r.Dup {
		flags |= flagDup
	}
	b = append(b, flags)
	b = binary.LittleEndian.AppendUint16(b, r.PacketID)
	b = binary.AppendUvarint(b, uint64(len(r.Topic)))
	b = append(b, r.Topic...)
	b = append(b, r.Payload...)
	body := b[start+headerSize:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(body, castagnoli))
	return b
}

// checkRecord reports why r cannot be appended.
func checkRecord(r *Record) error {
	switch {
	case r.QoS > 2:
		return fmt.Errorf("ingestlog: record QoS %d, want 0, 1 or 2", r.QoS)
	case len(r.Topic)+len(r.Payload) > maxBody-32:
		return fmt.Errorf("ingestlog: record of %d bytes exceeds %d", len(r.Topic)+len(r.Payload), maxBody-32)
	}
	return nil
}

// decodeFrame decodes the frame at the start of b into dst. It returns
// errShort if b does not hold the whole frame, n = its length in bytes.
// dst.Payload aliases b; dst.Topic comes from topics (see intern).
func decodeFrame(b []byte, dst *Record, topics map[string]string) (n int, err error) {
	if len(b) < headerSize {
		return 0, errShort
	}
	size := binary.LittleEndian.Uint32(b)
	if size < minBody || size > maxBody {
		return 0, fmt.Errorf("%w %d", errLength, size)
	}
	n = headerSize + int(size)
	if len(b) < n {
		return n, errShort
	}
	body := b[headerSize:n]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return n, errChecksum
	}
	return n, decodeBody(body, dst, topics)
}

func decodeBody(b []byte, dst *Record, topics map[string]string) error {
	off, n1 := binary.Uvarint(b)
	ts, n2 := binary.Varint(b[max(n1, 0):])
	if n1 <= 0 || n2 <= 0 || len(b) < n1+n2+3 {
		return errors.New("bad record body")
	}
	b = b[n1+n2:]
	flags := b[0]
	if flags&^(flagQoS|flagDup) != 0 || flags&flagQoS == 3 {
		return fmt.Errorf("unknown record flags %#x", flags)
	}
	pid := binary.LittleEndian.Uint16(b[1:])
	tlen, n3 := binary.Uvarint(b[3:])
	if n3 <= 0 || tlen > uint64(len(b)-3-n3) {
		return errors.New("bad record topic")
	}
	b = b[3+n3:]
	dst.Topic = intern(topics, b[:tlen])
	dst.Offset, dst.Timestamp, dst.PacketID = off, ts, pid
	dst.QoS, dst.Dup = flags&flagQoS, flags&flagDup != 0
	dst.Payload = b[tlen:]
	return nil
}

// maxTopics bounds the topics a Reader keeps to share their strings.
const maxTopics = 4096

// intern returns topic as a string, the one in topics if it is there, so
// that reading a record of a known topic allocates nothing. topics may
// be nil.
func intern(topics map[string]string, topic []byte) string {
	if s, ok := topics[string(topic)]; ok {
		return s
	}
	s := string(topic)
	if topics != nil && len(topics) < maxTopics {
		topics[s] = s
	}
	return s
}
