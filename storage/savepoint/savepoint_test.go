package savepoint

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/fileutil"
)

// writeSavepoint commits a savepoint "sp" of one source task in root.
func writeSavepoint(t *testing.T, root string) (*Store, *Metadata) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "source-readings")
	f, err := checkpoint.WriteTaskState(nil, src, []byte(`{"watermark":5,"offset":42}`))
	if err != nil {
		t.Fatal(err)
	}
	ts := checkpoint.TaskState{Stage: "readings", Kind: checkpoint.KindNone, Files: []checkpoint.File{f}, StateSize: f.Size}
	st := Open(root, nil)
	if err := st.Begin("sp"); err != nil {
		t.Fatal(err)
	}
	if err := st.CopyTask("sp", "source-readings", src, ts); err != nil {
		t.Fatal(err)
	}
	// Not committed yet: not a savepoint.
	if l, err := st.List(); err != nil || len(l) != 0 {
		t.Fatalf("List before Commit = %v, %v; want none", l, err)
	}
	md := &Metadata{Name: "sp", Job: "j", CheckpointID: 7, Parallelism: 2, MaxParallelism: 8, Mode: "exactly_once",
		Sources: map[string]checkpoint.SourceState{"readings": {Offset: 42}},
		Stages:  []Stage{{UID: "per_device", Keyed: true, Parallelism: 2, MaxParallelism: 8}},
		Tasks:   map[string]checkpoint.TaskState{"source-readings": ts}}
	if err := st.Commit(md); err != nil {
		t.Fatal(err)
	}
	return st, md
}

func TestCommitLoadVerify(t *testing.T) {
	st, _ := writeSavepoint(t, t.TempDir())
	l, err := st.List()
	if err != nil || len(l) != 1 || l[0].Err != nil {
		t.Fatalf("List = %+v, %v", l, err)
	}
	md := l[0].Metadata
	if md.CheckpointID != 7 || md.Sources["readings"].Offset != 42 || md.StageUIDs()[0] != "per_device" || md.Stages[0].Schema != nil {
		t.Errorf("loaded %+v", md)
	}
	if err := Verify(st.Dir("sp"), md); err != nil {
		t.Error(err)
	}
	if cm := md.Checkpoint(); cm.ID != 7 || cm.Validate() != nil {
		t.Errorf("Checkpoint() = %+v (%v)", cm, cm.Validate())
	}
	if err := st.Begin("sp"); !errors.Is(err, ErrExists) {
		t.Errorf("Begin of an existing name: %v, want ErrExists", err)
	}
}

func TestCorruptFileNamedWithOffset(t *testing.T) {
	st, md := writeSavepoint(t, t.TempDir())
	p := filepath.Join(st.Dir("sp"), "source-readings", checkpoint.TaskStateFile)
	b, _ := os.ReadFile(p)
	b[len(b)-3] ^= 1
	os.WriteFile(p, b, 0o644)
	var ce *fileutil.CorruptionError
	if err := Verify(st.Dir("sp"), md); !errors.As(err, &ce) || ce.Path != p || ce.Offset != 24 {
		t.Errorf("Verify = %v, want a corruption of %s at byte 24", err, p)
	}
	m := filepath.Join(st.Dir("sp"), MetadataFile)
	b, _ = os.ReadFile(m)
	b[10] ^= 1
	os.WriteFile(m, b, 0o644)
	if _, err := Load(st.Dir("sp")); !errors.As(err, &ce) || ce.Path != m {
		t.Errorf("Load of a damaged _metadata = %v, want a corruption naming it", err)
	}
}

func TestValidName(t *testing.T) {
	for _, n := range []string{"a", "before-change", "x_1.2"} {
		if err := ValidName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	for _, n := range []string{"", ".x", "a/b", "x.tmp", "a b"} {
		if ValidName(n) == nil {
			t.Errorf("%q accepted", n)
		}
	}
}
