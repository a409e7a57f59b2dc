package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-stream/eddy/daemon"
	"github.com/eddy-stream/eddy/daemon/config"
)

func savepointCmd() *cobra.Command {
	var (
		a    apiFlags
		name string
		stop bool
	)
	c := &cobra.Command{
		Use:   "savepoint",
		Short: "Take a savepoint on a running eddy (--stop: stop with savepoint) and wait for it",
		Long: `Takes a savepoint: a checkpoint of kind savepoint (a full, key-group ordered
snapshot of every stage) copied to data_dir/savepoints/<name>/, where checkpoint
retention never deletes it. eddy run --from-savepoint NAME restores it at any
parallelism. With --stop the sources stop reading first, everything staged is
published, and eddy exits 0 once the savepoint is written (Flink's
stop-with-savepoint).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if name != "" {
				q.Set("name", name)
			}
			if stop {
				q.Set("stop", "true")
			}
			path := "/api/v1/savepoints"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			body, err := a.do(http.MethodPost, path)
			if err != nil {
				return err
			}
			var r daemon.SavepointTriggerResult
			if err := json.Unmarshal(body, &r); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "savepoint %s %s (checkpoint %d, %s) at %s\n", r.Name, r.Status, r.Checkpoint, humanBytes(r.Size), r.Path)
			switch {
			case r.Uploaded:
				fmt.Fprintln(cmd.OutOrStdout(), "uploaded to the remote")
			case r.UploadError != "":
				fmt.Fprintf(cmd.OutOrStdout(), "not uploaded to the remote: %s\n", r.UploadError)
			}
			if stop {
				fmt.Fprintln(cmd.OutOrStdout(), "eddy is stopping")
			}
			return nil
		},
	}
	a.add(c)
	c.Flags().StringVar(&name, "name", "", "savepoint name (default savepoint-<checkpoint id>-<UTC time>)")
	c.Flags().BoolVar(&stop, "stop", false, "stop with savepoint: drain, savepoint, publish everything staged, exit 0")
	return c
}

func savepointsCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "savepoints",
		Short: "List the savepoints in data_dir/savepoints and in upload.remote with size, age and stages",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return exitError{code: daemon.ExitConfigInvalid, err: err}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			list, remoteErr, err := daemon.ListAllSavepoints(ctx, cfg)
			if err != nil {
				return err
			}
			printSavepoints(cmd.OutOrStdout(), list, time.Now())
			if remoteErr != nil {
				return fmt.Errorf("remote savepoints (%s): %w", cfg.Upload.Remote, remoteErr)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file (for data_dir)")
	return c
}

func printSavepoints(w io.Writer, list []daemon.SavepointInfo, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tWHERE\tCHECKPOINT\tSIZE\tAGE\tPARALLELISM\tSTOPPED\tSTAGES")
	for _, s := range list {
		if s.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\tdamaged: %s\n", s.Name, s.Location, s.Error)
			continue
		}
		age := now.Sub(time.UnixMilli(s.CompletedTimestamp)).Round(time.Second)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%v\t%s\n", s.Name, s.Location, s.CheckpointID, humanBytes(s.Size),
			age, s.Parallelism, s.Stopped, strings.Join(s.Stages, ","))
	}
	tw.Flush()
}
