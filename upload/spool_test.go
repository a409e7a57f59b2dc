package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline/sink"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
)

// putCounter counts the Puts per key.
type putCounter struct {
	Store
	mu   sync.Mutex
	puts map[string]int
}

func (p *putCounter) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	p.mu.Lock()
	p.puts[key]++
	p.mu.Unlock()
	return p.Store.Put(ctx, key, r, size)
}

func (p *putCounter) spoolPuts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, n := range p.puts {
		if strings.Contains(k, "/"+spoolDir+"/") {
			out[k] = n
		}
	}
	return out
}

// spoolOutputs appends epochs from..to, n outputs each, and a mark per
// epoch, and returns what it appended.
func spoolOutputs(t *testing.T, sp *sink.Spool, from, to int64, n int) []sink.Output {
	t.Helper()
	var all []sink.Output
	for e := from; e <= to; e++ {
		var outs []sink.Output
		for i := range n {
			outs = append(outs, sink.Output{Topic: "results", ID: fmt.Sprintf("r-%d-%d", e, i),
				Payload: []byte(fmt.Sprintf(`{"epoch":%d,"i":%d,"pad":"%s"}`, e, i, strings.Repeat("x", 40)))})
		}
		if err := sp.Append(e, []sink.Epoch{{ID: e, Outputs: outs}}); err != nil {
			t.Fatal(err)
		}
		all = append(all, outs...)
	}
	return all
}

// spoolRig opens the spool of sink "cloud" in data dir dir (closed when
// the test ends) and a local checkpoint store whose checkpoints record it,
// their ids above the spool's marks as in a job.
func spoolRig(t *testing.T, dir string) (*sink.Spool, *local) {
	t.Helper()
	sp, _, err := sink.OpenSpool(sink.SpoolOptions{Dir: datadir.New(dir).Spool("cloud"), MaxSize: 1 << 30, SegmentSize: 1024}, -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	l := newLocal(t)
	l.id = 100
	l.addSST("w-0", 1000)
	l.spools = func() map[string]checkpoint.SpoolState { return map[string]checkpoint.SpoolState{"cloud": sp.State()} }
	return sp, l
}

// TestSpoolUploadAndRestore: the uploader ships, with each checkpoint, the
// part of a sink's spool the sink had not confirmed, sealed segments once;
// a download into a wiped data dir rebuilds the spool so that, opened for
// the restored checkpoint, it publishes exactly the unconfirmed output.
func TestSpoolUploadAndRestore(t *testing.T) {
	dir := t.TempDir()
	sp, l := spoolRig(t, dir)
	ps := &putCounter{Store: NewMemStore(), puts: map[string]int{}}
	u := newUploader(t, ps, l, dir, nil)
	u.Start()

	outs := spoolOutputs(t, sp, 1, 6, 4)
	// The sink confirms the first two checkpoints.
	b, err := sp.Read(1)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := sp.Read(1)
	if err != nil || b2.UpTo != 1 {
		t.Fatalf("read %+v, %v", b2, err)
	}
	if err := sp.Confirm(b); err != nil {
		t.Fatal(err)
	}
	b, err = sp.Read(1)
	if err != nil || b.UpTo != 2 {
		t.Fatalf("read %+v, %v", b, err)
	}
	if err := sp.Confirm(b); err != nil {
		t.Fatal(err)
	}
	confirmed := 8          // outputs of checkpoints 1 and 2
	u.Offer(l.checkpoint()) // 101
	waitRemote(t, u, 101)
	first := ps.spoolPuts()
	if len(first) < 2 {
		t.Fatalf("spool objects sent: %v, want several segments", first)
	}

	more := spoolOutputs(t, sp, 7, 12, 4)
	md := l.checkpoint() // 102
	u.Offer(md)
	waitRemote(t, u, 102)
	second := ps.spoolPuts()
	for k, n := range second {
		if n > 1 {
			t.Errorf("spool object %s sent %d times", k, n)
		}
	}
	reused := 0
	m := readManifestT(t, ps, 102)
	for _, seg := range m.Spools[0].Segments {
		if first["box-1/"+seg.Key] == 1 {
			reused++
		}
	}
	if len(second) <= len(first) {
		t.Fatalf("checkpoint 2 sent no spool objects: %v", second)
	}
	if reused == 0 {
		t.Errorf("checkpoint 102 reuses no sealed segment of checkpoint 101: %v then %v", first, second)
	}
	t.Logf("spool objects: %d for checkpoint 101, %d more for checkpoint 102", len(first), len(second)-len(first))

	// Retention (2 retained) keeps exactly the spool objects 101 and 102
	// reference, after a 103 that needs no segment of 101's active prefix.
	u.Offer(l.checkpoint()) // 103: the same spool as 102
	waitRemote(t, u, 103)
	refs := map[string]bool{}
	for _, id := range []int64{102, 103} {
		for _, k := range readManifestT(t, ps, id).Keys() {
			refs[k] = true
		}
	}
	for k := range keys(t, ps) {
		if strings.HasPrefix(k, spoolDir+"/") && !refs[k] {
			t.Errorf("spool object %s is kept, but no retained checkpoint references it", k)
		}
		delete(refs, k)
	}
	for k := range refs {
		if strings.HasPrefix(k, spoolDir+"/") {
			t.Errorf("spool object %s is referenced by a retained checkpoint, but gone", k)
		}
	}

	// A new box: nothing but the remote.
	dir2 := t.TempDir()
	dd2 := datadir.New(dir2)
	l2, err := checkpoint.Open(filepath.Join(dir2, "checkpoints"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Download(t.Context(), ps, "box-1", 102, l2, DownloadOptions{DataDir: dd2, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != 102 || got.Spools["cloud"] != md.Spools["cloud"] {
		t.Fatalf("downloaded %d with spools %+v, want 102 with %+v", got.ID, got.Spools, md.Spools)
	}
	rs, dedupe, err := sink.OpenSpool(sink.SpoolOptions{Dir: dd2.Spool("cloud"), MaxSize: 1 << 30, SegmentSize: 1024}, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if want := md.Spools["cloud"].End.Epoch; dedupe != min(got.ID, want) {
		t.Errorf("dedupe %d, want %d", dedupe, min(got.ID, want))
	}
	var pub []sink.Output
	for {
		b, err := rs.Read(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		if b.UpTo < 0 {
			break
		}
		pub = append(pub, b.Outputs...)
		if err := rs.Confirm(b); err != nil {
			t.Fatal(err)
		}
	}
	want := append(outs[confirmed:], more...)
	if len(pub) != len(want) {
		t.Fatalf("restored spool publishes %d outputs, want %d", len(pub), len(want))
	}
	for i := range want {
		if pub[i].ID != want[i].ID || string(pub[i].Payload) != string(want[i].Payload) {
			t.Fatalf("output %d: %s, want %s", i, pub[i].ID, want[i].ID)
		}
	}
}

func readManifestT(t *testing.T, s Store, id int64) *Manifest {
	t.Helper()
	m, err := readManifest(t.Context(), s, Layout{"box-1"}, id, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDecodeManifestSpools: a manifest whose spools do not match its
// checkpoint is refused.
func TestDecodeManifestSpools(t *testing.T) {
	md := &checkpoint.Metadata{Version: 1, ID: 5, Tasks: map[string]checkpoint.TaskState{},
		Spools: map[string]checkpoint.SpoolState{"cloud": {Confirmed: checkpoint.SpoolPos{Offset: 3, Epoch: 2}, End: checkpoint.SpoolPos{Offset: 9, Epoch: 4}}}}
	seg := SpoolSegment{Base: 0, Size: 100, CRC32C: 7, Key: SpoolRel("cloud", 0, 100, 7)}
	good := ManifestSpool{Sink: "cloud", Confirmed: md.Spools["cloud"].Confirmed, End: md.Spools["cloud"].End, Segments: []SpoolSegment{seg}}
	for _, c := range []struct {
		name   string
		spools []ManifestSpool
		ok     bool
	}{
		{"good", []ManifestSpool{good}, true},
		{"missing", nil, false},
		{"unknown sink", []ManifestSpool{good, {Sink: "other"}}, false},
		{"other end", []ManifestSpool{func() ManifestSpool { g := good; g.End.Offset = 8; return g }()}, false},
		{"no segments", []ManifestSpool{func() ManifestSpool { g := good; g.Segments = nil; return g }()}, false},
		{"bad key", []ManifestSpool{func() ManifestSpool {
			g := good
			g.Segments = []SpoolSegment{{Base: 0, Size: 100, CRC32C: 8, Key: seg.Key}}
			return g
		}()}, false},
		{"first segment after confirmed", []ManifestSpool{func() ManifestSpool {
			g := good
			g.Segments = []SpoolSegment{{Base: 4, Size: 100, CRC32C: 7, Key: SpoolRel("cloud", 4, 100, 7)}}
			return g
		}()}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			data, err := EncodeManifest(&Manifest{Version: ManifestVersion, Appliance: "a", Checkpoint: md, Spools: c.spools})
			if err != nil {
				t.Fatal(err)
			}
			_, err = DecodeManifest(data)
			if (err == nil) != c.ok {
				t.Fatalf("decode: %v, want ok %v", err, c.ok)
			}
		})
	}
}

// failGets fails every Get of a key containing match while armed.
type failGets struct {
	Store
	match string
	armed atomic.Bool
	gets  atomic.Int64
}

func (f *failGets) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if strings.Contains(key, f.match) {
		if f.armed.Load() {
			return nil, ErrNotConnected
		}
		f.gets.Add(1)
	}
	return f.Store.Get(ctx, key)
}

// TestSpoolDownloadResumes: a download cut short while fetching the spool
// leaves no spool in place and no local checkpoint; the next attempt
// completes it, and a spool that is there already is kept.
func TestSpoolDownloadResumes(t *testing.T) {
	dir := t.TempDir()
	sp, l := spoolRig(t, dir)
	outs := spoolOutputs(t, sp, 1, 8, 4)
	mem := NewMemStore()
	u := newUploader(t, mem, l, dir, nil)
	u.Start()
	md := l.checkpoint()
	u.Offer(md)
	waitRemote(t, u, md.ID)

	dir2 := t.TempDir()
	dd2 := datadir.New(dir2)
	l2, err := checkpoint.Open(filepath.Join(dir2, "checkpoints"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fg := &failGets{Store: mem, match: "/" + spoolDir + "/"}
	fg.armed.Store(true)
	o := DownloadOptions{DataDir: dd2, Logger: testLogger(t)}
	if _, err := Download(t.Context(), fg, "box-1", md.ID, l2, o); err == nil {
		t.Fatal("download succeeded while the spool objects could not be read")
	}
	if ids, _ := l2.Completed(); len(ids) != 0 {
		t.Fatalf("local checkpoints %v after a failed spool download", ids)
	}
	if _, err := os.Stat(dd2.Spool("cloud")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("spool directory in place after a failed download: %v", err)
	}
	fg.armed.Store(false)
	if _, err := Download(t.Context(), fg, "box-1", md.ID, l2, o); err != nil {
		t.Fatal(err)
	}
	rs, _, err := sink.OpenSpool(sink.SpoolOptions{Dir: dd2.Spool("cloud"), MaxSize: 1 << 30, SegmentSize: 1024}, md.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := rs.Read(1 << 20)
	rs.Close()
	if err != nil || len(b.Outputs) != len(outs) {
		t.Fatalf("restored spool: %d outputs, %v; want %d", len(b.Outputs), err, len(outs))
	}
	// Again (eddy restore onto this data dir): the spool there is kept.
	if err := l2.Abort(md.ID); err != nil {
		t.Fatal(err)
	}
	n := fg.gets.Load()
	if _, err := Download(t.Context(), fg, "box-1", md.ID, l2, o); err != nil {
		t.Fatal(err)
	}
	if fg.gets.Load() != n {
		t.Errorf("a spool already in place was fetched again")
	}
}
