package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
)

// RemoteStatus is the uploader's state as the rest of the daemon shows it:
// in the STATUS= line, on the web page and as GET /api/v1/upload.
type RemoteStatus struct {
	// Remote is upload.remote without credentials.
	Remote string `json:"remote"`
	LinkUp bool   `json:"link_up"`
	// LinkKnown is false until the uploader's first request has ended.
	LinkKnown bool `json:"link_known"`
	// NewestCheckpoint is the newest checkpoint whose _metadata is on the
	// remote (0: none yet); NewestTimestamp is when it completed locally
	// (unix ms).
	NewestCheckpoint int64 `json:"newest_checkpoint"`
	NewestTimestamp  int64 `json:"newest_checkpoint_timestamp"`
	// LagMs is how far the remote is behind the newest completed local
	// checkpoint (ms of completion time; 0 when it holds the newest).
	LagMs        int64  `json:"lag_ms"`
	BytesPending int64  `json:"bytes_pending"`
	BytesSent    int64  `json:"bytes_sent"`
	LastError    string `json:"last_error,omitempty"`
	// Details is anything more the uploader wants to show; the web page
	// lists it as key/value pairs.
	Details map[string]any `json:"details,omitempty"`
}

// uploadHooks connect the uploader (daemon/upload.go) to reload, the STATUS=
// line, the HTTP API and /metrics without either side reaching into the
// other. The uploader sets them before Run; every one may stay nil
// (upload.remote: "").
type uploadHooks struct {
	// setUploadBandwidth applies a reloaded upload.bandwidth (bytes per
	// second, 0 = unlimited) to the running uploader.
	setUploadBandwidth func(bytesPerSecond int64)
	// remoteStatus reports the uploader's state (GET /api/v1/upload).
	remoteStatus func() RemoteStatus
	// uploadCollector is registered with /metrics: link state, lag, bytes.
	uploadCollector prometheus.Collector
}
