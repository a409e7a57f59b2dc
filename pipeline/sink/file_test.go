package sink

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFileRotatesAndRepairsTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out", "results.jsonl")
	s, err := NewFile(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 10 {
		if err := s.Write(ctx, []Output{{Payload: []byte(strings.Repeat("x", 30) + string(rune('a'+i)))}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, p := range []string{path, path + ".1", path + ".2"} {
		if st, err := os.Stat(p); err != nil || st.Size() > 100 {
			t.Errorf("%s: %v %v", p, st, err)
		}
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Error("more rotated files kept than max_files")
	}
	// A crash tore the last line.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"id":"torn`)
	f.Close()
	s, err = NewFile(path, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	s.Write(ctx, []Output{{Payload: []byte(`{"id":"next"}`)}})
	s.Close()
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if last := lines[len(lines)-1]; last != `{"id":"next"}` || strings.Contains(string(b), "torn") {
		t.Errorf("torn tail not repaired:\n%s", b)
	}
}

// TestFileRotationClosesGaps: a rotation after one that failed half-way
// (a gap in the numbering) renumbers the rotated files without replacing
// any, and drops only those beyond max_files.
func TestFileRotationClosesGaps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.jsonl")
	for name, line := range map[string]string{".1": "new", ".3": "mid", ".4": "old", ".5": "oldest", "": "cur"} {
		if err := os.WriteFile(path+name, []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := NewFile(path, 8, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), []Output{{Payload: []byte("next")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"": "next\n", ".1": "cur\n", ".2": "new\n", ".3": "mid\n", ".4": "old\n"} {
		if b, err := os.ReadFile(path + name); err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", name, b, err, want)
		}
	}
	if _, err := os.Stat(path + ".5"); err == nil {
		t.Error("a file beyond max_files kept")
	}
}
