package upload

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/savepoint"
)

// localSavepoint commits savepoint name in a new store: a source task with
// its task state file and a keyed task with a task state file and two
// files of random bytes.
func localSavepoint(t *testing.T, name string) (*savepoint.Store, *savepoint.Metadata) {
	t.Helper()
	src := t.TempDir()
	mkTask := func(dir string, extra ...string) checkpoint.TaskState {
		f, err := checkpoint.WriteTaskState(nil, dir, []byte(`{"watermark":5}`))
		if err != nil {
			t.Fatal(err)
		}
		ts := checkpoint.TaskState{Kind: checkpoint.KindNone, Files: []checkpoint.File{f}}
		for i, n := range extra {
			data := make([]byte, 1000+i*5000)
			for j := range data {
				data[j] = byte(rand.IntN(256))
			}
			if err := os.WriteFile(filepath.Join(dir, n), data, 0o644); err != nil {
				t.Fatal(err)
			}
			ts.Files = append(ts.Files, checkpoint.File{Name: n, Size: int64(len(data)), CRC32C: crc32.Checksum(data, castagnoli)})
		}
		for _, f := range ts.Files {
			ts.StateSize += f.Size
		}
		return ts
	}
	tasks := map[string]checkpoint.TaskState{}
	for task, extra := range map[string][]string{"source-readings": nil, "per_device-0": {"000009.sst", "000012.sst"}} {
		dir := filepath.Join(src, task)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		tasks[task] = mkTask(dir, extra...)
	}
	st := savepoint.Open(filepath.Join(t.TempDir(), "savepoints"), nil)
	if err := st.Begin(name); err != nil {
		t.Fatal(err)
	}
	for task, ts := range tasks {
		if err := st.CopyTask(name, task, filepath.Join(src, task), ts); err != nil {
			t.Fatal(err)
		}
	}
	md := &savepoint.Metadata{Name: name, Job: "j", CheckpointID: 7, Parallelism: 1, MaxParallelism: 8, Mode: "exactly_once",
		Sources: map[string]checkpoint.SourceState{"readings": {Offset: 42}},
		Stages:  []savepoint.Stage{{UID: "per_device", Keyed: true, Parallelism: 1, MaxParallelism: 8}},
		Tasks:   tasks}
	if err := st.Commit(md); err != nil {
		t.Fatal(err)
	}
	return st, md
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// A savepoint uploaded by one box is downloaded by another, checked file
// by file; an interrupted download resumes with what it has; a damaged
// object is never committed; a missing savepoint is ErrNotFound.
func TestDownloadSavepoint(t *testing.T) {
	ctx := context.Background()
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			l := Layout{Appliance: "box-1"}
			src, md := localSavepoint(t, "before-upgrade")
			if err := UploadSavepoint(ctx, be.store, l, src.Dir(md.Name), md); err != nil {
				t.Fatal(err)
			}
			dst := savepoint.Open(filepath.Join(t.TempDir(), "savepoints"), nil)
			if _, err := DownloadSavepoint(ctx, be.store, l, "nope", dst, nil); !errors.Is(err, ErrNotFound) {
				t.Errorf("download of a missing savepoint: %v, want ErrNotFound", err)
			}

			// Interrupted at the second keyed file: nothing committed.
			fg := &failGets{Store: be.store, match: "/000012.sst"}
			fg.armed.Store(true)
			if _, err := DownloadSavepoint(ctx, fg, l, md.Name, dst, nil); !errors.Is(err, ErrNotConnected) {
				t.Fatalf("interrupted download: %v, want ErrNotConnected", err)
			}
			if _, err := savepoint.Load(dst.Dir(md.Name)); err == nil {
				t.Fatal("an interrupted download left a committed savepoint")
			}
			// Resumed: the file already fetched is kept, not fetched again.
			have := filepath.Join(dst.Dir(md.Name), "per_device-0", "000009.sst")
			ino := inode(t, have)
			fg.armed.Store(false)
			got, err := DownloadSavepoint(ctx, fg, l, md.Name, dst, nil)
			if err != nil {
				t.Fatal(err)
			}
			if inode(t, have) != ino || fg.gets.Load() != 1 {
				t.Errorf("resumed download: 000009.sst rewritten %v, 000012.sst fetched %d times, want kept and once",
					inode(t, have) != ino, fg.gets.Load())
			}
			if err := savepoint.Verify(dst.Dir(md.Name), got); err != nil {
				t.Fatal(err)
			}
			if got.CheckpointID != md.CheckpointID || len(got.Tasks) != 2 {
				t.Errorf("downloaded %+v, want %+v", got, md)
			}
			// Complete locally: not fetched again.
			if _, err := DownloadSavepoint(ctx, fg, l, md.Name, dst, nil); err != nil || fg.gets.Load() != 1 || inode(t, have) != ino {
				t.Errorf("second download: %v, fetched again %v", err, fg.gets.Load() != 1 || inode(t, have) != ino)
			}

			// A damaged object (same size, one byte flipped).
			key := l.Key(SavepointRel(md.Name) + "per_device-0/000009.sst")
			rc, err := be.store.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(rc)
			rc.Close()
			data[len(data)/2] ^= 0xff
			if err := be.store.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			dst2 := savepoint.Open(filepath.Join(t.TempDir(), "savepoints"), nil)
			if _, err := DownloadSavepoint(ctx, be.store, l, md.Name, dst2, nil); !errors.Is(err, ErrRemoteCorrupt) || !strings.Contains(err.Error(), "000009.sst") {
				t.Errorf("download of a damaged savepoint: %v, want ErrRemoteCorrupt naming 000009.sst", err)
			}
			if _, err := savepoint.Load(dst2.Dir(md.Name)); err == nil {
				t.Error("a damaged download was committed")
			}
			if _, err := os.Stat(filepath.Join(dst2.Dir(md.Name), "per_device-0", "000009.sst")); !os.IsNotExist(err) {
				t.Errorf("the damaged file was written: %v", err)
			}
		})
	}
}
