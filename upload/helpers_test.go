package upload

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/test/s3test"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is a Store under test with a way to cut its link.
type backend struct {
	name  string
	store Store
	cut   func(down bool)
}

// linkStore wraps a Store whose link a test can cut.
type linkStore struct {
	Store
	down atomic.Bool
}

func (l *linkStore) check() error {
	if l.down.Load() {
		return ErrNotConnected
	}
	return nil
}

func (l *linkStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := l.check(); err != nil {
		return err
	}
	return l.Store.Put(ctx, key, r, size)
}
func (l *linkStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	return l.Store.Get(ctx, key)
}
func (l *linkStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := l.check(); err != nil {
		return ObjectInfo{}, err
	}
	return l.Store.Stat(ctx, key)
}
func (l *linkStore) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	return l.Store.List(ctx, prefix)
}
func (l *linkStore) Delete(ctx context.Context, key string) error {
	if err := l.check(); err != nil {
		return err
	}
	return l.Store.Delete(ctx, key)
}

// backends returns the three stores: in memory, file:// and versitygw.
func backends(t *testing.T) []backend {
	t.Helper()
	mem := NewMemStore()
	fs, err := NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fl := &linkStore{Store: fs}
	srv := s3test.Start(t)
	s3, err := NewS3Store(S3Options{Endpoint: srv.Endpoint(), Bucket: s3test.Bucket, Prefix: "fleet/a",
		PathStyle: true, AccessKeyID: s3test.AccessKey, SecretAccessKey: s3test.SecretKey, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	return []backend{
		{"mem", mem, mem.SetDown},
		{"file", fl, fl.down.Store},
		{"s3", s3, func(down bool) {
			if down {
				srv.Stop()
			} else {
				srv.Restart()
			}
		}},
	}
}

// local is a local checkpoint store with fake task directories. SSTs are
// files of random content that, like RocksDB's, never change once
// written; non-SST files change every checkpoint.
type local struct {
	t     *testing.T
	store *checkpoint.Store
	ssts  map[string]map[string][]byte // task → name → content
	next  int
	id    int64
	cache checkpoint.ChecksumCache
	// spools, if set, gives each checkpoint's Metadata.Spools.
	spools func() map[string]checkpoint.SpoolState
}

func newLocal(t *testing.T) *local {
	t.Helper()
	s, err := checkpoint.Open(filepath.Join(t.TempDir(), "checkpoints"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &local{t: t, store: s, ssts: map[string]map[string][]byte{}, next: 10}
}

// addSST adds a new SST of size bytes to task and returns its name.
func (l *local) addSST(task string, size int) string {
	l.next++
	name := fmt.Sprintf("%06d.sst", l.next)
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(l.next), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if l.ssts[task] == nil {
		l.ssts[task] = map[string][]byte{}
	}
	l.ssts[task][name] = b
	return name
}

func (l *local) dropSST(task, name string) { delete(l.ssts[task], name) }

// checkpoint completes the next checkpoint with the current SSTs, a
// MANIFEST and an OPTIONS file per task, and returns its metadata.
func (l *local) checkpoint() *checkpoint.Metadata {
	l.t.Helper()
	l.id++
	id := l.id
	if err := l.store.Begin(id); err != nil {
		l.t.Fatal(err)
	}
	md := &checkpoint.Metadata{ID: id, Job: "test", TriggerTimestamp: time.Now().UnixMilli(), Mode: "exactly_once",
		Incremental: true, Compression: "none", Parallelism: 1, MaxParallelism: 128,
		Sources: map[string]checkpoint.SourceState{"readings": {Offset: uint64(id * 100)}},
		Tasks:   map[string]checkpoint.TaskState{}}
	for task, ssts := range l.ssts {
		dir := l.store.TaskDir(id, task)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			l.t.Fatal(err)
		}
		for name, b := range ssts {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				l.t.Fatal(err)
			}
		}
		manifest := bytes.Repeat([]byte(fmt.Sprintf("manifest of %s at %d\n", task, id)), 200)
		if err := os.WriteFile(filepath.Join(dir, "MANIFEST-000001"), manifest, 0o644); err != nil {
			l.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "OPTIONS-000003"), []byte("options"), 0o644); err != nil {
			l.t.Fatal(err)
		}
		files, err := l.cache.Files(dir)
		if err != nil {
			l.t.Fatal(err)
		}
		ts := checkpoint.TaskState{Stage: "w", Kind: checkpoint.KindNative, KeyGroupEnd: 127, Files: files}
		for _, f := range files {
			ts.StateSize += f.Size
		}
		ts.CheckpointedSize = ts.StateSize
		md.Tasks[task] = ts
	}
	if l.spools != nil {
		md.Spools = l.spools()
	}
	md.CompletedTimestamp = time.Now().UnixMilli()
	if err := l.store.Commit(md); err != nil {
		l.t.Fatal(err)
	}
	return md
}

func (l *local) sstBytes(task string, names ...string) int64 {
	var n int64
	for _, name := range names {
		n += int64(len(l.ssts[task][name]))
	}
	return n
}

func newUploader(t *testing.T, s Store, l *local, dir string, mod func(*Options)) *Uploader {
	t.Helper()
	o := Options{Store: s, Appliance: "box-1", Local: l.store, DataDir: datadir.New(dir), Parallelism: 3, NumRetained: 2,
		Probe: true, RetryInterval: 20 * time.Millisecond, MaxRetryInterval: 200 * time.Millisecond,
		OpTimeout: 5 * time.Second, SweepInterval: -1, Logger: testLogger(t)}
	if mod != nil {
		mod(&o)
	}
	u, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func waitRemote(t *testing.T, u *Uploader, id int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := u.WaitRemote(ctx, id); err != nil {
		t.Fatalf("checkpoint %d not uploaded: %v; stats %+v", id, err, u.Stats())
	}
}

// keys lists the store's keys below the appliance, relative to it.
func keys(t *testing.T, s Store) map[string]int64 {
	t.Helper()
	objs, err := s.List(t.Context(), "box-1/")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, o := range objs {
		out[o.Key[len("box-1/"):]] = o.Size
	}
	return out
}
