package daemon

import (
	"errors"
	"net/http"
)

// ReloadResponse is the answer of POST /api/v1/reload.
type ReloadResponse struct {
	// Applied are the keys that changed and now have their new values.
	Applied []string `json:"applied"`
	// Refused are the keys that changed but need a restart.
	Refused []string `json:"refused"`
	// Error is set when the file does not load; nothing changed.
	Error string `json:"error,omitempty"`
}

// handleReload is POST /api/v1/reload: Reload, answered with its outcome,
// so that `eddy reload` (ExecReload) can make `systemctl reload eddy` fail
// when the file is invalid (422) or holds a change that needs a restart
// (409). The running configuration is kept in both cases.
func (d *Daemon) handleReload(w http.ResponseWriter, _ *http.Request) {
	res, err := d.Reload()
	out := ReloadResponse{Applied: res.Applied, Refused: res.Refused}
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
