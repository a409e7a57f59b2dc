package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

const crashRoot = "/data/checkpoints"

// crashWrite writes path through fsys as RocksDB writes a checkpoint file:
// data fsynced, directory entry left for Commit to make durable.
func crashWrite(t *testing.T, fsys fileutil.FS, path string, data []byte) File {
	t.Helper()
	f, err := fsys.Create(path, 0o644)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(path)
	return File{Name: name, Size: int64(len(data)), CRC32C: crc32.Checksum(data, castagnoli), SST: strings.HasSuffix(name, ".sst")}
}

// crashPrepare begins checkpoint id on s and fills it like the tasks
// would: a keyed task with one new SST, copies of the SSTs named in
// shared (same content as in the checkpoint that has them), MANIFEST,
// CURRENT, OPTIONS and _task, and a source task with _task only.
func crashPrepare(t *testing.T, s *Store, id int64, shared ...string) *Metadata {
	t.Helper()
	if err := s.Begin(id); err != nil {
		t.Fatal(err)
	}
	dir := s.TaskDir(id, keyedTask)
	if err := s.fs.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var files []File
	for _, name := range append(shared, fmt.Sprintf("%06d.sst", 100+id)) {
		files = append(files, crashWrite(t, s.fs, filepath.Join(dir, name), content(name, 3000)))
	}
	seed := fmt.Sprint("chk", id)
	files = append(files,
		crashWrite(t, s.fs, filepath.Join(dir, "MANIFEST-000005"), content(seed+"manifest", 1200)),
		crashWrite(t, s.fs, filepath.Join(dir, "CURRENT"), []byte("MANIFEST-000005\n")),
		crashWrite(t, s.fs, filepath.Join(dir, "OPTIONS-000007"), content(seed+"options", 500)),
	)
	tsf, err := WriteTaskState(s.fs, dir, []byte(`{"watermark":`+fmt.Sprint(id)+`}`))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, tsf)
	src, err := WriteTaskState(s.fs, s.TaskDir(id, sourceTask), []byte(`{"offset":42}`))
	if err != nil {
		t.Fatal(err)
	}
	size := func(fs []File) (n int64) {
		for _, f := range fs {
			n += f.Size
		}
		return n
	}
	return &Metadata{
		ID: id, Job: "appliance-1", TriggerTimestamp: 1_700_000_000_000 + id, CompletedTimestamp: 1_700_000_000_500 + id,
		Mode: "exactly_once", Incremental: true, Compression: "none", Parallelism: 1, MaxParallelism: 128,
		Sources: map[string]SourceState{"readings": {Offset: uint64(1000 * id), MaxTimestamp: 1_699_999_999_000}},
		Tasks: map[string]TaskState{
			keyedTask:  {Stage: "per_device_minute", KeyGroupEnd: 127, Kind: KindNative, Files: files, StateSize: size(files), CheckpointedSize: size(files)},
			sourceTask: {Stage: "source", Kind: KindNone, Files: []File{src}, StateSize: src.Size, CheckpointedSize: src.Size},
		},
	}
}

func crashCommit(t *testing.T, s *Store, id int64, shared ...string) {
	t.Helper()
	if err := s.Commit(crashPrepare(t, s, id, shared...)); err != nil {
		t.Fatal(err)
	}
}

// crashReopen opens the store on the file system a power cut left and
// checks that every checkpoint it lists as completed loads and passes full
// verification: never a _metadata whose files are missing or damaged.
func crashReopen(t *testing.T, fsys fileutil.FS) (*Store, []int64) {
	t.Helper()
	s, err := Open(crashRoot, fsys, nil)
	if err != nil {
		t.Fatalf("reopen after the power cut: %v", err)
	}
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
	return s, ids
}

// crashIDs checks the completed checkpoints after a power cut: afterOK
// if it came after the operation returned (done), else one of before or
// afterOK, never a third state.
func crashIDs(t *testing.T, fsys fileutil.FS, done bool, afterOK []int64, before ...[]int64) *Store {
	t.Helper()
	s, ids := crashReopen(t, fsys)
	if done {
		if !slices.Equal(ids, afterOK) {
			t.Fatalf("power cut after the operation returned: completed %v, want %v", ids, afterOK)
		}
		return s
	}
	for _, want := range append(before, afterOK) {
		if slices.Equal(ids, want) {
			return s
		}
	}
	t.Fatalf("completed %v after the power cut, want one of %v or %v", ids, before, afterOK)
	return nil
}

// TestCrash runs each store operation on a CrashFS and cuts the power
// after each of its file-system operations in turn, and once more after
// it returned. The store reopened on what survived must hold the state
// from before the operation or the state after it, never a third, and
// after the operation returned it must hold the state after it.
func TestCrash(t *testing.T) {
	taskState := []byte(`{"watermark":1}`)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, s *Store)
		op    func(s *Store) error
		check func(t *testing.T, crashed fileutil.FS, done bool)
	}{
		{
			name:  "Commit the first checkpoint",
			setup: func(t *testing.T, s *Store) {},
			op: func(s *Store) error {
				// Begin and the task files are part of it: a crash
				// anywhere leaves no checkpoint or a whole one.
				return s.Commit(crashPrepare(t, s, 1))
			},
			check: func(t *testing.T, c fileutil.FS, done bool) { crashIDs(t, c, done, []int64{1}, []int64{}) },
		},
		{
			name:  "Commit an incremental checkpoint",
			setup: func(t *testing.T, s *Store) { crashCommit(t, s, 1) },
			op:    func(s *Store) error { return s.Commit(crashPrepare(t, s, 2, "000101.sst")) },
			check: func(t *testing.T, c fileutil.FS, done bool) {
				crashIDs(t, c, done, []int64{1, 2}, []int64{1})
			},
		},
		{
			name: "Abort a completed checkpoint",
			setup: func(t *testing.T, s *Store) {
				crashCommit(t, s, 1)
				crashCommit(t, s, 2, "000101.sst")
			},
			op: func(s *Store) error { return s.Abort(2) },
			check: func(t *testing.T, c fileutil.FS, done bool) {
				crashIDs(t, c, done, []int64{1}, []int64{1, 2})
			},
		},
		{
			name: "Prune",
			setup: func(t *testing.T, s *Store) {
				crashCommit(t, s, 1)
				crashCommit(t, s, 2, "000101.sst")
				crashCommit(t, s, 3, "000101.sst", "000102.sst")
			},
			op: func(s *Store) error { _, err := s.Prune(1, nil); return err },
			check: func(t *testing.T, c fileutil.FS, done bool) {
				crashIDs(t, c, done, []int64{3}, []int64{1, 2, 3}, []int64{2, 3})
			},
		},
		{
			name:  "MarkPublished",
			setup: func(t *testing.T, s *Store) { crashCommit(t, s, 1) },
			op:    func(s *Store) error { return s.MarkPublished(1) },
			check: func(t *testing.T, c fileutil.FS, done bool) {
				s := crashIDs(t, c, done, []int64{1})
				if done && !s.Published(1) {
					t.Fatal("power cut after MarkPublished returned: not published")
				}
			},
		},
		{
			name: "WriteTaskState",
			setup: func(t *testing.T, s *Store) {
				// Begin does not make chk-1 durable (Commit does): here
				// only the task state's own write is under test.
				s.Begin(1)
				if err := s.fs.SyncDir(s.Dir()); err != nil {
					t.Fatal(err)
				}
			},
			op: func(s *Store) error {
				_, err := WriteTaskState(s.fs, s.TaskDir(1, keyedTask), taskState)
				return err
			},
			check: func(t *testing.T, c fileutil.FS, done bool) {
				// Not reopened: Open would remove the incomplete checkpoint.
				got, err := ReadTaskStateFS(c, filepath.Join(crashRoot, "chk-1", keyedTask, TaskStateFile))
				switch {
				case err == nil && !bytes.Equal(got, taskState):
					t.Fatalf("task state %q, want %q", got, taskState)
				case err != nil && (done || !errors.Is(err, fs.ErrNotExist)):
					t.Fatalf("task state: %v", err)
				}
			},
		},
		{
			name: "Latest moving a damaged checkpoint aside",
			setup: func(t *testing.T, s *Store) {
				crashCommit(t, s, 1)
				crashCommit(t, s, 2, "000101.sst")
				p := filepath.Join(s.CheckpointDir(2), keyedTask, "CURRENT")
				f, err := s.fs.OpenFile(p, os.O_RDWR|os.O_TRUNC, 0)
				if err == nil {
					_, err = f.Write([]byte("MANIFEST-000009\n")) // same size, other bytes
				}
				if err == nil {
					err = errors.Join(f.Sync(), f.Close())
				}
				if err != nil {
					t.Fatal(err)
				}
			},
			op: func(s *Store) error {
				md, _, err := s.Latest(false)
				if err == nil && (md == nil || md.ID != 1) {
					return fmt.Errorf("Latest = %+v, want chk-1", md)
				}
				return err
			},
			check: func(t *testing.T, c fileutil.FS, done bool) {
				s, err := Open(crashRoot, c, nil)
				if err != nil {
					t.Fatal(err)
				}
				ids := completed(t, s)
				switch {
				case slices.Equal(ids, []int64{1}):
					if _, err := c.Stat(filepath.Join(crashRoot, "chk-2.broken", MetadataFile)); err != nil {
						t.Fatalf("chk-2 neither listed nor moved aside whole: %v", err)
					}
				case done || !slices.Equal(ids, []int64{1, 2}):
					t.Fatalf("completed %v (done %v)", ids, done)
				}
				if md, _, err := s.Latest(true); err != nil || md == nil || md.ID != 1 {
					t.Fatalf("Latest after the power cut = %+v, %v", md, err)
				}
			},
		},
		{
			name: "Open removing leftovers",
			setup: func(t *testing.T, s *Store) {
				crashCommit(t, s, 1)
				crashPrepare(t, s, 2, "000101.sst")
				crashWrite(t, s.fs, filepath.Join(s.CheckpointDir(1), MetadataFile+".tmp"), []byte("{"))
				if err := s.fs.SyncDir(s.CheckpointDir(1)); err != nil {
					t.Fatal(err)
				}
			},
			op: func(s *Store) error { _, err := Open(s.Dir(), s.fs, nil); return err },
			check: func(t *testing.T, c fileutil.FS, done bool) {
				crashIDs(t, c, done, []int64{1})
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 1; ; i++ {
				c := fileutil.NewCrashFS()
				s, err := Open(crashRoot, c, nil)
				if err != nil {
					t.Fatal(err)
				}
				tc.setup(t, s)
				c.CrashAfter(c.Ops() + i)
				if err := tc.op(s); err != nil {
					t.Fatal(err)
				}
				crashed, done := c.Crashed(), false
				if crashed == nil {
					crashed, done = c.CrashClone(), true
				}
				t.Run(fmt.Sprint("after op ", i), func(t *testing.T) { tc.check(t, crashed, done) })
				if t.Failed() {
					t.FailNow()
				}
				if done {
					t.Logf("power cut after each of %d file-system operations", i-1)
					return
				}
			}
		})
	}
}
