package remote

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/test/mqtttest"
	"github.com/eddy-stream/eddy/upload"
)

var streamStart = time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)

// TestRecoverFromRemoteAfterWipe: half a stream goes through eddy, the
// newest checkpoint reaches the remote, eddy is killed and its data dir
// wiped (the disk died). The next start (s3: eddy run finds no local
// checkpoint and downloads the newest remote one; file: `eddy restore
// --from remote:latest` first) continues from the remote checkpoint with a
// new, empty ingest log, says so, and the final results equal an
// uninterrupted run's.
func TestRecoverFromRemoteAfterWipe(t *testing.T) {
	for _, mk := range []func(*testing.T) *remote{newS3Remote, newFileRemote} {
		r := mk(t)
		t.Run(r.name, func(t *testing.T) {
			e, f, s := newRig(t, r, "  compression: snappy\n  num_retained: 2\n", simulate.Options{Devices: 30, Sites: 3, Count: 6000, Interval: 50 * time.Millisecond,
				Start: streamStart, Seed: 42, EndMarker: true})
			half := len(s.msgs) / 2

			e.startFed(f, s.msgs[:half])
			id := e.Trigger() // covers every message received
			u := e.waitRemote(id)
			if !u.LinkUp || u.Details.LagCheckpoints > 1 {
				t.Fatalf("upload status after catching up: %+v", u)
			}
			e.MustRun() // it must not have died on its own
			e.Kill()
			committed(t, r.store)
			if err := os.RemoveAll(e.DataDir); err != nil {
				t.Fatal(err)
			}

			if r.s3 == nil {
				out, err := e.Command("restore", "--from", "remote:latest", "--config", e.ConfigPath)
				if err != nil {
					t.Fatalf("eddy restore: %v\n%s", err, out)
				}
				t.Logf("eddy restore:\n%s", out)
				if !strings.Contains(out, "restored checkpoint") {
					t.Fatalf("eddy restore said:\n%s", out)
				}
			}
			e.StartReady()
			o := e.Overview()
			if o.Recovery == nil || o.Recovery.Source != "remote" || o.Recovery.Checkpoint < id {
				t.Fatalf("recovery %+v, want from remote checkpoint ≥ %d", o.Recovery, id)
			}
			if len(o.Recovery.LostLogs) != 1 || o.Recovery.LostLogs[0].Source != "readings" ||
				o.Recovery.LostLogs[0].CheckpointOffset == 0 {
				t.Fatalf("lost logs %+v, want source readings", o.Recovery.LostLogs)
			}
			if m := e.Metrics(); !strings.Contains(m, `eddy_recovery_lost_log{source="readings"} 1`) ||
				!strings.Contains(m, "eddy_recovery_from_remote 1") {
				t.Fatalf("metrics lack the lost ingest log:\n%s", grep(m, "eddy_recovery"))
			}
			var cps pipeline.CheckpointsOverview
			e.MustGet("/api/v1/checkpoints", &cps)
			f.MustSend(t, s.msgs[half:])
			want := s.want()
			e.waitResults(want)
			got, problems := e.readResults()
			compare(t, got, problems, want)
			t.Logf("%s: %d windows equal to an uninterrupted run's after recovery from remote checkpoint %d",
				r.name, len(want), o.Recovery.Checkpoint)
		})
	}
}

// TestLinkDownThenBack: the S3 server is down while ten checkpoints
// complete; the checkpoints pile up as nothing but the newest id; when it
// is back the newest is uploaded at once, the others are skipped, and the
// remote lag drops to 0.
func TestLinkDownThenBack(t *testing.T) {
	r := newS3Remote(t)
	e, f, s := newRig(t, r, "  retry_max_interval: 1s\n", simulate.Options{Devices: 20, Sites: 2, Count: 4000, Interval: 50 * time.Millisecond,
		Start: streamStart, Seed: 7, EndMarker: true})
	e.startFed(f, s.msgs[:1000])
	e.waitRemote(e.Trigger())
	before := e.upload().Details

	r.s3.Stop()
	e.WaitFor("the link to be seen down", longTimeout, func() bool { return !e.upload().LinkUp })
	downAt := e.upload().NewestCheckpoint // an upload may have committed just before the stop
	f.MustSend(t, s.msgs[1000:3000])
	// The uploader hears of a completed checkpoint just after the coordinator
	// completes it: wait on what the uploader has seen.
	e.WaitFor("ten checkpoints while down", longTimeout, func() bool { return e.upload().Details.NewestLocal >= downAt+10 })
	down := e.upload()
	if down.LinkUp || down.NewestCheckpoint != downAt || down.Details.LagCheckpoints < 10 {
		t.Fatalf("while down: %+v", down)
	}
	if down.Details.Failures-before.Failures > 30 {
		t.Fatalf("%d failed requests during a ~5 s outage: no backoff?", down.Details.Failures-before.Failures)
	}
	newest := e.LatestCompleted()

	r.s3.Restart()
	up := e.waitRemote(newest)
	if !up.LinkUp {
		t.Fatalf("after the link came back: %+v", up)
	}
	e.WaitFor("remote lag 0", longTimeout, func() bool {
		u := e.upload()
		return u.Details.LagCheckpoints == 0 && u.LagMs == 0
	})
	after := e.upload().Details
	if m := e.Metrics(); !strings.Contains(m, "eddy_upload_link_up 1") || !strings.Contains(m, "eddy_upload_bytes_sent_total") ||
		!strings.Contains(m, "eddy_upload_lag_checkpoints") || !strings.Contains(m, "eddy_upload_newest_remote_checkpoint_age_seconds") {
		t.Fatalf("upload metrics:\n%s", grep(m, "eddy_upload"))
	}
	// The outage's checkpoints were skipped, not uploaded one by one.
	var skipped, uploaded []int64
	var cps pipeline.CheckpointsOverview
	e.MustGet("/api/v1/checkpoints", &cps)
	for _, c := range cps.History {
		if c.ID > downAt && c.ID < newest && c.Status == "COMPLETED" {
			switch c.Remote {
			case upload.StatusSkipped:
				skipped = append(skipped, c.ID)
			case upload.StatusUploaded, upload.StatusExpired:
				uploaded = append(uploaded, c.ID)
			}
		}
	}
	if len(uploaded) > 0 || len(skipped) < 8 {
		t.Fatalf("checkpoints of the outage: uploaded %v, skipped %v", uploaded, skipped)
	}
	t.Logf("outage: %d checkpoints skipped, uploads %d → %d, failures %d → %d", len(skipped),
		before.Uploads, after.Uploads, before.Failures, after.Failures)
	committed(t, r.store)
}

// TestKillMidUpload: eddy is killed (-9) while uploading through a
// narrow bandwidth cap; the remote never references a missing object;
// after a restart the upload resumes from what the remote holds, and
// orphans (objects of the upload cut short, and one planted) are swept
// after upload.orphan_grace.
func TestKillMidUpload(t *testing.T) {
	for _, mk := range []func(*testing.T) *remote{newS3Remote, newFileRemote} {
		r := mk(t)
		t.Run(r.name, func(t *testing.T) { testKillMidUpload(t, r) })
	}
}

func testKillMidUpload(t *testing.T, r *remote) {
	e, f, s := newRig(t, r, "  bandwidth: 16KiB\n  orphan_grace: 2s\n  retry_max_interval: 1s\n  num_retained: 2\n", simulate.Options{Devices: 400, Sites: 4, Count: 8000, Interval: 20 * time.Millisecond,
		Start: streamStart, Seed: 9, EndMarker: true})
	e.startFed(f, s.msgs[:4000])
	var mid uploadStatus
	e.WaitFor("an upload under way with bytes sent", longTimeout, func() bool {
		mid = e.upload()
		return mid.Details.Uploading != 0 && mid.Details.BytesSent > 0 && mid.Details.Uploads >= 1
	})
	time.Sleep(300 * time.Millisecond)
	e.MustRun() // it must not have died on its own
	e.Kill()
	t.Logf("killed while uploading checkpoint %d (%d bytes sent so far, remote newest %d)",
		mid.Details.Uploading, mid.BytesSent, mid.NewestCheckpoint)
	refs := committed(t, r.store) // no dangling reference after the kill
	orphans := unreferenced(t, r.store, refs)
	t.Logf("objects left unreferenced by the kill: %v", orphans)
	planted := appliance + "/chk-999999/per_device-0/MANIFEST-000001"
	if err := r.store.Put(t.Context(), planted, strings.NewReader("orphan"), 6); err != nil {
		t.Fatal(err)
	}

	e.StartReady("EDDY_UPLOAD_BANDWIDTH=0")
	newest := e.LatestCompleted()
	e.waitRemote(newest)
	f.MustSend(t, s.msgs[4000:])
	want := s.want()
	e.waitResults(want)
	// After the grace period and a sweep, nothing unreferenced is older
	// than the grace period: the killed upload's leftovers and the planted
	// object are gone.
	e.WaitFor("the orphans to be swept", longTimeout, func() bool {
		objs := remoteObjects(t, r.store)
		if _, ok := objs[strings.TrimPrefix(planted, appliance+"/")]; ok {
			return false
		}
		for _, k := range orphans {
			if o, ok := objs[k]; ok && !referencedNow(t, r.store, k) && time.Since(o.ModTime) > 3*time.Second {
				return false
			}
		}
		return true
	})
	u := e.upload()
	if u.Details.OrphansDeleted == 0 {
		t.Fatalf("no orphan deleted: %+v", u.Details)
	}
	committed(t, r.store)
	got, problems := e.readResults()
	compare(t, got, problems, want)

	// The newest remote checkpoint downloads and verifies in full.
	dst, err := checkpoint.Open(filepath.Join(t.TempDir(), "checkpoints"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	md, err := upload.Download(t.Context(), r.store, appliance, upload.Latest, dst, upload.DownloadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.Verify(md, true); err != nil {
		t.Fatal(err)
	}
}

// unreferenced lists objects that no committed checkpoint references.
func unreferenced(t *testing.T, s upload.Store, refs map[int64][]string) []string {
	t.Helper()
	all := map[string]bool{}
	for id, keys := range refs {
		all[upload.MetadataRel(id)] = true
		for _, k := range keys {
			all[k] = true
		}
	}
	var out []string
	for k := range remoteObjects(t, s) {
		if !all[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func referencedNow(t *testing.T, s upload.Store, key string) bool {
	for id, keys := range committed(t, s) {
		if key == upload.MetadataRel(id) || slices.Contains(keys, key) {
			return true
		}
	}
	return false
}

func grep(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return fmt.Sprint(strings.Join(out, "\n"))
}

// TestRestoreCommandErrors: `eddy restore` says what is wrong.
func TestRestoreCommandErrors(t *testing.T) {
	r := newFileRemote(t)
	b := mqtttest.Start(t)
	e := newEddy(t, b, r, "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", "local:3"}, "want remote:<id> or remote:latest"},
		{[]string{"--from", "remote:x"}, "want remote:<id>"},
		{[]string{"--from", "remote:latest"}, "holds no checkpoint"},
		{[]string{"--from", "remote:7"}, "holds no checkpoint"},
	} {
		out, err := e.Command(append([]string{"restore", "--config", e.ConfigPath}, tc.args...)...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("eddy restore %v: %v\n%s\nwant an error saying %q", tc.args, err, out, tc.want)
		}
	}
}
