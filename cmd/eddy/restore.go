package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-stream/eddy/daemon"
	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/upload"
)

// restoreCmd is `eddy restore --from remote:<id>|remote:latest`: it
// downloads a remote checkpoint into data_dir/checkpoints, so that the next
// `eddy run` restores it like any local checkpoint. Run it with eddy
// stopped, on the box that lost its disk or on its replacement (same
// appliance_id).
func restoreCmd() *cobra.Command {
	var path, from string
	var discardNewer bool
	c := &cobra.Command{
		Use:   "restore --from remote:<id>|remote:latest",
		Short: "Download a remote checkpoint so that the next `eddy run` starts from it",
		Long: "restore downloads a checkpoint of this appliance from upload.remote into the local checkpoint\n" +
			"directory (in parallel, every file checked against its CRC32C), where the next `eddy run`\n" +
			"restores it. Stop eddy first. Local checkpoints newer than the one downloaded would be\n" +
			"restored instead: restore refuses unless --discard-newer removes them.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, ok := strings.CutPrefix(from, "remote:")
			if !ok {
				return fmt.Errorf("--from %q: want remote:<id> or remote:latest", from)
			}
			id := upload.Latest
			if spec != "latest" {
				n, err := strconv.ParseInt(spec, 10, 64)
				if err != nil || n < 1 {
					return fmt.Errorf("--from %q: want remote:<id> (a checkpoint id ≥ 1) or remote:latest", from)
				}
				id = n
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if cfg.Upload.Remote == "" {
				return errors.New("upload.remote is not set: there is no remote to restore from")
			}
			store, err := upload.OpenStore(upload.RemoteOptions{
				Remote: cfg.Upload.Remote, Endpoint: cfg.Upload.Endpoint, Region: cfg.Upload.Region,
				PathStyle: cfg.Upload.PathStyle, AccessKeyID: cfg.Upload.AccessKeyID,
				SecretAccessKey: cfg.Upload.SecretAccessKey, CredentialsFile: cfg.Upload.CredentialsFile,
			})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			lctx, cancel := context.WithTimeout(ctx, time.Minute)
			ids, err := upload.RemoteCheckpoints(lctx, store, cfg.ApplianceID)
			cancel()
			if err != nil {
				return fmt.Errorf("list remote checkpoints on %s: %w", store, err)
			}
			if len(ids) == 0 {
				return fmt.Errorf("%s holds no checkpoint of appliance %q", store, cfg.ApplianceID)
			}
			if id != upload.Latest && !slices.Contains(ids, id) {
				return fmt.Errorf("%s holds no checkpoint %d of appliance %q (it holds %v)", store, id, cfg.ApplianceID, ids)
			}
			fmt.Fprintf(out, "remote %s, appliance %s: checkpoints %v\n", store, cfg.ApplianceID, ids)
			local, err := checkpoint.Open(filepath.Join(cfg.DataDir, "checkpoints"), nil, nil)
			if err != nil {
				return err
			}
			want := id
			if want == upload.Latest {
				want = ids[len(ids)-1]
			}
			done, err := local.Completed()
			if err != nil {
				return err
			}
			var newer []int64
			for _, l := range done {
				if l > want {
					newer = append(newer, l)
				}
			}
			if len(newer) > 0 && !discardNewer {
				return fmt.Errorf("local checkpoints %v are newer than remote checkpoint %d and would be restored "+
					"instead; pass --discard-newer to remove them", newer, want)
			}
			for _, l := range newer {
				if err := local.Abort(l); err != nil {
					return err
				}
				fmt.Fprintf(out, "removed newer local checkpoint %d\n", l)
			}
			var read atomic.Int64
			t0 := time.Now()
			md, err := upload.Download(ctx, store, cfg.ApplianceID, id, local, upload.DownloadOptions{
				Parallelism: cfg.Upload.Parallelism, BytesRead: &read,
			})
			if err != nil {
				return err
			}
			if err := daemon.WriteRestoredMarker(cfg.DataDir, md.ID, store.String()); err != nil {
				return err
			}
			// A remote checkpoint from another history supersedes what this
			// data dir uploaded: start the uploader's record afresh.
			if err := os.Remove(filepath.Join(cfg.DataDir, "upload", upload.RecordFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if err := fileutil.SyncDir(filepath.Join(cfg.DataDir, "upload")); err != nil {
				return err
			}
			el := time.Since(t0)
			fmt.Fprintf(out, "restored checkpoint %d (completed %s, %d bytes of state, %d bytes downloaded in %s) into %s\n",
				md.ID, time.UnixMilli(md.CompletedTimestamp).UTC().Format(time.RFC3339), md.StateSize(), read.Load(),
				el.Round(time.Millisecond), local.CheckpointDir(md.ID))
			fmt.Fprintln(out, "the next `eddy run` starts from it")
			return nil
		},
	}
	c.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	c.Flags().StringVar(&from, "from", "remote:latest", "remote:<id> or remote:latest")
	c.Flags().BoolVar(&discardNewer, "discard-newer", false, "remove local checkpoints newer than the one restored")
	return c
}
