package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/storage/savepoint"
	"github.com/eddy-stream/eddy/upload"
)

// savepointState is the daemon's part in savepoints: the one to restore
// from (eddy run --from-savepoint), until the job built on it completes a
// checkpoint; after that a restart restores that checkpoint, as Flink does.
type savepointState struct {
	mu   sync.Mutex
	from string // NAME or PATH; "" once consumed
}

// SetFromSavepoint makes the next job start from the savepoint arg, a name
// under data_dir/savepoints or a path to a savepoint directory.
func (d *Daemon) SetFromSavepoint(arg string) {
	d.sp.mu.Lock()
	d.sp.from = arg
	d.sp.mu.Unlock()
}

func (d *Daemon) savepointStore() *savepoint.Store {
	return savepoint.Open(d.layout.Savepoints(), d.fs)
}

// savepointRestore loads and verifies the savepoint to start from, if one
// is set, into spec. It reports whether it did.
func (d *Daemon) savepointRestore(spec *pipeline.JobSpec) (bool, error) {
	d.sp.mu.Lock()
	arg := d.sp.from
	d.sp.mu.Unlock()
	if arg == "" {
		return false, nil
	}
	dir := d.savepointStore().Resolve(arg)
	md, err := savepoint.LoadFS(d.fs, dir)
	if err != nil && dir == d.savepointStore().Dir(arg) && d.remoteStore() != nil {
		md, err = d.downloadSavepoint(arg)
	}
	if err == nil {
		err = savepoint.VerifyFS(d.fs, dir, md)
	}
	if err != nil {
		return false, fmt.Errorf("restore from savepoint %s: %w", arg, err)
	}
	spec.Restore = md.Checkpoint()
	spec.RestoreSource = "savepoint"
	spec.FromSavepoint = &pipeline.SavepointRestore{Dir: dir, Name: md.Name, Published: md.Published}
	prev := spec.OnCheckpoint
	spec.OnCheckpoint = func(cm *checkpoint.Metadata) {
		d.sp.mu.Lock()
		if d.sp.from == arg {
			d.sp.from = "" // a restart restores this checkpoint, not the savepoint again
		}
		d.sp.mu.Unlock()
		if prev != nil {
			prev(cm)
		}
	}
	d.log.Info("restoring from savepoint", "savepoint", md.Name, "path", dir, "checkpoint", md.CheckpointID,
		"from_parallelism", md.Parallelism, "to_parallelism", spec.Parallelism, "stages", md.StageUIDs(),
		"age", time.Since(time.UnixMilli(md.CompletedTimestamp)).Round(time.Second))
	return true, nil
}

// downloadSavepoint fetches savepoint name from upload.remote into
// data_dir/savepoints (a replaced box starting from a savepoint the old
// one uploaded); an interrupted download resumes at the next start.
func (d *Daemon) downloadSavepoint(name string) (*savepoint.Metadata, error) {
	st := d.remoteStore()
	d.log.Info("savepoint not on this box; downloading it from the remote", "savepoint", name, "remote", st.String())
	ctx, cancel := context.WithTimeout(context.Background(), spUploadTimeout)
	defer cancel()
	go func() { // a graceful stop ends the download
		select {
		case <-d.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if !d.isReady() {
		go d.extendStartTimeout(ctx)
	}
	d.setPhase("downloading savepoint " + name + " from the remote")
	t0 := time.Now()
	md, err := upload.DownloadSavepoint(ctx, st, upload.Layout{Appliance: d.cfg.ApplianceID}, name, d.savepointStore(), d.fs)
	if err != nil {
		if errors.Is(err, upload.ErrNotFound) {
			return nil, fmt.Errorf("savepoint %s is neither in %s nor in the remote %s", name, d.savepointStore().Root(), st)
		}
		return nil, err
	}
	d.spf.markUploaded(name)
	d.log.Info("savepoint downloaded", "savepoint", name, "bytes", md.StateSize(), "took", time.Since(t0).Round(time.Millisecond))
	return md, nil
}

// SavepointInfo is one savepoint of GET /api/v1/savepoints.
type SavepointInfo struct {
	Name               string   `json:"name"`
	Path               string   `json:"path"`     // directory, or remote key
	Location           string   `json:"location"` // local | remote
	CheckpointID       int64    `json:"checkpoint_id,omitempty"`
	CompletedTimestamp int64    `json:"completed_timestamp,omitempty"`
	Size               int64    `json:"size"`
	Parallelism        int      `json:"parallelism,omitempty"`
	Stopped            bool     `json:"stopped"`
	Stages             []string `json:"stages"`
	Error              string   `json:"error,omitempty"`
}

func info(si SavepointInfo, md *savepoint.Metadata, err error) SavepointInfo {
	if err != nil {
		si.Error = err.Error()
	}
	if md != nil {
		si.CheckpointID, si.CompletedTimestamp = md.CheckpointID, md.CompletedTimestamp
		si.Parallelism, si.Stopped, si.Stages = md.Parallelism, md.Stopped, md.StageUIDs()
	}
	return si
}

// ListRemoteSavepoints lists the savepoints of appliance in the remote st.
func ListRemoteSavepoints(ctx context.Context, st upload.Store, appliance string) ([]SavepointInfo, error) {
	rs, err := upload.ListSavepoints(ctx, st, upload.Layout{Appliance: appliance})
	if err != nil {
		return nil, err
	}
	out := []SavepointInfo{}
	for _, r := range rs {
		out = append(out, info(SavepointInfo{Name: r.Name, Path: st.String() + "/" + r.Key, Location: "remote",
			Size: r.Size, Stages: []string{}}, r.Metadata, r.Err))
	}
	return out, nil
}

// ListAllSavepoints lists the savepoints of cfg's data_dir and, when
// upload.remote is set, those in the remote (an unreachable remote is
// returned as remoteErr, the local list still).
func ListAllSavepoints(ctx context.Context, cfg *config.Config) (list []SavepointInfo, remoteErr error, err error) {
	if list, err = ListSavepoints(savepoint.Open(datadir.New(cfg.DataDir).Savepoints(), nil)); err != nil {
		return nil, nil, err
	}
	if cfg.Upload.Remote == "" {
		return list, nil, nil
	}
	st, err := openRemote(cfg.Upload, nil)
	if err != nil {
		return list, err, nil
	}
	rl, err := ListRemoteSavepoints(ctx, st, cfg.ApplianceID)
	return append(list, rl...), err, nil
}

// ListSavepoints lists the savepoints in st.
func ListSavepoints(st *savepoint.Store) ([]SavepointInfo, error) {
	es, err := st.List()
	if err != nil {
		return nil, err
	}
	out := []SavepointInfo{}
	for _, e := range es {
		out = append(out, info(SavepointInfo{Name: e.Name, Path: e.Path, Location: "local", Size: e.Size, Stages: []string{}}, e.Metadata, e.Err))
	}
	return out, nil
}

// handleSavepoints lists the local savepoints and, with a remote, the
// remote ones (remote_error says why they are missing).
func (d *Daemon) handleSavepoints(w http.ResponseWriter, r *http.Request) {
	list, err := ListSavepoints(d.savepointStore())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	resp := map[string]any{"savepoints": list}
	if st := d.remoteStore(); st != nil {
		ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
		defer cancel()
		rl, err := ListRemoteSavepoints(ctx, st, d.cfg.ApplianceID)
		if err != nil {
			resp["remote_error"] = err.Error()
		}
		resp["savepoints"] = append(list, rl...)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (d *Daemon) remoteStore() upload.Store {
	if d.upl == nil {
		return nil
	}
	return d.upl.store
}

// uploadSavepoint puts a written savepoint to the remote, if one is
// configured; an error is logged and returned for the answer.
func (d *Daemon) uploadSavepoint(ctx context.Context, res pipeline.SavepointResult) (bool, error) {
	st := d.remoteStore()
	if st == nil {
		return false, nil
	}
	err := upload.UploadSavepoint(ctx, st, upload.Layout{Appliance: d.cfg.ApplianceID}, res.Path, res.Metadata)
	if err != nil {
		d.log.Error("savepoint not uploaded; it is kept locally and retried", "savepoint", res.Name, "remote", st.String(), "err", err)
		d.spf.wake() // spforward.go
		return false, err
	}
	d.spf.markUploaded(res.Name)
	d.log.Info("savepoint uploaded", "savepoint", res.Name, "remote", st.String())
	return true, nil
}

// SavepointTriggerResult is the answer to POST /api/v1/savepoints.
type SavepointTriggerResult struct {
	pipeline.SavepointResult
	Status string `json:"status"` // COMPLETED | FAILED
	Error  string `json:"error,omitempty"`
	// Uploaded: put to upload.remote; UploadError says why not.
	Uploaded    bool   `json:"uploaded"`
	UploadError string `json:"upload_error,omitempty"`
}

// handleTriggerSavepoint takes a savepoint (?name=N, ?stop=true: stop
// with savepoint, then eddy exits 0) and answers when it is written.
func (d *Daemon) handleTriggerSavepoint(w http.ResponseWriter, r *http.Request) {
	job := d.currentJob()
	if job == nil || job.Stats() == nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "no running job with checkpointing"})
		return
	}
	name := r.URL.Query().Get("name")
	stop := false
	if s := r.URL.Query().Get("stop"); s != "" {
		var err error
		if stop, err = strconv.ParseBool(s); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "stop: want true or false"})
			return
		}
	}
	if name != "" {
		if err := savepoint.ValidName(name); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "name " + err.Error()})
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), d.cfg.Checkpointing.Timeout+d.stopTimeout)
	defer cancel()
	res, err := job.TriggerSavepoint(ctx, name, stop)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, savepoint.ErrExists) {
			code = http.StatusConflict
		}
		writeJSON(w, code, SavepointTriggerResult{SavepointResult: res, Status: "FAILED", Error: err.Error()})
		return
	}
	out := SavepointTriggerResult{SavepointResult: res, Status: "COMPLETED"}
	if out.Uploaded, err = d.uploadSavepoint(ctx, res); err != nil {
		out.UploadError = err.Error()
	}
	if stop {
		d.log.Info("stop with savepoint: savepoint written and its output published; stopping", "savepoint", res.Name)
		d.Stop()
	}
	writeJSON(w, http.StatusOK, out)
}
