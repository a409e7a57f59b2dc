// Package savepoint keeps eddy's savepoints: canonical, parallelism-
// independent copies of a checkpoint of kind savepoint, under
// <data_dir>/savepoints/<name>/, that checkpoint retention never deletes.
// Every keyed subtask's state is a full snapshot (storage/snapshot: key-group
// ordered, indexed by key group, snappy-compressed, CRC32C-framed), so a
// restore at any parallelism reads the key groups it owns; the non-keyed
// task state (watermarks, heap timers, staged output) is the task state file
// of storage/checkpoint; the source positions, the stages and their schema
// are in _metadata. The format is described in docs/savepoint-format.md.
//
// Invariant: a savepoint exists if and only if <name>/_metadata exists. It
// is written last, atomically, after every file it lists has been copied
// and fsynced (the commit rule of checkpoints, storage/fileutil).
package savepoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/snapshot"
)

// Version is the savepoint _metadata format version.
const Version = 1

// Format is the value of _metadata's "format" field.
const Format = "eddy-savepoint"

// MetadataFile is the commit point of a savepoint directory.
const MetadataFile = "_metadata"

// SnapshotFile is a keyed task's full snapshot in its task directory.
const SnapshotFile = "full.snap"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrExists is returned by Begin for a name that is already a savepoint.
var ErrExists = errors.New("savepoint: a savepoint of that name exists")

// Stage is one stage of the job as the savepoint saw it.
type Stage struct {
	// UID identifies the stage's state across pipeline changes (its name).
	UID            string `json:"uid"`
	Keyed          bool   `json:"keyed"`
	Parallelism    int    `json:"parallelism"`
	MaxParallelism int    `json:"max_parallelism"`
	// Schema is the keyed stage's state schema, as checkpoints record it
	// (checkpoint.StageSchema); null for a stateless stage.
	Schema *checkpoint.StageSchema `json:"schema"`
}

// Metadata is the content of <name>/_metadata.
type Metadata struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Name    string `json:"name"`
	Job     string `json:"job"`
	// CheckpointID is the id of the checkpoint of kind savepoint this is a
	// copy of; checkpoints after a restore from it continue above it.
	CheckpointID       int64  `json:"checkpoint_id"`
	TriggerTimestamp   int64  `json:"trigger_timestamp"`   // unix ms
	CompletedTimestamp int64  `json:"completed_timestamp"` // unix ms: when _metadata was written
	Mode               string `json:"mode"`
	Compression        string `json:"compression"`
	Parallelism        int    `json:"parallelism"`
	MaxParallelism     int    `json:"max_parallelism"`
	// Stopped: taken by stop-with-savepoint; the job stopped after it.
	Stopped bool `json:"stopped"`
	// Published lists the sinks that had confirmed the staged output the
	// savepoint holds when it was written (all of them after --stop).
	Published []string `json:"published"`
	// Sources maps a source (or source subtask) name to its position.
	Sources map[string]checkpoint.SourceState `json:"sources"`
	// Stages lists every stage of the job, in configuration order.
	Stages []Stage `json:"stages"`
	// Tasks maps a task name (= its directory) to its state; every keyed
	// task is of kind full.
	Tasks map[string]checkpoint.TaskState `json:"tasks"`
}

// StateSize is the total size of the savepoint's files.
func (md *Metadata) StateSize() int64 {
	var n int64
	for _, t := range md.Tasks {
		n += t.StateSize
	}
	return n
}

// StageUIDs returns the uids of the stages, in order.
func (md *Metadata) StageUIDs() []string {
	out := make([]string, 0, len(md.Stages))
	for _, s := range md.Stages {
		out = append(out, s.UID)
	}
	return out
}

// Checkpoint returns md as checkpoint metadata, for the pipeline's restore
// code (task directories are under the savepoint directory).
func (md *Metadata) Checkpoint() *checkpoint.Metadata {
	return &checkpoint.Metadata{
		Version: checkpoint.Version, ID: md.CheckpointID, Job: md.Job,
		TriggerTimestamp: md.TriggerTimestamp, CompletedTimestamp: md.CompletedTimestamp,
		Mode: md.Mode, Compression: md.Compression,
		Parallelism: md.Parallelism, MaxParallelism: md.MaxParallelism,
		Sources: maps.Clone(md.Sources), Tasks: maps.Clone(md.Tasks),
		Schemas: md.schemas(),
	}
}

// schemas returns the state schemas of the keyed stages in ascending uid
// order, as checkpoint metadata holds them; nil when the savepoint holds
// none (written before schemas were recorded), so a restore treats its
// schema as unknown.
func (md *Metadata) schemas() []checkpoint.StageSchema {
	var out []checkpoint.StageSchema
	for _, s := range md.Stages {
		if s.Schema != nil {
			out = append(out, *s.Schema)
		}
	}
	slices.SortFunc(out, func(a, b checkpoint.StageSchema) int { return strings.Compare(a.UID, b.UID) })
	return out
}

// Validate reports the structural problems of md.
func (md *Metadata) Validate() error {
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	if md.Format != Format {
		add("format %q, want %q", md.Format, Format)
	}
	if err := ValidName(md.Name); err != nil {
		add("name: %v", err)
	}
	if md.CheckpointID < 1 {
		add("checkpoint_id %d, want ≥ 1", md.CheckpointID)
	}
	if md.MaxParallelism < 1 || md.Parallelism < 1 {
		add("parallelism %d / max_parallelism %d, want ≥ 1", md.Parallelism, md.MaxParallelism)
	}
	cm := md.Checkpoint()
	if err := cm.Validate(); err != nil {
		add("%v", err)
	}
	for name, t := range md.Tasks {
		if t.Kind == checkpoint.KindNative {
			add("task %s: kind native; a savepoint holds full snapshots", name)
		}
	}
	if len(probs) > 0 {
		return errors.New(strings.Join(probs, "; "))
	}
	return nil
}

// Encode returns the _metadata encoding of md: indented JSON, a newline
// and the trailer line of checkpoint _metadata ("crc32c <hex>").
func Encode(md *Metadata) ([]byte, error) {
	c := *md
	if c.Sources == nil {
		c.Sources = map[string]checkpoint.SourceState{}
	}
	if c.Published == nil {
		c.Published = []string{}
	}
	if c.Stages == nil {
		c.Stages = []Stage{}
	}
	body, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("savepoint: encode metadata: %w", err)
	}
	return checkpoint.AppendTrailer(append(body, '\n')), nil
}

// Decode parses and checks a _metadata encoding read from path. Damage
// is a *fileutil.CorruptionError naming path.
func Decode(path string, data []byte) (*Metadata, error) {
	body, err := checkpoint.CheckTrailer(path, data)
	if err != nil {
		return nil, err
	}
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Version == nil {
		return nil, &fileutil.CorruptionError{Path: path, Offset: -1, Reason: fmt.Sprintf("bad JSON or no version: %v", err)}
	}
	if *v.Version != Version {
		return nil, fmt.Errorf("savepoint: %s: version %d, this eddy reads version %d", path, *v.Version, Version)
	}
	md := &Metadata{}
	if err := json.Unmarshal(body, md); err != nil {
		return nil, &fileutil.CorruptionError{Path: path, Offset: -1, Reason: "bad JSON: " + err.Error()}
	}
	if err := md.Validate(); err != nil {
		return nil, &fileutil.CorruptionError{Path: path, Offset: -1, Reason: err.Error()}
	}
	return md, nil
}

// ValidName reports why name cannot name a savepoint: it must be 1 to 128
// characters of letters, digits, '.', '_' and '-', not start with '.' and
// not end in ".tmp".
func ValidName(name string) error {
	if name == "" || len(name) > 128 {
		return errors.New("want 1 to 128 characters")
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%q: only letters, digits, '.', '_' and '-' are allowed", name)
		}
	}
	if name[0] == '.' || strings.HasSuffix(name, ".tmp") {
		return fmt.Errorf("%q: may not start with '.' or end in .tmp", name)
	}
	return nil
}

// Store is the savepoint directory, <data_dir>/savepoints.
type Store struct {
	dir string
	fs  fileutil.FS
}

// Open returns the store in dir (created on first write); fsys nil: the OS.
func Open(dir string, fsys fileutil.FS) *Store {
	if fsys == nil {
		fsys = fileutil.OSFS{}
	}
	return &Store{dir: filepath.Clean(dir), fs: fsys}
}

// Root returns the store's directory.
func (s *Store) Root() string { return s.dir }

// Dir returns the directory of savepoint name.
func (s *Store) Dir(name string) string { return filepath.Join(s.dir, name) }

// Resolve turns a NAME or a PATH into a savepoint directory: an argument
// with a path separator, or "." / "..", is a path; anything else is the
// name of a savepoint in s.
func (s *Store) Resolve(arg string) string {
	if strings.ContainsRune(arg, filepath.Separator) || arg == "." || arg == ".." {
		return filepath.Clean(arg)
	}
	return s.Dir(arg)
}

// Begin creates the (empty) directory of savepoint name. A savepoint of
// that name is ErrExists; an incomplete one (no _metadata) is removed.
func (s *Store) Begin(name string) error {
	if err := ValidName(name); err != nil {
		return fmt.Errorf("savepoint: name %w", err)
	}
	p := s.Dir(name)
	if _, err := s.fs.Stat(filepath.Join(p, MetadataFile)); err == nil {
		return fmt.Errorf("%w: %s", ErrExists, p)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("savepoint: begin %s: %w", name, err)
	}
	if err := s.fs.RemoveAll(p); err != nil {
		return fmt.Errorf("savepoint: begin %s: %w", name, err)
	}
	if err := fileutil.CreateDirAllFS(s.fs, p); err != nil {
		return fmt.Errorf("savepoint: begin %s: %w", name, err)
	}
	return nil
}

// CopyTask copies the files of task ts from srcDir (a task directory of a
// completed checkpoint) into savepoint name, fsyncs each and the task
// directory.
func (s *Store) CopyTask(name, task, srcDir string, ts checkpoint.TaskState) error {
	dst := filepath.Join(s.Dir(name), task)
	if err := fileutil.CreateDirAllFS(s.fs, dst); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	for _, f := range ts.Files {
		if err := fileutil.CopyFileFS(s.fs, filepath.Join(srcDir, f.Name), filepath.Join(dst, f.Name), 0o644); err != nil {
			return fmt.Errorf("savepoint: copy %s of %s: %w", f.Name, task, err)
		}
	}
	if err := s.fs.SyncDir(dst); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	return nil
}

// Commit completes savepoint md.Name: it checks that every listed file was
// copied whole (size and CRC32C), fsyncs the savepoint directory and
// writes _metadata atomically (tmp, fsync, rename, fsync).
func (s *Store) Commit(md *Metadata) error {
	md.Format, md.Version = Format, Version
	if err := md.Validate(); err != nil {
		return fmt.Errorf("savepoint: commit %s: %w", md.Name, err)
	}
	p := s.Dir(md.Name)
	if err := VerifyFS(s.fs, p, md); err != nil {
		return fmt.Errorf("savepoint: commit %s: %w", md.Name, err)
	}
	data, err := Encode(md)
	if err != nil {
		return err
	}
	if err := s.fs.SyncDir(p); err != nil {
		return fmt.Errorf("savepoint: commit %s: %w", md.Name, err)
	}
	if err := fileutil.WriteFileAtomicFS(s.fs, filepath.Join(p, MetadataFile), data, 0o644); err != nil {
		return fmt.Errorf("savepoint: commit %s: %w", md.Name, err)
	}
	return s.fs.SyncDir(s.dir)
}

// Abort removes savepoint name, complete or not.
func (s *Store) Abort(name string) error {
	if err := s.fs.RemoveAll(s.Dir(name)); err != nil {
		return fmt.Errorf("savepoint: abort %s: %w", name, err)
	}
	return s.fs.SyncDir(s.dir)
}

// Entry is one savepoint of a listing.
type Entry struct {
	Name     string
	Path     string
	Metadata *Metadata // nil when Err
	Size     int64     // bytes of its files
	Err      error     // _metadata does not load
}

// List returns the savepoints of s (directories with a _metadata), by
// completion time, oldest first; one whose _metadata is damaged is listed
// with Err. Directories without _metadata (incomplete) are left out.
func (s *Store) List() ([]Entry, error) {
	entries, err := s.fs.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("savepoint: list: %w", err)
	}
	var out []Entry
	for _, e := range entries {
		if !e.IsDir() || ValidName(e.Name()) != nil {
			continue
		}
		p := s.Dir(e.Name())
		if _, err := s.fs.Stat(filepath.Join(p, MetadataFile)); err != nil {
			continue
		}
		en := Entry{Name: e.Name(), Path: p}
		en.Metadata, en.Err = LoadFS(s.fs, p)
		if en.Metadata != nil {
			en.Size = en.Metadata.StateSize()
		}
		out = append(out, en)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		var ta, tb int64
		if a.Metadata != nil {
			ta = a.Metadata.CompletedTimestamp
		}
		if b.Metadata != nil {
			tb = b.Metadata.CompletedTimestamp
		}
		if ta != tb {
			return int(min(max(ta-tb, -1), 1))
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// Load reads the _metadata of the savepoint in dir (see LoadFS).
func Load(dir string) (*Metadata, error) { return LoadFS(fileutil.OSFS{}, dir) }

// LoadFS reads and checks the _metadata of the savepoint in dir through
// fsys. A directory without one is not a savepoint.
func LoadFS(fsys fileutil.FS, dir string) (*Metadata, error) {
	p := filepath.Join(dir, MetadataFile)
	data, err := fileutil.ReadFileFS(fsys, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("savepoint: %s is not a savepoint (no %s)", dir, MetadataFile)
	}
	if err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	return Decode(p, data)
}

// VerifyFS checks every file md lists in dir: present, of its size and
// CRC32C, full snapshots block by block and task state files by their
// header. Damage is a *fileutil.CorruptionError naming the file and,
// where the format has one, the byte offset of the damage (-1 otherwise).
func VerifyFS(fsys fileutil.FS, dir string, md *Metadata) error {
	for _, task := range slices.Sorted(maps.Keys(md.Tasks)) {
		ts := md.Tasks[task]
		for _, f := range ts.Files {
			path := filepath.Join(dir, task, f.Name)
			// The structure first: it names the offset of the damage.
			switch f.Name {
			case SnapshotFile:
				if _, err := snapshot.VerifyFS(fsys, path); err != nil {
					return err
				}
			case checkpoint.TaskStateFile:
				if _, err := checkpoint.ReadTaskStateFS(fsys, path); err != nil {
					return err
				}
			}
			data, err := fileutil.ReadFileFS(fsys, path)
			if errors.Is(err, fs.ErrNotExist) {
				return &fileutil.CorruptionError{Path: path, Offset: 0, Reason: "missing"}
			}
			if err != nil {
				return fmt.Errorf("savepoint: %w", err)
			}
			if int64(len(data)) != f.Size {
				return &fileutil.CorruptionError{Path: path, Offset: int64(min(len(data), int(f.Size))),
					Reason: fmt.Sprintf("%d bytes, _metadata says %d", len(data), f.Size)}
			}
			if got := crc32.Checksum(data, castagnoli); got != f.CRC32C {
				return &fileutil.CorruptionError{Path: path, Offset: -1,
					Reason: fmt.Sprintf("checksum mismatch: _metadata says %08x, file has %08x", f.CRC32C, got)}
			}
		}
	}
	return nil
}

// Verify checks the savepoint in dir through the OS (see VerifyFS).
func Verify(dir string, md *Metadata) error { return VerifyFS(fileutil.OSFS{}, dir, md) }
