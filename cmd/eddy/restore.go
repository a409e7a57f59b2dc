package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/upload"
)

// restoreCmd is `eddy restore --from remote:<id>|remote:latest`: it
// downloads a remote checkpoint into data_dir/checkpoints, so that the next
// `eddy run` restores it like any local checkpoint. Run it with eddy
// stopped, on the box that lost its disk or on its replacement (same
// appliance_id): it takes the data_dir lock. The work is
// upload.Recovery.Restore; this file has the flags and the printing.
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
			store, err := openRemoteStore(cfg.Upload)
			if err != nil {
				return err
			}
			layout := datadir.New(cfg.DataDir)
			if err := fileutil.CreateDirAll(layout.Root); err != nil {
				return err
			}
			lock, err := fileutil.Flock(layout.Lock())
			if le := (*fileutil.LockedError)(nil); errors.As(err, &le) {
				return fmt.Errorf("%w: stop it before restoring", le) // names the holder's pid
			}
			if err != nil {
				return err
			}
			defer lock.Release()
			local, err := checkpoint.Open(layout.Checkpoints(), nil, nil)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var read atomic.Int64
			r := upload.Recovery{Store: store, Appliance: cfg.ApplianceID, DataDir: layout, Local: local,
				Parallelism: cfg.Upload.Parallelism, BytesRead: &read}
			res, err := r.Restore(ctx, id, discardNewer)
			out := cmd.OutOrStdout()
			if len(res.Remote) > 0 {
				fmt.Fprintf(out, "remote %s, appliance %s: checkpoints %v\n", store, cfg.ApplianceID, res.Remote)
			}
			for _, l := range res.Discarded {
				fmt.Fprintf(out, "removed newer local checkpoint %d\n", l)
			}
			if err != nil {
				return err
			}
			md := res.Checkpoint
			fmt.Fprintf(out, "restored checkpoint %d (completed %s, %d bytes of state, %d bytes downloaded in %s) into %s\n",
				md.ID, time.UnixMilli(md.CompletedTimestamp).UTC().Format(time.RFC3339), md.StateSize(), read.Load(),
				res.Duration.Round(time.Millisecond), local.CheckpointDir(md.ID))
			fmt.Fprintln(out, "the next `eddy run` starts from it")
			return nil
		},
	}
	c.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	c.Flags().StringVar(&from, "from", "remote:latest", "remote:<id> or remote:latest")
	c.Flags().BoolVar(&discardNewer, "discard-newer", false, "remove local checkpoints newer than the one restored")
	return c
}
