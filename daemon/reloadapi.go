package daemon

import (
	"errors"
	"net/http"
)

// ReloadResponse is the answer of POST /api/v1/reload.
type ReloadResponse struct {
	// Applied are the keys that changed and now have their new values.
	Applied []string `json:"applied"`
	// Refused are the keys that changed but keep their running values.
	Refused []string `json:"refused"`
	// Reasons say why a pipeline or sinks change was refused (one per
	// stage, the words of a refused restore); empty when the refused keys
	// simply need a restart.
	Reasons []string `json:"reasons"`
	// Savepoint is the savepoint a pipeline reload took.
	Savepoint string `json:"savepoint,omitempty"`
	// Error is set when the file does not load (nothing changed) or a
	// pipeline change did not start (the previous pipeline runs again).
	Error string `json:"error,omitempty"`
}

// handleReload is POST /api/v1/reload: Reload, answered with its outcome,
// so that `eddy reload` (ExecReload) can make `systemctl reload eddy` fail
// when the file is invalid (422), holds a change that needs a restart or a
// pipeline change that does not fit the running state (409), or a pipeline
// change did not start (500). The running configuration is kept in all
// three cases. A pipeline change answers once the new job runs.
func (d *Daemon) handleReload(w http.ResponseWriter, _ *http.Request) {
	res, err := d.Reload()
	out := ReloadResponse{Applied: res.Applied, Refused: res.Refused, Reasons: res.Reasons, Savepoint: res.Savepoint}
	if out.Reasons == nil {
		out.Reasons = []string{}
	}
	if out.Applied == nil {
		out.Applied = []string{}
	}
	if out.Refused == nil {
		out.Refused = []string{}
	}
	switch {
	case errors.Is(err, ErrReloadInvalid):
		out.Error = err.Error()
		writeJSON(w, http.StatusUnprocessableEntity, out)
	case err != nil:
		out.Error = err.Error()
		writeJSON(w, http.StatusInternalServerError, out)
	case len(out.Refused) > 0:
		writeJSON(w, http.StatusConflict, out)
	default:
		writeJSON(w, http.StatusOK, out)
	}
}
