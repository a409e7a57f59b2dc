package daemon

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/eddy-stream/eddy/storage/savepoint"
	"github.com/eddy-stream/eddy/upload"
)

// startWithRemote runs a daemon on data_dir dir with upload.remote set;
// its savepoint uploads and downloads go to remote (the checkpoint
// uploader keeps the file:// remote of the configuration).
func startWithRemote(t *testing.T, dir string, remote upload.Store, fromSavepoint string) (*Daemon, <-chan error) {
	t.Helper()
	d, _ := newDaemonYAML(t, remoteYAML(t, dir))
	d.upl.store = remote
	if fromSavepoint != "" {
		d.SetFromSavepoint(fromSavepoint)
	}
	done := startRun(t, d)
	t.Cleanup(func() {
		d.Stop()
		if err := runResult(t, done); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return d, done
}

// remoteYAML is reloadYAML on data_dir dir with a file:// upload.remote.
func remoteYAML(t *testing.T, dir string) string {
	return reloadYAML(dir, "site, device", 1, "", "") + "upload:\n  remote: \"file://" + t.TempDir() + "\"\n"
}

// A savepoint taken while the remote is down stays local, is counted in
// eddy_savepoints_not_uploaded and goes up by itself once the remote is
// back; a new box with an empty data_dir then starts from it, downloaded
// from the remote.
func TestSavepointUploadRetriedAndDownloaded(t *testing.T) {
	remote := upload.NewMemStore()
	remote.SetDown(true)
	d, _ := startWithRemote(t, t.TempDir(), remote, "")

	resp, err := http.Post("http://"+d.HTTPAddr()+"/api/v1/savepoints?name=sp1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var res SavepointTriggerResult
	err = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if err != nil || res.Status != "COMPLETED" || res.Uploaded || res.UploadError == "" {
		t.Fatalf("savepoint with the remote down: %+v, %v; want completed, not uploaded", res, err)
	}
	waitFor(t, 2*time.Minute, "eddy_savepoints_not_uploaded 1", func() bool { return gaugeValue(savepointsNotUploaded) == 1 })

	remote.SetDown(false)
	key := upload.Layout{Appliance: "test"}.Key(upload.SavepointRel("sp1") + savepoint.MetadataFile)
	waitFor(t, 2*time.Minute, "the savepoint in the remote", func() bool {
		return gaugeValue(savepointsNotUploaded) == 0 && slices.Contains(remote.Keys(), key)
	})

	// A replaced box: empty data_dir, the same remote.
	dir2 := t.TempDir()
	d2, _ := startWithRemote(t, dir2, remote, "sp1")
	md, err := savepoint.Load(filepath.Join(dir2, "savepoints", "sp1"))
	if err != nil {
		t.Fatalf("the savepoint was not downloaded: %v", err)
	}
	if err := savepoint.Verify(filepath.Join(dir2, "savepoints", "sp1"), md); err != nil {
		t.Fatal(err)
	}
	rs := d2.currentJob().Stats().Overview().Latest.Restored
	if rs == nil || !rs.IsSavepoint || rs.Source != "savepoint" {
		t.Errorf("restored = %+v, want from the savepoint", rs)
	}
}

// A savepoint neither local nor in the remote: the start fails naming both.
func TestFromSavepointMissingEverywhere(t *testing.T) {
	dir := t.TempDir()
	d, _ := newDaemonYAML(t, remoteYAML(t, dir))
	d.SetFromSavepoint("gone")
	done := make(chan error, 1)
	go func() { done <- d.Run(t.Context()) }()
	err := runResult(t, done)
	if err == nil || !strings.Contains(err.Error(), "savepoint gone is neither in "+filepath.Join(dir, "savepoints")) {
		t.Fatalf("Run = %v, want the missing savepoint named", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "savepoints", "gone")); err == nil {
		t.Error("a directory was left for the missing savepoint")
	}
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}
