package upload

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"

	"github.com/eddy-stream/eddy/storage/checkpoint"
)

// Layout names the objects of one appliance below the store's root (see
// docs/remote-layout.md). Keys it returns are relative to the store root
// and start with the appliance id; the Key fields of a Manifest are
// relative to the appliance directory.
type Layout struct {
	Appliance string
}

const (
	sharedDir    = "shared"
	chkPrefix    = "chk-"
	metadataName = checkpoint.MetadataFile
)

// Encodings of a stored object.
const (
	EncodingIdentity = "identity"
	EncodingSnappy   = "snappy" // snappy framing format (github.com/golang/snappy NewBufferedWriter)
)

// Root is the appliance directory with a trailing '/': the prefix of every
// key of this appliance.
func (l Layout) Root() string { return l.Appliance + "/" }

// Key turns a key relative to the appliance directory into a store key.
func (l Layout) Key(rel string) string { return l.Appliance + "/" + rel }

// Rel turns a store key of this appliance into one relative to the
// appliance directory.
func (l Layout) Rel(key string) string { return strings.TrimPrefix(key, l.Root()) }

// SharedRel is the object of an immutable SST, relative to the appliance:
// shared/<task>/<stem>-<size>-<crc32c>.sst. The size and checksum make the
// name content-addressed: RocksDB's file numbers are unique within one DB's
// history, but a DB restored from an older checkpoint continues numbering
// from that checkpoint's MANIFEST and can reuse a number for a different
// file, which must not be mistaken for the one already uploaded.
func SharedRel(task string, f checkpoint.File) string {
	stem := strings.TrimSuffix(f.Name, ".sst")
	return fmt.Sprintf("%s/%s/%s-%d-%08x.sst", sharedDir, task, stem, f.Size, f.CRC32C)
}

// PrivateRel is the object of a non-SST file of checkpoint id:
// chk-<id>/<task>/<name>.
func PrivateRel(id int64, task, name string) string {
	return CheckpointRel(id) + task + "/" + name
}

// CheckpointRel is the directory of checkpoint id: chk-<id>/.
func CheckpointRel(id int64) string { return chkPrefix + strconv.FormatInt(id, 10) + "/" }

// MetadataRel is the commit point of checkpoint id: chk-<id>/_metadata.
func MetadataRel(id int64) string { return CheckpointRel(id) + metadataName }

// parseRel classifies a key relative to the appliance directory: shared
// (under shared/), a checkpoint's object (id > 0, meta for its _metadata),
// or neither.
func parseRel(rel string) (shared bool, id int64, meta bool) {
	if strings.HasPrefix(rel, sharedDir+"/") {
		return true, 0, false
	}
	rest, ok := strings.CutPrefix(rel, chkPrefix)
	if !ok {
		return false, 0, false
	}
	digits, tail, ok := strings.Cut(rest, "/")
	if !ok {
		return false, 0, false
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 1 || strconv.FormatInt(n, 10) != digits {
		return false, 0, false
	}
	return false, n, tail == metadataName
}

// ManifestVersion is the version of the remote _metadata format this eddy
// writes: 2 names the sink spools a checkpoint needs (Manifest.Spools), so
// that an eddy that would not restore them refuses the checkpoint instead
// of losing their output. Version 1 (no spools) is read too.
const ManifestVersion = 2

// Object says where one file of a checkpoint is stored.
type Object struct {
	Task string `json:"task"`
	File string `json:"file"`
	// Key is relative to the appliance directory.
	Key      string `json:"key"`
	Encoding string `json:"encoding"` // identity | snappy
	// StoredSize is the object's size (after compression).
	StoredSize int64 `json:"stored_size"`
}

// Manifest is the remote chk-N/_metadata: the local checkpoint metadata
// (every file with its size and CRC32C) plus where each file is stored.
// It is uploaded last, and only once every object it names is stored: the
// commit point of a remote checkpoint.
type Manifest struct {
	Version   int    `json:"version"`
	Appliance string `json:"appliance"`
	// UploadedTimestamp is when the manifest was written, Unix ms.
	UploadedTimestamp int64                `json:"uploaded_timestamp"`
	Checkpoint        *checkpoint.Metadata `json:"checkpoint"`
	Objects           []Object             `json:"objects"`
	// Spools holds, for every sink of Checkpoint.Spools, the part of its
	// spool the checkpoint needs (spool.go), in sink name order.
	Spools []ManifestSpool `json:"spools,omitempty"`
}

// Keys returns the keys (relative to the appliance) m references.
func (m *Manifest) Keys() []string {
	keys := make([]string, len(m.Objects))
	for i, o := range m.Objects {
		keys[i] = o.Key
	}
	for _, sp := range m.Spools {
		for _, seg := range sp.Segments {
			keys = append(keys, seg.Key)
		}
	}
	return keys
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// EncodeManifest returns indented JSON, a newline and the trailer line
// "crc32c <8 hex digits>\n" over everything before it, like the local
// _metadata.
func EncodeManifest(m *Manifest) ([]byte, error) {
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("upload: encode manifest: %w", err)
	}
	body = append(body, '\n')
	return fmt.Appendf(body, "crc32c %08x\n", crc32.Checksum(body, castagnoli)), nil
}

// DecodeManifest parses and checks a remote _metadata: the trailer
// checksum, the version, the embedded checkpoint metadata (Validate), and
// that every file of the checkpoint has exactly one object.
func DecodeManifest(data []byte) (*Manifest, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("upload: remote %s: %s", metadataName, fmt.Sprintf(format, args...))
	}
	if len(data) < 17 || data[len(data)-1] != '\n' {
		return nil, bad("no trailer line (truncated?)")
	}
	start := bytes.LastIndexByte(data[:len(data)-1], '\n') + 1
	body, trailer := data[:start], data[start:len(data)-1]
	digits, ok := bytes.CutPrefix(trailer, []byte("crc32c "))
	var sum [4]byte
	if !ok || len(digits) != 8 {
		return nil, bad("last line is not a crc32c trailer (truncated?)")
	}
	if _, err := hex.Decode(sum[:], digits); err != nil {
		return nil, bad("bad trailer: %v", err)
	}
	want := uint32(sum[0])<<24 | uint32(sum[1])<<16 | uint32(sum[2])<<8 | uint32(sum[3])
	if got := crc32.Checksum(body, castagnoli); got != want {
		return nil, bad("checksum mismatch: trailer says %08x, content has %08x", want, got)
	}
	m := &Manifest{}
	if err := json.Unmarshal(body, m); err != nil {
		return nil, bad("bad JSON: %v", err)
	}
	if m.Version != 1 && m.Version != ManifestVersion {
		return nil, bad("version %d, this eddy reads 1 and %d", m.Version, ManifestVersion)
	}
	if m.Checkpoint == nil {
		return nil, bad("no checkpoint")
	}
	if err := m.Checkpoint.Validate(); err != nil {
		return nil, bad("%v", err)
	}
	objs := map[[2]string]bool{}
	for _, o := range m.Objects {
		if objs[[2]string{o.Task, o.File}] {
			return nil, bad("file %s/%s has two objects", o.Task, o.File)
		}
		if o.Encoding != EncodingIdentity && o.Encoding != EncodingSnappy {
			return nil, bad("object %s: unknown encoding %q", o.Key, o.Encoding)
		}
		objs[[2]string{o.Task, o.File}] = true
	}
	for task, ts := range m.Checkpoint.Tasks {
		for _, f := range ts.Files {
			if !objs[[2]string{task, f.Name}] {
				return nil, bad("file %s/%s has no object", task, f.Name)
			}
		}
	}
	if len(objs) != countFiles(m.Checkpoint) {
		return nil, bad("objects for files the checkpoint does not list")
	}
	if err := checkSpools(m); err != nil {
		return nil, bad("%v", err)
	}
	return m, nil
}

func countFiles(md *checkpoint.Metadata) int {
	n := 0
	for _, t := range md.Tasks {
		n += len(t.Files)
	}
	return n
}
