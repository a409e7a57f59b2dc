package upload

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/storage/checkpoint"
)

// flakyStore is a Store that does not answer its first downs Lists, and
// whose object Gets (not _metadata) fail after getsLeft of them, when
// getsLeft ≥ 0. It counts Lists and object Gets.
type flakyStore struct {
	Store
	mu       sync.Mutex
	downs    int
	getsLeft int
	lists    int
	gets     int
}

func (f *flakyStore) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	f.mu.Lock()
	f.lists++
	down := f.downs > 0
	if down {
		f.downs--
	}
	f.mu.Unlock()
	if down {
		return nil, ErrNotConnected
	}
	return f.Store.List(ctx, prefix)
}

func (f *flakyStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if !strings.HasSuffix(key, "/_metadata") {
		f.mu.Lock()
		f.gets++
		fail := f.getsLeft == 0
		if f.getsLeft > 0 {
			f.getsLeft--
		}
		f.mu.Unlock()
		if fail {
			return nil, ErrNotConnected
		}
	}
	return f.Store.Get(ctx, key)
}

func (f *flakyStore) counts() (lists, gets int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists, f.gets
}

// fakeClock is the retries' clock: sleeping moves it on at once.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) bool {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return ctx.Err() == nil
}

func withFakeClock(r *Recovery) *fakeClock {
	c := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	r.now, r.sleep = c.Now, c.Sleep
	return c
}

// TestRecoverWaitsForRemote: with upload.restore wait, a start without a
// local checkpoint keeps trying a remote that does not answer, long past
// RemoteWait (50 attempts, about 12 minutes of the fake clock), and
// restores its checkpoint once it answers: never an empty start.
func TestRecoverWaitsForRemote(t *testing.T) {
	ms, md2 := uploadTwo(t)
	fs := &flakyStore{Store: ms, downs: 50, getsLeft: -1}
	r := newRecovery(t, fs)
	clock := withFakeClock(r)
	t0 := clock.Now()
	var waits int
	var lastErr error
	p, err := r.Recover(t.Context(), StartOptions{Restore: RestoreWait, Fresh: map[string]bool{"readings": true},
		OnWait: func(err error, _ time.Duration) { waits, lastErr = waits+1, err }})
	if err != nil {
		t.Fatal(err)
	}
	if p.Checkpoint == nil || p.Checkpoint.ID != md2.ID || p.Source != SourceRemote || p.Unverified {
		t.Fatalf("plan %+v; want checkpoint %d from remote", p, md2.ID)
	}
	if waited := clock.Now().Sub(t0); waits != 50 || waited <= RemoteWait || lastErr == nil {
		t.Fatalf("waited %d times (%s, last error %v); want 50, beyond %s", waits, waited, lastErr, RemoteWait)
	}
}

// TestRecoverEmptyIfUnreachable: with upload.restore empty_if_unreachable
// the same start gives up once Wait has passed and goes on from empty
// state, unverified.
func TestRecoverEmptyIfUnreachable(t *testing.T) {
	ms, _ := uploadTwo(t)
	fs := &flakyStore{Store: ms, downs: 50, getsLeft: -1}
	r := newRecovery(t, fs)
	clock := withFakeClock(r)
	t0 := clock.Now()
	p, err := r.Recover(t.Context(), StartOptions{Restore: RestoreEmptyIfUnreachable})
	if err != nil {
		t.Fatal(err)
	}
	if p.Checkpoint != nil || !p.Unverified {
		t.Fatalf("plan %+v; want empty and unverified", p)
	}
	lists, _ := fs.counts()
	if waited := clock.Now().Sub(t0); waited < RemoteWait || waited > RemoteWait+15*time.Second || lists >= 50 {
		t.Fatalf("gave up after %s and %d attempts; want just past %s", waited, lists, RemoteWait)
	}
	if ids, _ := r.Local.Completed(); len(ids) != 0 {
		t.Fatalf("local checkpoints %v after an empty start", ids)
	}
}

// TestRecoverRemoteHoldsNothing: a remote that answers it holds no
// checkpoint of the appliance means empty state at once, verified.
func TestRecoverRemoteHoldsNothing(t *testing.T) {
	r := newRecovery(t, NewMemStore())
	withFakeClock(r)
	p, err := r.Recover(t.Context(), StartOptions{Restore: RestoreWait})
	if err != nil || p.Checkpoint != nil || p.Unverified {
		t.Fatalf("plan %+v, %v; want empty, verified", p, err)
	}
}

// TestRecoverWaitStopped: a graceful stop ends the wait.
func TestRecoverWaitStopped(t *testing.T) {
	ms, _ := uploadTwo(t)
	ms.SetDown(true)
	r := newRecovery(t, ms)
	withFakeClock(r)
	ctx, cancel := context.WithCancel(t.Context())
	n := 0
	_, err := r.Recover(ctx, StartOptions{OnWait: func(error, time.Duration) {
		if n++; n == 3 {
			cancel()
		}
	}})
	if err == nil || ctx.Err() == nil {
		t.Fatalf("Recover after stop: %v", err)
	}
}

// TestDownloadResumes: a download that fails part way keeps the files it
// fetched; the next attempt fetches only the rest (counted in bytes and
// requests) and a kept file that no longer matches the _metadata is
// fetched again.
func TestDownloadResumes(t *testing.T) {
	ms, md2 := uploadTwo(t)
	clean := newRecovery(t, ms)
	var cleanBytes atomic.Int64
	clean.BytesRead = &cleanBytes
	if _, err := clean.download(t.Context(), md2.ID, nil); err != nil {
		t.Fatal(err)
	}
	cnt := &flakyStore{Store: ms, getsLeft: -1}
	if _, err := Download(t.Context(), cnt, "box-1", md2.ID, newRecovery(t, ms).Local, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	_, objects := cnt.counts()
	if objects < 3 {
		t.Fatalf("checkpoint %d has %d objects; the test needs 3 or more", md2.ID, objects)
	}

	for _, damage := range []bool{false, true} {
		t.Run(map[bool]string{false: "resume", true: "damaged"}[damage], func(t *testing.T) {
			fs := &flakyStore{Store: ms, getsLeft: 2}
			r := newRecovery(t, fs)
			r.Parallelism = 1
			var read atomic.Int64
			r.BytesRead = &read
			if _, err := r.download(t.Context(), md2.ID, nil); err == nil {
				t.Fatal("download with a failing link succeeded")
			}
			first := read.Load()
			dir := r.Local.CheckpointDir(md2.ID)
			if kept := regularFiles(t, dir); len(kept) != 2 {
				t.Fatalf("after the failed attempt %s holds %v; want the 2 files fetched", dir, kept)
			}
			if damage {
				p := regularFiles(t, dir)[0]
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)/2] ^= 0xff
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			fs.mu.Lock()
			fs.getsLeft, fs.gets = -1, 0
			fs.mu.Unlock()
			read.Store(0)
			md, err := r.download(t.Context(), md2.ID, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Local.Verify(md, true); err != nil {
				t.Fatal(err)
			}
			_, gets := fs.counts()
			second := read.Load()
			switch {
			case !damage && (gets != objects-2 || second != cleanBytes.Load()-first):
				t.Fatalf("second attempt: %d requests, %d bytes; want %d, %d", gets, second, objects-2, cleanBytes.Load()-first)
			case damage && (gets != objects-1 || second <= cleanBytes.Load()-first || second >= cleanBytes.Load()):
				t.Fatalf("second attempt with a damaged file: %d requests, %d bytes; want %d requests, more than %d bytes",
					gets, second, objects-1, cleanBytes.Load()-first)
			}
		})
	}
}

func regularFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLocalRecovery: checkpointing.local_recovery true restores the local
// checkpoint without asking the remote; false restores the remote's
// newest, unless its source offsets are below what the ingest log still
// holds: then the local one is kept, and the log says exactly why.
func TestLocalRecovery(t *testing.T) {
	ms, md2 := uploadTwo(t)
	setup := func(t *testing.T) (*Recovery, *flakyStore, *checkpoint.Metadata, *bytes.Buffer) {
		fs := &flakyStore{Store: ms, getsLeft: -1}
		r := newRecovery(t, fs)
		var buf bytes.Buffer
		r.Logger = slog.New(slog.NewTextHandler(&buf, nil))
		l := &local{t: t, store: r.Local, ssts: map[string]map[string][]byte{}, next: 500, id: 4}
		l.addSST("w-0", 100)
		return r, fs, l.checkpoint(), &buf
	}
	t.Run("true", func(t *testing.T) {
		r, fs, md5, _ := setup(t)
		p, err := r.Recover(t.Context(), StartOptions{Local: md5, LocalRecovery: true, LogStart: map[string]uint64{"readings": 0}})
		if err != nil || p.Checkpoint != md5 || p.Source != SourceLocal {
			t.Fatalf("plan %+v, %v; want local checkpoint 5", p, err)
		}
		if lists, _ := fs.counts(); lists != 0 {
			t.Fatalf("the remote was asked %d times", lists)
		}
	})
	t.Run("false", func(t *testing.T) {
		r, _, md5, _ := setup(t)
		p, err := r.Recover(t.Context(), StartOptions{Local: md5, LocalRecovery: false, LogStart: map[string]uint64{"readings": 150}})
		if err != nil || p.Checkpoint == nil || p.Checkpoint.ID != md2.ID || p.Source != SourceRemote {
			t.Fatalf("plan %+v, %v; want remote checkpoint %d", p, err, md2.ID)
		}
	})
	t.Run("false/truncated", func(t *testing.T) {
		r, _, md5, buf := setup(t)
		p, err := r.Recover(t.Context(), StartOptions{Local: md5, LocalRecovery: false, LogStart: map[string]uint64{"readings": 300}})
		if err != nil || p.Checkpoint != md5 || p.Source != SourceLocal {
			t.Fatalf("plan %+v, %v; want local checkpoint 5", p, err)
		}
		want := "remote checkpoint 2 starts source readings at ingest-log offset 200, but the log was truncated and begins at 300; keeping local checkpoint 5"
		if !strings.Contains(buf.String(), `msg="`+want+`"`) {
			t.Fatalf("log lacks %q:\n%s", want, buf.String())
		}
		if ids, _ := r.Local.Completed(); len(ids) != 1 || ids[0] != 5 {
			t.Fatalf("local checkpoints %v; want [5] (nothing downloaded)", ids)
		}
	})
	t.Run("false/unreachable", func(t *testing.T) {
		r, fs, md5, _ := setup(t)
		fs.downs = 1000
		withFakeClock(r)
		p, err := r.Recover(t.Context(), StartOptions{Local: md5, LocalRecovery: false})
		if err != nil || p.Checkpoint != md5 || p.Source != SourceLocal || p.Unverified {
			t.Fatalf("plan %+v, %v; want local checkpoint 5 once the bound passed", p, err)
		}
	})
}
