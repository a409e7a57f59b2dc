package remote

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/storage/state"
	"github.com/eddy-stream/eddy/test/s3test"
	"github.com/eddy-stream/eddy/upload"
)

// rocksLocal makes real incremental checkpoints of one RocksDB instance:
// the files and sizes the uploader sees in production, compactions
// included.
type rocksLocal struct {
	b     *testing.B
	db    *state.DB
	store *checkpoint.Store
	cache checkpoint.ChecksumCache
	id    int64
	rng   *rand.Rand
	prev  map[string]bool // SSTs (name/size) of the previous checkpoint
}

const benchTask = "per_device-0"

func newRocksLocal(b *testing.B) *rocksLocal {
	b.Helper()
	dir := b.TempDir()
	db, err := state.Open(state.Options{Dir: filepath.Join(dir, "state", benchTask)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	store, err := checkpoint.Open(filepath.Join(dir, "checkpoints"), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	return &rocksLocal{b: b, db: db, store: store, rng: rand.New(rand.NewPCG(1, 2)), prev: map[string]bool{}}
}

// write puts n bytes of new state: 1 KiB incompressible values under keys
// of which a third overwrite earlier ones.
func (l *rocksLocal) write(n int) {
	l.b.Helper()
	batch := l.db.NewBatch()
	defer batch.Close()
	val := make([]byte, 1024)
	for i := 0; i < n; i += len(val) {
		for j := range val {
			val[j] = byte(l.rng.Uint32())
		}
		key := state.AppendKey(nil, uint16(l.rng.IntN(128)), fmt.Appendf(nil, "dev-%08d", l.rng.IntN(1<<20)), nil)
		batch.Put(nil, key, val)
		if batch.Len() == 512 {
			if err := l.db.Write(batch); err != nil {
				l.b.Fatal(err)
			}
			batch.Clear()
		}
	}
	if err := l.db.Write(batch); err != nil {
		l.b.Fatal(err)
	}
}

// checkpoint takes the next checkpoint and returns it with the bytes of
// SSTs new since the previous one.
func (l *rocksLocal) checkpoint() (*checkpoint.Metadata, int64) {
	l.b.Helper()
	l.id++
	if err := l.store.Begin(l.id); err != nil {
		l.b.Fatal(err)
	}
	dir := l.store.TaskDir(l.id, benchTask)
	if err := l.db.CreateCheckpoint(dir); err != nil {
		l.b.Fatal(err)
	}
	files, err := l.cache.Files(dir)
	if err != nil {
		l.b.Fatal(err)
	}
	ts := checkpoint.TaskState{Stage: "per_device", Kind: checkpoint.KindNative, KeyGroupEnd: 127, Files: files}
	var newSST int64
	cur := map[string]bool{}
	for _, f := range files {
		ts.StateSize += f.Size
		if f.SST {
			k := fmt.Sprintf("%s/%d", f.Name, f.Size)
			cur[k] = true
			if !l.prev[k] {
				newSST += f.Size
				ts.CheckpointedSize += f.Size
			}
		} else {
			ts.CheckpointedSize += f.Size
		}
	}
	l.prev = cur
	now := time.Now().UnixMilli()
	md := &checkpoint.Metadata{ID: l.id, Job: appliance, TriggerTimestamp: now, CompletedTimestamp: now,
		Mode: "exactly_once", Incremental: true, Compression: "none", Parallelism: 1, MaxParallelism: 128,
		Sources: map[string]checkpoint.SourceState{"readings": {Offset: uint64(l.id)}},
		Tasks:   map[string]checkpoint.TaskState{benchTask: ts}}
	if err := l.store.Commit(md); err != nil {
		l.b.Fatal(err)
	}
	if _, err := l.store.Prune(3, nil); err != nil {
		l.b.Fatal(err)
	}
	return md, newSST
}

func benchStore(b *testing.B) upload.Store {
	b.Helper()
	return s3Store(b, s3test.Start(b), "bench")
}

func benchUploader(b *testing.B, s upload.Store, l *rocksLocal, mod func(*upload.Options)) *upload.Uploader {
	b.Helper()
	o := upload.Options{Store: s, Appliance: appliance, Local: l.store, DataDir: datadir.New(b.TempDir()), Parallelism: 4,
		NumRetained: 2, Compression: "snappy", Probe: true, SweepInterval: -1,
		RetryInterval: 50 * time.Millisecond, MaxRetryInterval: 200 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	u, err := upload.New(o)
	if err != nil {
		b.Fatal(err)
	}
	u.Start()
	b.Cleanup(func() { u.Close() })
	return u
}

func waitUploaded(b *testing.B, u *upload.Uploader, id int64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := u.WaitRemote(ctx, id); err != nil {
		b.Fatalf("checkpoint %d not uploaded: %v (%+v)", id, err, u.Stats())
	}
}

// BenchmarkUploadPerCheckpoint: 30 incremental checkpoints of a real
// RocksDB instance, 2 MiB of new state each, uploaded to versitygw. The
// figure that matters is bytes uploaded per byte of SST new since the
// last upload (target ≤ 1.2): what the remote lacks and nothing more.
func BenchmarkUploadPerCheckpoint(b *testing.B) {
	for range b.N {
		s := benchStore(b)
		l := newRocksLocal(b)
		u := benchUploader(b, s, l, nil)
		var sent, newSST int64
		t0 := time.Now()
		const n = 30
		for range n {
			l.write(2 << 20)
			md, ns := l.checkpoint()
			u.Offer(md)
			waitUploaded(b, u, md.ID)
			sent += u.Stats().LastUploadBytes
			newSST += ns
		}
		el := time.Since(t0)
		b.ReportMetric(float64(sent)/float64(newSST), "uploaded/new-SST-byte")
		b.ReportMetric(float64(sent)/n/(1<<20), "MiB-uploaded/checkpoint")
		b.ReportMetric(float64(newSST)/n/(1<<20), "MiB-new-SST/checkpoint")
		b.ReportMetric(el.Seconds()/n, "s/checkpoint")
	}
}

// cutStore is a Store whose link the benchmark cuts.
type cutStore struct {
	upload.Store
	down atomic.Bool
}

var errCut = fmt.Errorf("link cut")

func (c *cutStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if c.down.Load() {
		return errCut
	}
	return c.Store.Put(ctx, key, r, size)
}
func (c *cutStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if c.down.Load() {
		return nil, errCut
	}
	return c.Store.Get(ctx, key)
}
func (c *cutStore) Stat(ctx context.Context, key string) (upload.ObjectInfo, error) {
	if c.down.Load() {
		return upload.ObjectInfo{}, errCut
	}
	return c.Store.Stat(ctx, key)
}
func (c *cutStore) List(ctx context.Context, prefix string) ([]upload.ObjectInfo, error) {
	if c.down.Load() {
		return nil, errCut
	}
	return c.Store.List(ctx, prefix)
}
func (c *cutStore) Delete(ctx context.Context, key string) error {
	if c.down.Load() {
		return errCut
	}
	return c.Store.Delete(ctx, key)
}

// BenchmarkCatchUpAfterOutage: the link is down while 100 checkpoints
// complete (256 KiB of new state each); the time from the link's return
// until the remote holds the newest, with the probe backoff capped at
// 200 ms (upload.retry_max_interval; the default 1 min adds up to a
// minute to detect the link).
func BenchmarkCatchUpAfterOutage(b *testing.B) {
	for range b.N {
		cs := &cutStore{Store: benchStore(b)}
		l := newRocksLocal(b)
		u := benchUploader(b, cs, l, nil)
		l.write(4 << 20)
		md, _ := l.checkpoint()
		u.Offer(md)
		waitUploaded(b, u, md.ID)
		before := u.Stats()
		cs.down.Store(true)
		var newSST int64
		for range 100 {
			l.write(256 << 10)
			var ns int64
			md, ns = l.checkpoint()
			newSST += ns
			u.Offer(md)
		}
		t0 := time.Now()
		cs.down.Store(false)
		waitUploaded(b, u, md.ID)
		el := time.Since(t0)
		after := u.Stats()
		b.ReportMetric(el.Seconds(), "s-to-catch-up")
		b.ReportMetric(float64(after.Uploads-before.Uploads), "uploads")
		b.ReportMetric(float64(after.BytesSent-before.BytesSent)/(1<<20), "MiB-sent")
		b.Logf("outage of 100 checkpoints: caught up in %v with %d upload(s), %.1f MiB sent; local SST churn over the outage %.1f MiB",
			el.Round(time.Millisecond), after.Uploads-before.Uploads, float64(after.BytesSent-before.BytesSent)/(1<<20), float64(newSST)/(1<<20))
	}
}

// BenchmarkRemoteRecovery: download (parallel, verified) of the newest
// remote checkpoint into an empty checkpoint directory, by state size.
func BenchmarkRemoteRecovery(b *testing.B) {
	for _, size := range []int{16 << 20, 64 << 20, 256 << 20} {
		b.Run(fmt.Sprintf("state=%dMiB", size>>20), func(b *testing.B) {
			s := benchStore(b)
			l := newRocksLocal(b)
			u := benchUploader(b, s, l, nil)
			l.write(size)
			md, _ := l.checkpoint()
			u.Offer(md)
			waitUploaded(b, u, md.ID)
			u.Close()
			b.ResetTimer()
			var el time.Duration
			for range b.N {
				dst, err := checkpoint.Open(filepath.Join(b.TempDir(), "checkpoints"), nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				got, err := upload.Download(context.Background(), s, appliance, upload.Latest, dst,
					upload.DownloadOptions{Parallelism: 4})
				if err != nil {
					b.Fatal(err)
				}
				el += time.Since(t0)
				if got.ID != md.ID {
					b.Fatalf("downloaded %d, want %d", got.ID, md.ID)
				}
			}
			b.SetBytes(md.StateSize())
			b.ReportMetric(el.Seconds()/float64(b.N), "s/recovery")
			b.ReportMetric(float64(md.StateSize())/(1<<20), "MiB-state")
		})
	}
}
