package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/storage/savepoint"
	"github.com/eddy-stream/eddy/test/oracle"
)

// perSiteStage is a keyed stage added to restartConfig's pipeline after a
// savepoint: it starts empty on the restore.
const perSiteStage = `    - name: per_site
      from: converted
      key_by: [site]
      window: {type: tumbling, size: 10s}
      aggregate:
        count: "count()"
        max_temp: "max(temperature)"
`

var perSiteAggs = []oracle.Agg{{Name: "count", Fn: "count"}, {Name: "max_temp", Fn: "max", Field: "temperature"}}

// sitesSink writes per_site's results to sites.jsonl.
const sitesSink = "  - name: sites\n    from: per_site\n    file:\n      path: sites.jsonl\n      max_size: 0\n"

// readingsOf are the readings of msgs, by site for the per_site oracle.
func readingsBySite(msgs []simulate.Message) []oracle.Reading {
	var rs []simulate.Reading
	for _, m := range msgs {
		rs = append(rs, m.Readings...)
	}
	out := toOracle(rs)
	for i := range out {
		out[i].Key, _, _ = strings.Cut(out[i].Key, "|")
	}
	return out
}

func (e *eddy) savepoint(args ...string) string {
	e.t.Helper()
	out, err := e.Command(append([]string{"savepoint", "--config", e.ConfigPath}, args...)...)
	if err != nil {
		e.t.Fatalf("eddy savepoint %v: %v\n%s", args, err, out)
	}
	return out
}

// TestSavepointRescaleAddStage takes a savepoint half way through a stream,
// stops, changes the parallelism from 2 to 3 and adds a keyed stage, and
// restores from the savepoint (eddy run --from-savepoint): per_device's
// results over both runs are exact, the new stage starts empty (its results
// are those of the second half exactly), and the savepoint survives
// checkpoint retention while the checkpoint it was taken as does not.
func TestSavepointRescaleAddStage(t *testing.T) {
	s := restartStream(t, 61)
	body := s.body()
	half := len(body) / 2
	b := startBroker(t)
	f := newFeeder(t, b, "e2e-feeder")
	c := restartConfig()
	c.Interval, c.MaxParallelism, c.NumRetained = "1h", 64, 2
	e := newEddy(t, b, c)
	e.StartReady()
	e.Probe(f)
	f.MustSend(t, body[:half])
	e.quiesce()
	out := e.savepoint("--name", "before-rescale")
	if !strings.Contains(out, "savepoint before-rescale COMPLETED") {
		t.Fatalf("eddy savepoint said %q", out)
	}
	o := e.Checkpoints()
	if o.Latest.Savepoint == nil || !o.Latest.Savepoint.IsSavepoint || o.Latest.Savepoint.CheckpointType != "SAVEPOINT" {
		t.Errorf("latest.savepoint = %+v, want the savepoint", o.Latest.Savepoint)
	}
	spID := o.Latest.Savepoint.ID
	e.Stop()

	dir := e.Path("savepoints/before-rescale")
	md, err := savepoint.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := savepoint.Verify(dir, md); err != nil {
		t.Fatal(err)
	}
	if md.Parallelism != 2 || md.CheckpointID != spID || len(md.Stages) != 3 || md.Stages[2].UID != "per_device" {
		t.Errorf("savepoint metadata: parallelism %d, checkpoint %d (want %d), stages %v", md.Parallelism, md.CheckpointID, spID, md.StageUIDs())
	}

	c2 := c
	c2.Parallelism = 3
	c2.Stages += perSiteStage
	c2.ExtraSinks = sitesSink
	e.WriteConfig(c2.render(e.DataDir, b.URL(), e.HTTPAddr))
	e.StartArgs([]string{"--from-savepoint", "before-rescale"}, "EDDY_CHECKPOINTING_INTERVAL=300ms").WaitReady()
	if l, ok := e.FindLog("restoring from savepoint"); !ok || l.Str("savepoint") != "before-rescale" {
		t.Errorf("no log line restoring from savepoint before-rescale")
	}
	if l, ok := e.FindLog("stage is new in the configuration: it starts with empty state"); !ok || l.Str("stage") != "per_site" {
		t.Errorf("the new stage per_site was not logged as starting empty")
	}
	if r := e.Checkpoints().Latest.Restored; r == nil || r.ID != spID || !r.IsSavepoint || r.ExternalPath != dir || r.Source != "savepoint" {
		t.Errorf("latest.restored = %+v, want checkpoint %d, the savepoint at %s", r, spID, dir)
	}
	f.MustSend(t, body[half:])
	f.MustSend(t, s.end())
	until := closeAt(s.endTS, restartOOO)
	want := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, until)
	got := e.waitResults("per_device", []string{"site", "device"}, want)
	compareResults(t, "per_device", got, want, windowAggs)
	if got.Dups > 0 {
		t.Errorf("per_device: %d results published twice", got.Dups)
	}
	// The newest checkpoint has three subtasks of each keyed stage, each
	// key group owned once per stage.
	ids := completedCheckpoints(e.Path("checkpoints"))
	cm := readMetadata(t, filepath.Join(e.Path("checkpoints"), fmt.Sprintf("chk-%d", ids[len(ids)-1]), "_metadata"))
	for _, stage := range []string{"per_device", "per_site"} {
		owned, n := 0, 0
		for _, ts := range cm.Tasks {
			if ts.Stage == stage && ts.Kind != "none" {
				n++
				owned += int(ts.KeyGroupEnd-ts.KeyGroupStart) + 1
			}
		}
		if n != 3 || owned != 64 {
			t.Errorf("stage %s: %d subtasks owning %d key groups in chk-%d, want 3 owning 64", stage, n, owned, cm.ID)
		}
	}
	wantSite := oracle.Compute(readingsBySite(body[half:]), oracle.Window{Type: "tumbling", Size: 10000}, perSiteAggs, until)
	gotSite := e.readResultsFrom("sites.jsonl", "per_site", []string{"site"})
	compareResults(t, "per_site (new, empty at restore)", gotSite, wantSite, perSiteAggs)

	// Checkpoint retention (num_retained 2) removes the savepoint's
	// checkpoint, never the savepoint.
	for range 3 {
		e.Trigger()
	}
	if _, err := os.Stat(filepath.Join(e.Path("checkpoints"), fmt.Sprintf("chk-%d", spID))); !os.IsNotExist(err) {
		t.Errorf("chk-%d is still there after three more checkpoints with num_retained 2 (%v)", spID, err)
	}
	if _, err := savepoint.Load(dir); err != nil {
		t.Errorf("the savepoint did not survive checkpoint retention: %v", err)
	}
	list, err := e.Command("savepoints", "--config", e.ConfigPath)
	if err != nil || !strings.Contains(list, "before-rescale") || !strings.Contains(list, "valid,converted,per_device") {
		t.Errorf("eddy savepoints: %v\n%s", err, list)
	}
	e.Stop()
}

// TestStopWithSavepoint stops eddy with eddy savepoint --stop while output
// is staged: it exits 0, everything the first half closed is in the results
// file, and the restart from the savepoint replays nothing twice; the
// results over both runs are exact.
func TestStopWithSavepoint(t *testing.T) {
	c := restartConfig()
	c.Interval = "1h"
	e, f, s, body, half := firstHalf(t, 62, c)
	p := e.Process
	out := e.savepoint("--stop", "--name", "final")
	if !strings.Contains(out, "savepoint final COMPLETED") {
		t.Fatalf("eddy savepoint --stop said %q", out)
	}
	if !p.WaitExit(exitTimeout) {
		t.Fatalf("eddy did not exit after stop-with-savepoint")
	}
	if err := p.ExitErr(); err != nil {
		t.Fatalf("eddy exited with %v after stop-with-savepoint", err)
	}
	md, err := savepoint.Load(e.Path("savepoints/final"))
	if err != nil {
		t.Fatal(err)
	}
	if !md.Stopped || len(md.Published) == 0 {
		t.Errorf("savepoint: stopped %v, published %v; want stopped and every sink", md.Stopped, md.Published)
	}
	var rs []simulate.Reading
	maxTS := int64(0)
	for _, m := range body[:half] {
		rs = append(rs, m.Readings...)
		for _, r := range m.Readings {
			maxTS = max(maxTS, r.TS)
		}
	}
	closed := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(maxTS, restartOOO))
	if n := e.readResults("per_device", []string{"site", "device"}).Missing(closed); n > 0 {
		t.Errorf("after stop-with-savepoint, %d of the %d windows closed by the first half are not in the results file", n, len(closed))
	}
	before := e.readResults("per_device", []string{"site", "device"}).Lines

	e.StartArgs([]string{"--from-savepoint", "final"}, "EDDY_CHECKPOINTING_INTERVAL=300ms").WaitReady()
	if r := e.Checkpoints().Latest.Restored; r == nil || r.ID != md.CheckpointID {
		t.Errorf("latest.restored = %+v, want checkpoint %d", r, md.CheckpointID)
	}
	if o := e.Overview(); len(o.Ingest) == 0 || o.Ingest[0].Lag != 0 {
		t.Errorf("ingest after restore: %+v (want nothing to replay)", o.Ingest)
	}
	f.MustSend(t, body[half:])
	f.MustSend(t, s.end())
	want := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 10000}, windowAggs, closeAt(s.endTS, restartOOO))
	got := e.waitResults("per_device", []string{"site", "device"}, want)
	compareResults(t, "results", got, want, windowAggs)
	if got.Dups > 0 {
		t.Errorf("%d results published twice (%d lines before the restart)", got.Dups, before)
	}
	e.Stop()
}

// TestCorruptSavepoint damages one byte of a savepoint's full snapshot:
// eddy run --from-savepoint refuses it, naming the file and the offset, and
// eddy savepoints still lists it.
func TestCorruptSavepoint(t *testing.T) {
	c := restartConfig()
	c.Interval = "1h"
	e, _, _, _, _ := firstHalf(t, 63, c)
	e.savepoint("--name", "sp")
	e.Stop()
	snap := filepath.Join(e.Path("savepoints/sp"), "per_device-1", savepoint.SnapshotFile)
	data, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(snap, data, 0o644); err != nil {
		t.Fatal(err)
	}
	p := e.StartArgs([]string{"--from-savepoint", "sp"})
	if !p.WaitExit(exitTimeout) {
		t.Fatalf("eddy runs from a corrupt savepoint")
	}
	if p.ExitErr() == nil {
		t.Errorf("eddy exited 0 on a corrupt savepoint")
	}
	log, _ := os.ReadFile(p.LogPath)
	if !strings.Contains(string(log), "corrupt file "+snap+" at byte ") {
		t.Errorf("the error does not name %s and an offset:\n%s", snap, log)
	}
}

// TestSavepointSurvivesRemoteRetention uploads a savepoint to a file://
// remote with upload.num_retained 1: after more checkpoints have been
// uploaded and the savepoint's checkpoint is gone from the remote, the
// savepoint is still there, and eddy savepoints lists it as remote.
func TestSavepointSurvivesRemoteRetention(t *testing.T) {
	remote := t.TempDir()
	c := restartConfig()
	c.Interval, c.NumRetained = "1h", 1
	e, _, _, _, _ := firstHalf(t, 64, c)
	e.Stop()
	yaml, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	e.WriteConfig(string(yaml) + fmt.Sprintf("upload:\n  remote: \"file://%s\"\n  num_retained: 1\n", remote))
	e.StartReady()
	out := e.savepoint("--name", "kept")
	if !strings.Contains(out, "uploaded to the remote") {
		t.Fatalf("eddy savepoint said %q", out)
	}
	spID := e.Checkpoints().Latest.Savepoint.ID
	app := filepath.Join(remote, "e2e")
	if _, err := savepoint.Load(filepath.Join(app, "savepoints", "kept")); err != nil {
		t.Fatalf("the remote savepoint does not load: %v", err)
	}
	chk := filepath.Join(app, fmt.Sprintf("chk-%d", spID), "_metadata")
	e.WaitFor("the savepoint's checkpoint to leave the remote", resultsTimeout, func() bool {
		e.Trigger()
		_, err := os.Stat(chk)
		return os.IsNotExist(err)
	})
	md, err := savepoint.Load(filepath.Join(app, "savepoints", "kept"))
	if err != nil {
		t.Fatalf("the savepoint did not survive remote retention: %v", err)
	}
	if err := savepoint.Verify(filepath.Join(app, "savepoints", "kept"), md); err != nil {
		t.Error(err)
	}
	list, err := e.Command("savepoints", "--config", e.ConfigPath)
	if err != nil || strings.Count(list, "kept") != 2 || !strings.Contains(list, "remote") {
		t.Errorf("eddy savepoints (want kept local and remote): %v\n%s", err, list)
	}
	e.Stop()
}
