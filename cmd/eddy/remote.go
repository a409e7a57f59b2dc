package main

import (
	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/upload"
)

// openRemoteStore opens the store upload.remote names (for `eddy restore`
// and `eddy plan`; the daemon opens its own through its file system).
func openRemoteStore(c config.Upload) (upload.Store, error) {
	return upload.OpenStore(upload.RemoteOptions{
		Remote: c.Remote, Endpoint: c.Endpoint, Region: c.Region,
		PathStyle: c.PathStyle, AccessKeyID: c.AccessKeyID,
		SecretAccessKey: c.SecretAccessKey, CredentialsFile: c.CredentialsFile,
	})
}
