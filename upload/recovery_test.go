package upload

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
)

// uploadTwo uploads two checkpoints of a fresh local store to a memory
// remote and returns the remote and the second checkpoint.
func uploadTwo(t *testing.T) (*MemStore, *checkpoint.Metadata) {
	t.Helper()
	ms := NewMemStore()
	l := newLocal(t)
	l.addSST("w-0", 10<<10)
	u := newUploader(t, ms, l, t.TempDir(), func(o *Options) { o.NumRetained = 3 })
	u.Start()
	u.Offer(l.checkpoint())
	waitRemote(t, u, 1)
	md2 := l.checkpoint()
	u.Offer(md2)
	waitRemote(t, u, 2)
	u.Close()
	return ms, md2
}

func newRecovery(t *testing.T, s Store) *Recovery {
	t.Helper()
	layout := datadir.New(t.TempDir())
	local, err := checkpoint.Open(layout.Checkpoints(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Recovery{Store: s, Appliance: "box-1", DataDir: layout, Local: local, Logger: testLogger(t)}
}

// TestRecover: a start without a local checkpoint downloads the remote's
// newest, writes the restored marker and restores it as "remote", with
// the fresh sources whose offset is above 0 as lost logs; the decision is
// kept in the marker, so the next start (now with that checkpoint local)
// reports the same, whatever is fresh then.
func TestRecover(t *testing.T) {
	ms, md2 := uploadTwo(t)
	r := newRecovery(t, ms)
	p, err := r.Recover(t.Context(), StartOptions{LocalRecovery: true, Fresh: map[string]bool{"readings": true, "other": true}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Checkpoint == nil || p.Checkpoint.ID != md2.ID || p.Source != SourceRemote || p.Downloaded <= 0 ||
		!slices.Equal(p.LostLogs, []string{"readings"}) || p.Unverified {
		t.Fatalf("plan %+v; want checkpoint %d from remote, lost log readings", p, md2.ID)
	}
	m, err := ReadRestored(nil, r.DataDir)
	if err != nil || m == nil || m.Checkpoint != md2.ID || !slices.Equal(m.LostLogs, []string{"readings"}) {
		t.Fatalf("marker %+v, %v", m, err)
	}
	local, _, err := r.Local.Latest(true)
	if err != nil || local == nil || local.ID != md2.ID {
		t.Fatalf("local store after Recover: %v, %v", local, err)
	}

	p, err = r.Recover(t.Context(), StartOptions{Local: local, LocalRecovery: true})
	if err != nil || p.Checkpoint.ID != md2.ID || p.Source != SourceRemote || p.Downloaded != 0 ||
		!slices.Equal(p.LostLogs, []string{"readings"}) {
		t.Fatalf("second start: %+v, %v", p, err)
	}

	// No remote: the local checkpoint, as the marker says.
	r.Store = nil
	if p, err = r.Recover(t.Context(), StartOptions{Local: local}); err != nil || p.Source != SourceRemote {
		t.Fatalf("start without remote: %+v, %v", p, err)
	}
}

// TestRecoverUnreachable: with the remote down, nothing local and
// upload.restore empty_if_unreachable the start goes on from empty state,
// unverified; with a local checkpoint it restores that one.
func TestRecoverUnreachable(t *testing.T) {
	ms, _ := uploadTwo(t)
	ms.SetDown(true)
	r := newRecovery(t, ms)
	p, err := r.Recover(t.Context(), StartOptions{LocalRecovery: true, Restore: RestoreEmptyIfUnreachable, Wait: 1})
	if err != nil || p.Checkpoint != nil || !p.Unverified {
		t.Fatalf("plan %+v, %v; want empty and unverified", p, err)
	}
	md := &checkpoint.Metadata{ID: 9}
	p, err = r.Recover(t.Context(), StartOptions{Local: md, Wait: 1})
	if err != nil || p.Checkpoint != md || p.Source != SourceLocal || p.Unverified {
		t.Fatalf("plan %+v, %v; want the local checkpoint", p, err)
	}
}

// TestRestore: eddy restore's work. Newer local checkpoints make it
// refuse unless discarded; it downloads the checkpoint asked for, writes
// the marker and removes the upload ledger.
func TestRestore(t *testing.T) {
	ms, md2 := uploadTwo(t)
	r := newRecovery(t, ms)
	if _, err := r.Restore(t.Context(), 7, false); err == nil || !strings.Contains(err.Error(), "holds no checkpoint 7") {
		t.Fatalf("restore of a missing checkpoint: %v", err)
	}
	// A local checkpoint newer than remote checkpoint 1.
	l := &local{t: t, store: r.Local, ssts: map[string]map[string][]byte{}, next: 500, id: 4}
	l.addSST("w-0", 100)
	l.checkpoint()
	if _, err := r.Restore(t.Context(), 1, false); err == nil || !strings.Contains(err.Error(), "--discard-newer") {
		t.Fatalf("restore under a newer local checkpoint: %v", err)
	}
	if err := os.MkdirAll(r.DataDir.Upload(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.DataDir.UploadRecord(), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := r.Restore(t.Context(), 1, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Checkpoint.ID != 1 || !slices.Equal(res.Discarded, []int64{5}) || !slices.Equal(res.Remote, []int64{1, md2.ID}) {
		t.Fatalf("result %+v", res)
	}
	if ids, _ := r.Local.Completed(); !slices.Equal(ids, []int64{1}) {
		t.Fatalf("local checkpoints %v, want [1]", ids)
	}
	if _, err := os.Stat(r.DataDir.UploadRecord()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("upload ledger after restore: %v", err)
	}
	if m, err := ReadRestored(nil, r.DataDir); err != nil || m == nil || m.Checkpoint != 1 || m.LostLogs != nil {
		t.Fatalf("marker %+v, %v", m, err)
	}
}
