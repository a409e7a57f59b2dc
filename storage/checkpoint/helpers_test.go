package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	keyedTask  = "per_device_minute-0"
	sourceTask = "source-readings"
)

// fileSpec is one file to put into a task directory: content, or a hard
// link to the same-named file of task in checkpoint linkFrom.
type fileSpec struct {
	name     string
	content  []byte
	linkFrom int64
}

// content returns deterministic bytes of length n that differ by seed.
func content(seed string, n int) []byte {
	b := bytes.Repeat([]byte(seed+"|"), n/(len(seed)+1)+1)
	return b[:n]
}

// writeTask fills the directory of task in checkpoint id like a task
// would (RocksDB files, then the task state file) and returns its state.
func writeTask(t *testing.T, s *Store, c *ChecksumCache, id int64, task, kind string, files []fileSpec, taskState []byte) TaskState {
	t.Helper()
	dir := s.TaskDir(id, task)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		var err error
		if f.linkFrom != 0 {
			err = os.Link(filepath.Join(s.TaskDir(f.linkFrom, task), f.name), p)
		} else {
			err = os.WriteFile(p, f.content, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := WriteTaskState(nil, dir, taskState); err != nil {
		t.Fatal(err)
	}
	list, err := c.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := TaskState{Stage: task, Kind: kind, Files: list}
	for _, f := range list {
		st.StateSize += f.Size
	}
	st.CheckpointedSize = st.StateSize
	return st
}

// prepare begins checkpoint id and writes a keyed task (linking the SSTs
// of checkpoint shareFrom named in shared, if any) and a source task. It
// returns the metadata to commit.
func prepare(t *testing.T, s *Store, id int64, shareFrom int64, shared ...string) *Metadata {
	t.Helper()
	if err := s.Begin(id); err != nil {
		t.Fatal(err)
	}
	c := &ChecksumCache{}
	seed := fmt.Sprint("chk", id)
	var files []fileSpec
	for _, name := range shared {
		files = append(files, fileSpec{name: name, linkFrom: shareFrom})
	}
	files = append(files,
		fileSpec{name: fmt.Sprintf("%06d.sst", 100+id), content: content(seed+"sst", 300_000)},
		fileSpec{name: "MANIFEST-000005", content: content(seed+"manifest", 1200)},
		fileSpec{name: "CURRENT", content: []byte("MANIFEST-000005\n")},
		fileSpec{name: "OPTIONS-000007", content: content(seed+"options", 5000)},
	)
	keyed := writeTask(t, s, c, id, keyedTask, KindNative, files, []byte(`{"watermark":`+fmt.Sprint(id)+`}`))
	keyed.Stage, keyed.KeyGroupStart, keyed.KeyGroupEnd = "per_device_minute", 0, 127
	src := writeTask(t, s, c, id, sourceTask, KindNone, nil, []byte(`{"offset":42}`))
	src.Stage = "source"
	return &Metadata{
		ID: id, Job: "appliance-1", TriggerTimestamp: 1_700_000_000_000 + id, CompletedTimestamp: 1_700_000_000_500 + id,
		Mode: "exactly_once", Incremental: true, Compression: "none", Parallelism: 1, MaxParallelism: 128,
		Sources: map[string]SourceState{"readings": {Offset: uint64(1000 * id), MaxTimestamp: 1_699_999_999_000}},
		Tasks:   map[string]TaskState{keyedTask: keyed, sourceTask: src},
	}
}

// commit prepares and commits checkpoint id.
func commit(t *testing.T, s *Store, id int64, shareFrom int64, shared ...string) *Metadata {
	t.Helper()
	md := prepare(t, s, id, shareFrom, shared...)
	if err := s.Commit(md); err != nil {
		t.Fatal(err)
	}
	return md
}

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func completed(t *testing.T, s *Store) []int64 {
	t.Helper()
	ids, err := s.Completed()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// entries returns the names in dir, sorted.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// assertRestorable checks that every completed checkpoint of the store in
// dir loads and passes full verification.
func assertRestorable(t *testing.T, dir string) []int64 {
	t.Helper()
	s := openStore(t, dir)
	ids := completed(t, s)
	for _, id := range ids {
		md, err := s.Load(id)
		if err == nil {
			err = s.Verify(md, true)
		}
		if err != nil {
			t.Fatalf("checkpoint %d is listed as completed but cannot be restored: %v", id, err)
		}
	}
	return ids
}

func asCorrupt(t *testing.T, err error) *fileutil.CorruptionError {
	t.Helper()
	var ce *fileutil.CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v (%T), want a *fileutil.CorruptionError", err, err)
	}
	return ce
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0x40
	// Rewrite in place: keeps the inode, so hard links see it too.
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func truncateFile(t *testing.T, path string, frac float64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(float64(fi.Size())*frac)); err != nil {
		t.Fatal(err)
	}
}
