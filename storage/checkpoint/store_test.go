package checkpoint

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestCommitLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "checkpoints") // parents created
	s := openStore(t, dir)
	md := prepare(t, s, 1, 0)
	md.Version = 0
	if err := s.Commit(md); err != nil {
		t.Fatal(err)
	}
	if md.Version != Version {
		t.Errorf("Commit left version %d", md.Version)
	}
	for _, s := range []*Store{s, openStore(t, dir)} {
		got, err := s.Load(1)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, md) {
			t.Fatalf("Load:\n got %+v\nwant %+v", got, md)
		}
		for _, full := range []bool{false, true} {
			if err := s.Verify(got, full); err != nil {
				t.Fatalf("Verify(full=%v): %v", full, err)
			}
		}
	}
	if got, want := entries(t, s.CheckpointDir(1)), []string{MetadataFile, keyedTask, sourceTask}; !slices.Equal(got, want) {
		t.Errorf("chk-1 holds %v, want %v", got, want)
	}
	if s.Dir() != dir || s.TaskDir(1, "x") != filepath.Join(dir, "chk-1", "x") {
		t.Errorf("Dir %s, TaskDir %s", s.Dir(), s.TaskDir(1, "x"))
	}
	if _, err := s.Load(2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing checkpoint: %v, want ErrNotExist", err)
	}
}

func TestCompleted(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	for _, id := range []int64{10, 2, 9, 1} {
		commit(t, s, id, 0)
	}
	prepare(t, s, 11, 0) // in progress
	for _, name := range []string{"chk-007", "chk-0", "chk-x", "chk-3.broken", "other"} {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, MetadataFile), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := completed(t, s), []int64{1, 2, 9, 10}; !slices.Equal(got, want) {
		t.Errorf("Completed = %v, want %v", got, want)
	}
}

func TestBegin(t *testing.T) {
	s := openStore(t, t.TempDir())
	commit(t, s, 1, 0)
	if err := s.Begin(1); !errors.Is(err, ErrExists) {
		t.Errorf("Begin of a completed checkpoint: %v, want ErrExists", err)
	}
	if err := s.Begin(0); err == nil {
		t.Error("Begin(0) succeeded")
	}
	// A directory left by an attempt that never completed is cleared.
	prepare(t, s, 2, 0)
	if err := s.Begin(2); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, s.CheckpointDir(2)); len(got) != 0 {
		t.Errorf("Begin left %v", got)
	}
}

func TestCommitChecksLayout(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, s *Store, md *Metadata)
		want   string
	}{
		{"file missing", func(t *testing.T, s *Store, md *Metadata) {
			os.Remove(filepath.Join(s.TaskDir(2, keyedTask), "CURRENT"))
		}, "CURRENT is missing"},
		{"size differs", func(t *testing.T, s *Store, md *Metadata) {
			os.WriteFile(filepath.Join(s.TaskDir(2, keyedTask), "CURRENT"), []byte("x"), 0o644)
		}, "CURRENT has 1 bytes, metadata says 16"},
		{"file not listed", func(t *testing.T, s *Store, md *Metadata) {
			os.WriteFile(filepath.Join(s.TaskDir(2, keyedTask), "000999.sst"), nil, 0o644)
		}, "000999.sst is not listed"},
		{"task not listed", func(t *testing.T, s *Store, md *Metadata) { delete(md.Tasks, sourceTask) },
			"source-readings is not the directory of a listed task"},
		{"task directory missing", func(t *testing.T, s *Store, md *Metadata) {
			os.RemoveAll(s.TaskDir(2, sourceTask))
		}, "no directory"},
		{"not begun", func(t *testing.T, s *Store, md *Metadata) { md.ID = 3 }, "Begin not called"},
		{"invalid", func(t *testing.T, s *Store, md *Metadata) {
			ts := md.Tasks[keyedTask]
			ts.StateSize++
			md.Tasks[keyedTask] = ts
		}, "add up to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, t.TempDir())
			commit(t, s, 1, 0)
			md := prepare(t, s, 2, 0)
			tc.change(t, s, md)
			err := s.Commit(md)
			if !errors.Is(err, ErrInvalidMetadata) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvalidMetadata containing %q", err, tc.want)
			}
			if got := completed(t, s); !slices.Equal(got, []int64{1}) {
				t.Errorf("Completed = %v after a refused commit", got)
			}
		})
	}

	t.Run("task without files needs no directory", func(t *testing.T) {
		s := openStore(t, t.TempDir())
		md := prepare(t, s, 1, 0)
		md.Tasks["source-other"] = TaskState{Stage: "source", Kind: KindNone}
		if err := s.Commit(md); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("twice", func(t *testing.T) {
		s := openStore(t, t.TempDir())
		md := commit(t, s, 1, 0)
		if err := s.Commit(md); !errors.Is(err, ErrExists) {
			t.Fatalf("second Commit: %v, want ErrExists", err)
		}
	})
}

func TestAbort(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, s *Store)
	}{
		{"in progress", func(t *testing.T, s *Store) { prepare(t, s, 2, 0) }},
		{"completed", func(t *testing.T, s *Store) { commit(t, s, 2, 1, "000101.sst") }},
		{"never begun", func(t *testing.T, s *Store) {}},
		{"begun, empty", func(t *testing.T, s *Store) { s.Begin(2) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir)
			commit(t, s, 1, 0)
			tc.setup(t, s)
			if err := s.Abort(2); err != nil {
				t.Fatal(err)
			}
			if got := entries(t, dir); !slices.Equal(got, []string{"chk-1"}) {
				t.Errorf("store holds %v, want [chk-1]", got)
			}
			if ids := assertRestorable(t, dir); !slices.Equal(ids, []int64{1}) {
				t.Errorf("Completed = %v", ids)
			}
		})
	}
}

func TestOpenRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	commit(t, s, 1, 0)
	commit(t, s, 3, 0)
	prepare(t, s, 4, 0) // crashed before _metadata
	for _, p := range []string{
		"chk-1/_metadata.tmp", "chk-1/_published.tmp", "chk-1/" + keyedTask + "/_task.tmp",
		"chk-4/" + MetadataFile + ".tmp",
		"chk-2.delete.tmp/" + keyedTask + "/000001.sst", // crashed while removing chk-2
		"chk-5/" + keyedTask + ".tmp/CURRENT",           // crashed in RocksDB's CreateCheckpoint
		"foo.tmp",
		"chk-6.broken/" + keyedTask + "/x.tmp", // broken: untouched, even without _metadata
		"chk-6.broken.1/" + MetadataFile,
		"notes/a.tmp", // not ours
		"README",
	} {
		p = filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	s, err := Open(dir, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"README", "chk-1", "chk-3", "chk-6.broken", "chk-6.broken.1", "notes"}
	if got := entries(t, dir); !slices.Equal(got, want) {
		t.Errorf("after Open: %v, want %v", got, want)
	}
	if got := entries(t, s.CheckpointDir(1)); !slices.Equal(got, []string{MetadataFile, keyedTask, sourceTask}) {
		t.Errorf("chk-1 holds %v", got)
	}
	for _, p := range []string{"chk-6.broken/" + keyedTask + "/x.tmp", "notes/a.tmp"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if ids := assertRestorable(t, dir); !slices.Equal(ids, []int64{1, 3}) {
		t.Errorf("Completed = %v", ids)
	}
	for _, want := range []string{"chk-4", "chk-5", "foo.tmp", "chk-2.delete.tmp", "_published.tmp", "_task.tmp"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not mention %s:\n%s", want, logs.String())
		}
	}
}

func TestPrune(t *testing.T) {
	for _, tc := range []struct {
		name        string
		keep        int
		protect     []int64
		wantRemoved []int64
		wantLeft    []int64
	}{
		{"keep 2", 2, nil, []int64{1, 2, 3}, []int64{4, 5}},
		{"keep 1, protect 2", 1, []int64{2}, []int64{1, 3, 4}, []int64{2, 5}},
		{"protect the newest", 1, []int64{5}, []int64{1, 2, 3, 4}, []int64{5}},
		{"keep more than there are", 10, nil, nil, []int64{1, 2, 3, 4, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir)
			commit(t, s, 1, 0)
			for id := int64(2); id <= 5; id++ {
				// Share an SST with the previous one, as incremental checkpoints do.
				commit(t, s, id, id-1, "000101.sst")
			}
			removed, err := s.Prune(tc.keep, func(id int64) bool { return slices.Contains(tc.protect, id) })
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(removed, tc.wantRemoved) {
				t.Errorf("removed %v, want %v", removed, tc.wantRemoved)
			}
			if left := assertRestorable(t, dir); !slices.Equal(left, tc.wantLeft) {
				t.Errorf("left %v, want %v", left, tc.wantLeft)
			}
			if got := len(entries(t, dir)); got != len(tc.wantLeft) {
				t.Errorf("store holds %v", entries(t, dir))
			}
		})
	}

	t.Run("keep 0", func(t *testing.T) {
		s := openStore(t, t.TempDir())
		commit(t, s, 1, 0)
		if _, err := s.Prune(0, nil); err == nil {
			t.Fatal("Prune(0) succeeded")
		}
		if got := completed(t, s); !slices.Equal(got, []int64{1}) {
			t.Errorf("Completed = %v", got)
		}
	})

	t.Run("broken", func(t *testing.T) {
		dir := t.TempDir()
		s := openStore(t, dir)
		commit(t, s, 10, 0)
		for _, name := range []string{"chk-1.broken", "chk-2.broken", "chk-2.broken.1", "chk-3.broken", "chk-9.broken", "chk-2.broken.x"} {
			if err := os.MkdirAll(filepath.Join(dir, name, keyedTask), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Prune(1, nil); err != nil {
			t.Fatal(err)
		}
		want := []string{"chk-10", "chk-2.broken.1", "chk-2.broken.x", "chk-3.broken", "chk-9.broken"}
		if got := entries(t, dir); !slices.Equal(got, want) {
			t.Errorf("left %v, want %v", got, want)
		}
	})
}

func TestPublished(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	prepare(t, s, 1, 0)
	if err := s.MarkPublished(1); err == nil {
		t.Error("MarkPublished of an incomplete checkpoint succeeded")
	}
	commit(t, s, 2, 0)
	if s.Published(2) {
		t.Error("Published before MarkPublished")
	}
	if err := s.MarkPublished(2); err != nil {
		t.Fatal(err)
	}
	if !openStore(t, dir).Published(2) {
		t.Error("not Published after MarkPublished and reopen")
	}
	if err := s.MarkPublished(2); err != nil {
		t.Errorf("second MarkPublished: %v", err)
	}
	assertRestorable(t, dir)
}

func TestMarkBroken(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	for _, want := range []string{"chk-1.broken", "chk-1.broken.1"} {
		commit(t, s, 1, 0)
		got, err := s.MarkBroken(1, errors.New("test"))
		if err != nil {
			t.Fatal(err)
		}
		if got != filepath.Join(dir, want) {
			t.Errorf("MarkBroken = %s, want %s", got, want)
		}
	}
	if got := completed(t, s); len(got) != 0 {
		t.Errorf("Completed = %v", got)
	}
	if got := entries(t, dir); !slices.Equal(got, []string{"chk-1.broken", "chk-1.broken.1"}) {
		t.Errorf("store holds %v", got)
	}
}

func TestParseNames(t *testing.T) {
	for _, tc := range []struct {
		name   string
		id     int64
		ok     bool
		bid, n int64
		broken bool
	}{
		{name: "chk-1", id: 1, ok: true},
		{name: "chk-9223372036854775807", id: 1<<63 - 1, ok: true},
		{name: "chk-0"},
		{name: "chk-01"},
		{name: "chk--1"},
		{name: "chk-+1"},
		{name: "chk-"},
		{name: "chk-1.tmp"},
		{name: "chk-1.broken", bid: 1, broken: true},
		{name: "chk-12.broken.3", bid: 12, n: 3, broken: true},
		{name: "chk-1.broken.0"},
		{name: "chk-1.broken.x"},
		{name: "chk-1.brokenx"},
		{name: "foo.broken"},
	} {
		id, ok := parseCheckpointDir(tc.name)
		if id != tc.id || ok != tc.ok {
			t.Errorf("parseCheckpointDir(%q) = %d, %v", tc.name, id, ok)
		}
		bid, n, broken := parseBroken(tc.name)
		if bid != tc.bid && broken || n != tc.n || broken != tc.broken {
			t.Errorf("parseBroken(%q) = %d, %d, %v", tc.name, bid, n, broken)
		}
	}
}

func TestPublishedPerSink(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Published
		bad  bool
	}{
		{in: "published 2026-01-01T00:00:00Z\n", want: Published{All: true}},
		{in: "sink \"a\"\n", want: Published{Sinks: []string{"a"}}},
		{in: "sink \"a\"\nsink \"b c\"\ncomplete\n", want: Published{All: true, Sinks: []string{"a", "b c"}}},
		{in: "", want: Published{}},
		{in: "sink a\n", bad: true},
		{in: "what\n", bad: true},
	} {
		got, err := ParsePublished([]byte(tc.in))
		if (err != nil) != tc.bad || (!tc.bad && (got.All != tc.want.All || !slices.Equal(got.Sinks, tc.want.Sinks))) {
			t.Errorf("ParsePublished(%q) = %+v, %v; want %+v, bad %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}
