package checkpoint

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"slices"
	"strings"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// Version is the _metadata format version this package writes and reads.
const Version = 1

// Names inside a checkpoint directory.
const (
	MetadataFile  = "_metadata"  // chk-N/_metadata, the commit point
	PublishedFile = "_published" // chk-N/_published, see Store.MarkPublished
	TaskStateFile = "_task"      // chk-N/<task>/_task, see WriteTaskState
)

// Task kinds (TaskState.Kind).
const (
	KindNative = "native" // a RocksDB checkpoint directory (hard links)
	KindFull   = "full"   // one full snapshot stream file
	KindNone   = "none"   // no keyed state (source tasks): only _task
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// File is one file of a task directory.
type File struct {
	Name   string `json:"name"` // relative to the task directory, no separators
	Size   int64  `json:"size"`
	CRC32C uint32 `json:"crc32c"`
	SST    bool   `json:"sst"` // immutable RocksDB table file (name ends in ".sst")
}

// TaskState is one task's part of a checkpoint: the directory
// chk-N/<task>/ and what it holds.
type TaskState struct {
	Stage         string `json:"stage"`
	Index         int    `json:"index"`
	KeyGroupStart uint16 `json:"key_group_start"` // inclusive
	KeyGroupEnd   uint16 `json:"key_group_end"`   // inclusive
	Kind          string `json:"kind"`            // KindNative, KindFull or KindNone
	// Files is every file in chk-N/<task>/, the task state file included.
	Files []File `json:"files"`
	// StateSize is the sum of the sizes of Files.
	StateSize int64 `json:"state_size"`
	// CheckpointedSize is the part of StateSize that is new since the
	// previous completed checkpoint (Flink's incremental "checkpointed
	// size"); StateSize for a full snapshot.
	CheckpointedSize int64 `json:"checkpointed_size"`
}

// SourceState is where a source stood in its ingest log.
type SourceState struct {
	Offset       uint64 `json:"offset"`        // first ingest log offset not covered
	MaxTimestamp int64  `json:"max_timestamp"` // largest event time seen, unix ms
}

// Metadata is the content of chk-N/_metadata.
type Metadata struct {
	Version            int    `json:"version"`
	ID                 int64  `json:"id"`
	Job                string `json:"job"`
	TriggerTimestamp   int64  `json:"trigger_timestamp"`   // unix ms
	CompletedTimestamp int64  `json:"completed_timestamp"` // unix ms
	Mode               string `json:"mode"`                // exactly_once | at_least_once
	Incremental        bool   `json:"incremental"`
	Compression        string `json:"compression"`
	Parallelism        int    `json:"parallelism"`
	MaxParallelism     int    `json:"max_parallelism"`
	// Sources maps a source name to its position.
	Sources map[string]SourceState `json:"sources"`
	// Tasks maps a task name, which is also its directory name
	// ("per_device_minute-0", "source-readings"), to its state.
	Tasks map[string]TaskState `json:"tasks"`
	// Schemas is the state schema of every keyed stage, in ascending uid
	// order. Absent in checkpoints written before schemas were recorded:
	// their schema is unknown.
	Schemas []StageSchema `json:"schemas,omitempty"`
	// Spools maps a sink name to where its spool stood when the checkpoint
	// completed (exactly_once mode; absent without spools).
	Spools map[string]SpoolState `json:"spools,omitempty"`
}

// SpoolPos is a position in a sink's spool: a record offset and the
// checkpoint whose mark ends just before it (-1: none). It is also the
// content of data_dir/spool/<sink>/confirmed.json (docs/data-dir.md).
type SpoolPos struct {
	Offset uint64 `json:"offset"`
	Epoch  int64  `json:"epoch"`
}

// SpoolState is a sink's spool as a checkpoint needs it: the records from
// Confirmed (the sink confirmed everything before it) up to End (the
// offset after the newest durable mark, read after every task had
// snapshotted its staged output) hold the output of checkpoints <= the
// checkpoint that the checkpoint's task state no longer holds. Together
// they are everything staged and not yet confirmed. The uploader ships
// that range with the checkpoint (docs/remote-layout.md).
type SpoolState struct {
	Confirmed SpoolPos `json:"confirmed"`
	End       SpoolPos `json:"end"`
}

// StateSize returns the total size of all tasks' files.
func (md *Metadata) StateSize() int64 {
	var n int64
	for _, t := range md.Tasks {
		n += t.StateSize
	}
	return n
}

// CheckpointedSize returns the total of the tasks' checkpointed sizes.
func (md *Metadata) CheckpointedSize() int64 {
	var n int64
	for _, t := range md.Tasks {
		n += t.CheckpointedSize
	}
	return n
}

// TaskNames returns the names of md's tasks in ascending order.
func (md *Metadata) TaskNames() []string {
	return slices.Sorted(maps.Keys(md.Tasks))
}

// Validate reports every structural problem of md at once, wrapped in
// ErrInvalidMetadata: a version other than Version, an id below 1, a task
// or file name that is not a plain directory entry name (or is reserved),
// a file listed twice, a negative size, a StateSize that is not the sum of
// the file sizes, a CheckpointedSize outside [0, StateSize], an unknown
// Kind or an empty key-group range.
func (md *Metadata) Validate() error {
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	if md.Version != Version {
		add("version %d, want %d", md.Version, Version)
	}
	if md.ID < 1 {
		add("id %d, want ≥ 1", md.ID)
	}
	for _, name := range slices.Sorted(maps.Keys(md.Sources)) {
		if name == "" {
			add("source with an empty name")
		}
	}
	for _, name := range md.TaskNames() {
		t := md.Tasks[name]
		if err := checkName(name); err != nil {
			add("task %q: %v", name, err)
		} else if name[0] == '_' {
			add("task %q: names starting with '_' are reserved", name)
		}
		switch t.Kind {
		case KindNative, KindFull, KindNone:
		default:
			add("task %s: kind %q, want %s, %s or %s", name, t.Kind, KindNative, KindFull, KindNone)
		}
		if t.KeyGroupStart > t.KeyGroupEnd {
			add("task %s: key groups [%d, %d] are empty", name, t.KeyGroupStart, t.KeyGroupEnd)
		}
		var sum int64
		seen := make(map[string]bool, len(t.Files))
		for _, f := range t.Files {
			if err := checkName(f.Name); err != nil {
				add("task %s: file %q: %v", name, f.Name, err)
			}
			if seen[f.Name] {
				add("task %s: file %s listed twice", name, f.Name)
			}
			seen[f.Name] = true
			if f.Size < 0 {
				add("task %s: file %s: size %d", name, f.Name, f.Size)
			}
			sum += f.Size
		}
		if t.StateSize != sum {
			add("task %s: state_size %d, but its files add up to %d", name, t.StateSize, sum)
		}
		if t.CheckpointedSize < 0 || t.CheckpointedSize > t.StateSize {
			add("task %s: checkpointed_size %d outside [0, state_size %d]", name, t.CheckpointedSize, t.StateSize)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(md.Spools)) {
		sp := md.Spools[name]
		if err := checkName(name); err != nil {
			add("spool %q: %v", name, err)
		}
		if sp.Confirmed.Offset > sp.End.Offset {
			add("spool %s: confirmed offset %d beyond the end %d", name, sp.Confirmed.Offset, sp.End.Offset)
		}
	}
	md.validateSchemas(add)
	if len(probs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidMetadata, strings.Join(probs, "; "))
	}
	return nil
}

// checkName reports why name cannot be a directory entry of a checkpoint.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case name == "." || name == "..":
		return errors.New("not a file name")
	case strings.ContainsAny(name, "/\\\x00"):
		return errors.New("contains a path separator or NUL")
	case strings.HasSuffix(name, tmpSuffix):
		return errors.New("names ending in .tmp are reserved for leftovers")
	}
	return nil
}

const (
	tmpSuffix     = ".tmp"
	trailerPrefix = "crc32c "
	trailerLen    = len(trailerPrefix) + 8 + 1 // "crc32c 1a2b3c4d\n"
)

// EncodeMetadata returns the _metadata encoding of md: indented JSON with
// the field names of Metadata's tags, a newline, and the trailer line
// "crc32c <8 lowercase hex digits>\n" holding the CRC32C (Castagnoli) of
// everything before it. Nil maps and file lists encode as {} and [].
// EncodeMetadata does not validate md.
func EncodeMetadata(md *Metadata) ([]byte, error) {
	c := *md
	if c.Sources == nil {
		c.Sources = map[string]SourceState{}
	}
	c.Tasks = make(map[string]TaskState, len(md.Tasks))
	for name, t := range md.Tasks {
		if t.Files == nil {
			t.Files = []File{}
		}
		c.Tasks[name] = t
	}
	body, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("checkpoint: encode metadata: %w", err)
	}
	return AppendTrailer(append(body, '\n')), nil
}

// AppendTrailer appends to body, which ends in a newline, the trailer line
// "crc32c <8 lowercase hex digits>\n" holding the CRC32C of body: the
// checksum of _metadata, also used by savepoints' _metadata.
func AppendTrailer(body []byte) []byte {
	return fmt.Appendf(body, "%s%08x\n", trailerPrefix, crc32.Checksum(body, castagnoli))
}

// CheckTrailer checks the trailer line of data (see AppendTrailer) and
// returns the bytes before it. Damage is a *fileutil.CorruptionError with
// Path name.
func CheckTrailer(name string, data []byte) ([]byte, error) {
	corrupt := func(off int, format string, args ...any) error {
		return &fileutil.CorruptionError{Path: name, Offset: int64(off), Reason: fmt.Sprintf(format, args...)}
	}
	if len(data) < trailerLen || data[len(data)-1] != '\n' {
		return nil, corrupt(len(data), "no trailer line (truncated?)")
	}
	start := bytes.LastIndexByte(data[:len(data)-1], '\n') + 1
	body, trailer := data[:start], data[start:len(data)-1]
	var sum [4]byte
	if len(trailer) != trailerLen-1 || !bytes.HasPrefix(trailer, []byte(trailerPrefix)) ||
		!isLowerHex(trailer[len(trailerPrefix):]) {
		return nil, corrupt(start, "last line is not a %q trailer (truncated?)", trailerPrefix+"<8 hex digits>")
	}
	if _, err := hex.Decode(sum[:], trailer[len(trailerPrefix):]); err != nil {
		return nil, corrupt(start, "bad trailer: %v", err)
	}
	want := uint32(sum[0])<<24 | uint32(sum[1])<<16 | uint32(sum[2])<<8 | uint32(sum[3])
	if got := crc32.Checksum(body, castagnoli); got != want {
		return nil, corrupt(-1, "checksum mismatch: trailer says %08x, content has %08x", want, got)
	}
	return body, nil
}

// DecodeMetadata parses and checks a _metadata encoding (see
// EncodeMetadata). A missing or wrong trailer, JSON that does not parse,
// and metadata that fails Validate are a *fileutil.CorruptionError whose
// Path is MetadataFile (Load replaces it with the full path); a version
// other than Version is ErrUnsupportedVersion.
func DecodeMetadata(data []byte) (*Metadata, error) {
	corrupt := func(off int, format string, args ...any) error {
		return &fileutil.CorruptionError{Path: MetadataFile, Offset: int64(off), Reason: fmt.Sprintf(format, args...)}
	}
	body, err := CheckTrailer(MetadataFile, data)
	if err != nil {
		return nil, err
	}
	// The version first, so that a newer format is reported as such and
	// not as whatever decoding error its other fields would cause.
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, jsonCorrupt(err)
	}
	if v.Version == nil {
		return nil, corrupt(-1, "no version field")
	}
	if *v.Version != Version {
		return nil, fmt.Errorf("%w: %s version %d (this eddy reads version %d; written by a newer eddy?)",
			ErrUnsupportedVersion, MetadataFile, *v.Version, Version)
	}
	md := &Metadata{}
	if err := json.Unmarshal(body, md); err != nil {
		return nil, jsonCorrupt(err)
	}
	if err := md.Validate(); err != nil {
		return nil, corrupt(-1, "%v", err)
	}
	return md, nil
}

func jsonCorrupt(err error) error {
	off := int64(-1)
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	return &fileutil.CorruptionError{Path: MetadataFile, Offset: off, Reason: "bad JSON: " + err.Error()}
}

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
