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
