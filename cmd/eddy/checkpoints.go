package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/pipeline"
)

// apiFlags locate the HTTP API of a running eddy.
type apiFlags struct {
	config string
	url    string
	token  string
}

func (a *apiFlags) add(c *cobra.Command) {
	c.Flags().StringVarP(&a.config, "config", "c", defaultConfig, "configuration file (for http.listen and the token)")
	c.Flags().StringVar(&a.url, "url", "", "base URL of the API (default: from the configuration)")
	c.Flags().StringVar(&a.token, "token", "", "bearer token (default: from the configuration)")
}

func (a *apiFlags) do(method, path string) ([]byte, error) {
	base, token := a.url, a.token
	if base == "" || token == "" {
		cfg, err := config.Load(a.config)
		if err != nil && base == "" {
			return nil, err
		}
		if err == nil {
			if base == "" {
				base = "http://" + cfg.HTTP.Listen
			}
			if token == "" {
				token = cfg.HTTP.Token
				if cfg.HTTP.TokenFile != "" {
					b, err := os.ReadFile(cfg.HTTP.TokenFile)
					if err != nil {
						return nil, fmt.Errorf("http.token_file: %w", err)
					}
					token = strings.TrimSpace(string(b))
				}
			}
		}
	}
	req, err := http.NewRequest(method, strings.TrimRight(base, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 15 * time.Minute}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return body, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

func checkpointCmd() *cobra.Command {
	var a apiFlags
	c := &cobra.Command{Use: "checkpoint", Short: "Act on checkpoints of a running eddy"}
	trig := &cobra.Command{
		Use:   "trigger",
		Short: "Take a checkpoint now and wait until it completes",
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := a.do(http.MethodPost, "/api/v1/checkpoints")
			if err != nil {
				return err
			}
			var r struct {
				ID     int64  `json:"id"`
				Status string `json:"status"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "checkpoint %d %s\n", r.ID, r.Status)
			return nil
		},
	}
	a.add(trig)
	c.AddCommand(trig)
	return c
}

func checkpointsCmd() *cobra.Command {
	var a apiFlags
	c := &cobra.Command{
		Use:   "checkpoints",
		Short: "Print the checkpoint history of a running eddy as a table",
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := a.do(http.MethodGet, "/api/v1/checkpoints")
			if err != nil {
				return err
			}
			var o pipeline.CheckpointsOverview
			if err := json.Unmarshal(body, &o); err != nil {
				return err
			}
			printCheckpoints(cmd.OutOrStdout(), &o)
			return nil
		},
	}
	a.add(c)
	return c
}

func printCheckpoints(w io.Writer, o *pipeline.CheckpointsOverview) {
	fmt.Fprintf(w, "checkpoints: %d total, %d completed, %d failed, %d in progress, %d restored\n",
		o.Counts.Total, o.Counts.Completed, o.Counts.Failed, o.Counts.InProgress, o.Counts.Restored)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tTRIGGERED\tDURATION\tSTATE SIZE\tCHECKPOINTED\tACKED\tNOTE")
	for _, c := range o.History {
		dur := "-"
		if c.Status != pipeline.StatusInProgress {
			dur = (time.Duration(c.EndToEndDuration) * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", c.ID, c.Status,
			time.UnixMilli(c.TriggerTimestamp).Format("15:04:05.000"), dur,
			humanBytes(c.StateSize), humanBytes(c.CheckpointedSize),
			c.NumAcknowledgedSubtasks, c.NumSubtasks, c.FailureMessage)
	}
	tw.Flush()
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
