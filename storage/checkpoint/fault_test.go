package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// TestFaults runs each operation with its i-th file-system operation
// failing, for i = 0, 1, 2, ... until it runs without a fault. After each
// failure the store is reopened, as after a crash, and every checkpoint it
// lists as completed must load and pass full verification: a checkpoint
// either does not exist or can be restored.
func TestFaults(t *testing.T) {
	state := []byte(`{"watermark":1}`)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, s *Store)
		op    func(s *Store) error
		// check runs after op; ok says whether op ran without a fault.
		check func(t *testing.T, dir string, ok bool)
		// absorbs: op may succeed despite a fault, because the fault hit
		// a file it did not need (Verify stops at the first bad file).
		absorbs bool
	}{
		{
			name:  "Commit the first checkpoint",
			setup: func(t *testing.T, s *Store) { prepare(t, s, 1, 0) },
			op:    func(s *Store) error { return s.Commit(loadPrepared(s, 1)) },
			check: func(t *testing.T, dir string, ok bool) {
				wantIDs(t, dir, ok, []int64{1}, []int64{})
			},
		},
		{
			name: "Commit an incremental checkpoint",
			setup: func(t *testing.T, s *Store) {
				commit(t, s, 1, 0)
				prepare(t, s, 2, 1, "000101.sst")
			},
			op: func(s *Store) error { return s.Commit(loadPrepared(s, 2)) },
			check: func(t *testing.T, dir string, ok bool) {
				wantIDs(t, dir, ok, []int64{1, 2}, []int64{1})
			},
		},
		{
			name: "Abort a completed checkpoint",
			setup: func(t *testing.T, s *Store) {
				commit(t, s, 1, 0)
				commit(t, s, 2, 1, "000101.sst")
			},
			op: func(s *Store) error { return s.Abort(2) },
			check: func(t *testing.T, dir string, ok bool) {
				wantIDs(t, dir, ok, []int64{1}, []int64{1, 2})
			},
		},
		{
			name: "Prune",
			setup: func(t *testing.T, s *Store) {
				commit(t, s, 1, 0)
				commit(t, s, 2, 1, "000101.sst")
				commit(t, s, 3, 2, "000101.sst", "000102.sst")
			},
			op: func(s *Store) error { _, err := s.Prune(1, nil); return err },
			check: func(t *testing.T, dir string, ok bool) {
				wantIDs(t, dir, ok, []int64{3}, []int64{2, 3}, []int64{1, 2, 3})
			},
		},
		{
			name:  "MarkPublished",
			setup: func(t *testing.T, s *Store) { commit(t, s, 1, 0) },
			op:    func(s *Store) error { return s.MarkPublished(1) },
			check: func(t *testing.T, dir string, ok bool) {
				wantIDs(t, dir, ok, []int64{1}, []int64{1})
				if ok && !openStore(t, dir).Published(1) {
					t.Error("not published")
				}
			},
		},
		{
			name:  "WriteTaskState",
			setup: func(t *testing.T, s *Store) { s.Begin(1) },
			op: func(s *Store) error {
				_, err := WriteTaskState(s.fs, s.TaskDir(1, keyedTask), state)
				return err
			},
			check: func(t *testing.T, dir string, ok bool) {
				checkTaskState(t, filepath.Join(dir, "chk-1", keyedTask), state, ok)
			},
		},
		{
			name: "Latest moving a damaged checkpoint aside",
			setup: func(t *testing.T, s *Store) {
				commit(t, s, 1, 0)
				commit(t, s, 2, 1, "000101.sst")
				flipByte(t, filepath.Join(s.CheckpointDir(2), keyedTask, "CURRENT"), 0)
			},
			op: func(s *Store) error {
				md, _, err := s.Latest(false)
				if err == nil && (md == nil || md.ID != 1) {
					return fmt.Errorf("Latest = %+v, want chk-1", md)
				}
				return err
			},
			check:   checkLatestFault,
			absorbs: true,
		},
		{
			name: "Open",
			setup: func(t *testing.T, s *Store) {
				commit(t, s, 1, 0)
				prepare(t, s, 2, 1, "000101.sst")
				os.WriteFile(filepath.Join(s.CheckpointDir(1), MetadataFile+".tmp"), nil, 0o644)
			},
			op: func(s *Store) error { _, err := Open(s.Dir(), s.fs, nil); return err },
			check: func(t *testing.T, dir string, ok bool) {
				wantIDs(t, dir, ok, []int64{1}, []int64{1})
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; ; i++ {
				if i > 1000 {
					t.Fatal("still failing after 1000 operations")
				}
				dir := t.TempDir()
				s := openStore(t, dir)
				tc.setup(t, s)
				efs := fileutil.NewErrorFS(fileutil.OSFS{}, i)
				s.fs = efs
				err := tc.op(s)
				injected := efs.Injected()
				switch {
				case !injected && err != nil:
					t.Fatalf("no fault injected, got %v", err)
				case injected && err == nil && !tc.absorbs:
					t.Fatalf("fault %d injected, but the operation reported success", i)
				case injected && err != nil && !errors.Is(err, fileutil.ErrInjected):
					t.Errorf("fault %d: error %v does not wrap the injected error", i, err)
				}
				tc.check(t, dir, !injected)
				if !injected {
					t.Logf("%d file-system operations, each failed once", i)
					return
				}
			}
		})
	}
}

// loadPrepared rebuilds the metadata prepare returned, from the files in
// the directory (the op closures have no access to the setup's result).
func loadPrepared(s *Store, id int64) *Metadata {
	md := &Metadata{ID: id, Job: "appliance-1", Mode: "exactly_once", Parallelism: 1, MaxParallelism: 128, Tasks: map[string]TaskState{}}
	c := &ChecksumCache{} // reads through the OS, not the faulty FS
	for _, task := range []string{keyedTask, sourceTask} {
		files, err := c.Files(s.TaskDir(id, task))
		if err != nil {
			panic(err)
		}
		ts := TaskState{Stage: task, Kind: KindNative, Files: files}
		for _, f := range files {
			ts.StateSize += f.Size
		}
		md.Tasks[task] = ts
	}
	return md
}

// wantIDs reopens the store in dir with the OS file system, as after a
// crash, checks that every completed checkpoint is restorable, and that
// they are afterOK if the operation succeeded, one of afterFault or
// afterOK otherwise.
func wantIDs(t *testing.T, dir string, ok bool, afterOK []int64, afterFault ...[]int64) {
	t.Helper()
	ids := assertRestorable(t, dir)
	if ok {
		if !slices.Equal(ids, afterOK) {
			t.Fatalf("completed %v, want %v", ids, afterOK)
		}
		return
	}
	for _, want := range append(afterFault, afterOK) {
		if slices.Equal(ids, want) {
			return
		}
	}
	t.Fatalf("completed %v after a fault, want one of %v or %v", ids, afterFault, afterOK)
}

// checkTaskState: after a fault the task state file is either absent or
// whole; after success it is whole. (Not reopened: Open would remove the
// incomplete checkpoint.)
func checkTaskState(t *testing.T, dir string, want []byte, ok bool) {
	t.Helper()
	got, err := ReadTaskState(filepath.Join(dir, TaskStateFile))
	switch {
	case err == nil && !bytes.Equal(got, want):
		t.Fatalf("task state %q, want %q", got, want)
	case err != nil && (ok || !errors.Is(err, os.ErrNotExist)):
		t.Fatalf("task state: %v", err)
	}
}

// checkLatestFault: whatever failed, chk-1 is intact, listed and never
// quarantined, and chk-2 (damaged) is either still listed or moved aside
// as a whole.
func checkLatestFault(t *testing.T, dir string, ok bool) {
	t.Helper()
	s := openStore(t, dir)
	ids := completed(t, s)
	if !slices.Equal(ids, []int64{1}) && !(slices.Equal(ids, []int64{1, 2}) && !ok) {
		t.Fatalf("completed %v", ids)
	}
	if _, err := os.Stat(filepath.Join(dir, "chk-1.broken")); err == nil {
		t.Fatal("chk-1 was quarantined because of an I/O error")
	}
	if len(ids) == 1 {
		if _, err := os.Stat(filepath.Join(dir, "chk-2.broken", MetadataFile)); err != nil {
			t.Fatalf("chk-2 neither listed nor moved aside whole: %v", err)
		}
	}
	md, _, err := s.Latest(false)
	if err != nil || md == nil || md.ID != 1 {
		t.Fatalf("Latest after the fault = %+v, %v", md, err)
	}
}
