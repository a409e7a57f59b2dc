package upload

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// RecordFile is the uploader's durable record, in Options.Dir
// (data_dir/upload/).
const RecordFile = "remote.json"

const recordVersion = 1

// record is what the uploader knows the remote holds. It is a cache: the
// remote is the truth, and reconcile rebuilds the record from a listing
// when the uploader starts. It is written atomically (tmp, fsync, rename,
// fsync dir) after every remote commit, retention and sweep.
type record struct {
	Version int `json:"version"`
	// Remote names the store and appliance the record describes; a record
	// of another remote is discarded.
	Remote string `json:"remote"`
	// Objects maps a key relative to the appliance directory to what is
	// stored there.
	Objects map[string]objectRecord `json:"objects"`
	// Committed maps the id of every remote checkpoint whose _metadata is
	// stored to what it references: the shared-state registry.
	Committed map[int64]committedRecord `json:"committed"`
	// Conflict, when set, stops uploads: the remote holds a newer history
	// than this data dir (see reconcile).
	Conflict string `json:"conflict,omitempty"`
	// UnverifiedStart: this data dir started from empty state without
	// having been able to ask the remote for checkpoints (MarkUnverifiedStart).
	// The first reconcile then treats any remote checkpoint as another
	// history.
	UnverifiedStart bool `json:"unverified_start,omitempty"`
}

type objectRecord struct {
	Size int64 `json:"size"` // stored size
	// CRC32C and Encoding describe the content when Known: the object was
	// uploaded by this data dir or named by a committed manifest. Objects
	// seen only in a listing are not Known and are never reused for a
	// private (non-SST) file; a shared object's name carries its size and
	// checksum, so a listing is enough for it.
	CRC32C   uint32 `json:"crc32c,omitempty"`
	Encoding string `json:"encoding,omitempty"`
	Known    bool   `json:"known,omitempty"`
}

type committedRecord struct {
	TriggerTimestamp   int64    `json:"trigger_timestamp"`
	CompletedTimestamp int64    `json:"completed_timestamp"`
	UploadedTimestamp  int64    `json:"uploaded_timestamp"`
	Keys               []string `json:"keys"`
}

func newRecord(remote string) *record {
	return &record{Version: recordVersion, Remote: remote, Objects: map[string]objectRecord{}, Committed: map[int64]committedRecord{}}
}

// loadRecord reads the record in dir. A missing, unreadable or foreign
// record gives an empty one (reconcile fills it from the remote).
func loadRecord(dir, remote string) (*record, error) {
	data, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return newRecord(remote), nil
	}
	if err != nil {
		return nil, fmt.Errorf("upload: read record: %w", err)
	}
	r := newRecord(remote)
	if err := json.Unmarshal(data, r); err != nil || r.Version != recordVersion || r.Remote != remote {
		return newRecord(remote), nil
	}
	if r.Objects == nil {
		r.Objects = map[string]objectRecord{}
	}
	if r.Committed == nil {
		r.Committed = map[int64]committedRecord{}
	}
	return r, nil
}

func (r *record) save(dir string) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("upload: encode record: %w", err)
	}
	if err := fileutil.WriteFileAtomic(filepath.Join(dir, RecordFile), data, 0o644); err != nil {
		return fmt.Errorf("upload: write record: %w", err)
	}
	return nil
}

func (r *record) clone() *record {
	c := *r
	c.Objects = maps.Clone(r.Objects)
	c.Committed = maps.Clone(r.Committed)
	return &c
}

// committedIDs returns the committed checkpoint ids, ascending.
func (r *record) committedIDs() []int64 {
	return slices.Sorted(maps.Keys(r.Committed))
}

func (r *record) newest() int64 {
	var n int64
	for id := range r.Committed {
		n = max(n, id)
	}
	return n
}

// referenced returns every key a committed checkpoint references, plus
// the committed _metadata objects themselves.
func (r *record) referenced() map[string]bool {
	refs := map[string]bool{}
	for id, c := range r.Committed {
		refs[MetadataRel(id)] = true
		for _, k := range c.Keys {
			refs[k] = true
		}
	}
	return refs
}
