package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-stream/eddy/daemon"
	"github.com/eddy-stream/eddy/daemon/config"
)

// configError marks an error as a configuration that does not load: exit
// status daemon.ExitConfigInvalid (eddy.service has
// RestartPreventExitStatus=78, so a broken file does not restart eddy every
// RestartSec forever).
func configError(err error) error { return exitError{code: daemon.ExitConfigInvalid, err: err} }

func reloadCmd() *cobra.Command {
	var path string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "reload",
		Short: "Reload a running eddy and wait for the outcome (ExecReload of eddy.service)",
		Long: `Checks the configuration file, then asks the running eddy (POST /api/v1/reload
on its http.listen address, with http.token) to reload it, and waits for the answer.
It fails, and systemctl reload eddy with it, when the file is not valid (exit 78)
or when it changes a setting that needs a restart (the running eddy keeps its
running values). log.level, checkpointing.interval, checkpointing.min_pause and
upload.bandwidth change live. A change of the pipeline or sinks section is
checked against the running state like a restore (the reasons are printed
when it does not fit; the running job is kept); if it fits, the job stops
with a savepoint and the new one starts from it. That takes up to
checkpointing.timeout plus 45 s, and a restore: --timeout is longer.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return configError(fmt.Errorf("reload refused: %s does not load; eddy keeps its running configuration: %w", path, err))
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res, err := askReload(ctx, cfg)
			if err != nil {
				return err
			}
			prefix := "" // the journal's info priority under systemd
			if daemon.IsJournalStream(os.Stdout) {
				prefix = "<6>"
			}
			switch {
			case len(res.Applied) == 0:
				fmt.Fprintln(cmd.OutOrStdout(), prefix+"eddy: configuration unchanged")
			case res.Savepoint != "":
				fmt.Fprintln(cmd.OutOrStdout(), prefix+"eddy: reloaded "+strings.Join(res.Applied, ", ")+
					"; the job was rebuilt from savepoint "+res.Savepoint)
			default:
				fmt.Fprintln(cmd.OutOrStdout(), prefix+"eddy: reloaded "+strings.Join(res.Applied, ", "))
			}
			return nil
		},
	}
	c.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file (the one eddy runs with)")
	// Below eddy.service's TimeoutStartSec=5min, which bounds ExecReload.
	c.Flags().DurationVar(&timeout, "timeout", 4*time.Minute, "how long to wait for the running eddy (a pipeline change waits for a savepoint and a restore)")
	return c
}

// askReload posts /api/v1/reload to the eddy serving cfg.HTTP.
func askReload(ctx context.Context, cfg *config.Config) (daemon.ReloadResponse, error) {
	var res daemon.ReloadResponse
	addr := dialAddr(cfg.HTTP.Listen)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/api/v1/reload", nil)
	if err != nil {
		return res, err
	}
	token := cfg.HTTP.Token
	if cfg.HTTP.TokenFile != "" {
		b, err := os.ReadFile(cfg.HTTP.TokenFile)
		if err != nil {
			return res, fmt.Errorf("http.token_file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return res, fmt.Errorf("reload: cannot ask the running eddy at %s (is it running? did http.listen change? that needs a restart): %w", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(body, &res); err != nil && resp.StatusCode == http.StatusOK {
		return res, fmt.Errorf("reload: eddy at %s answered %q: %w", addr, body, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return res, nil
	case http.StatusConflict:
		if len(res.Reasons) > 0 {
			return res, fmt.Errorf("reload refused: %s: %s; eddy keeps the running job and values (applied: %s)",
				strings.Join(res.Refused, ", "), strings.Join(res.Reasons, "; "), orNone(res.Applied))
		}
		return res, fmt.Errorf("reload refused: %s changed, which needs a restart (systemctl restart eddy); eddy keeps the running values (applied: %s)",
			strings.Join(res.Refused, ", "), orNone(res.Applied))
	case http.StatusUnprocessableEntity:
		return res, configError(errors.New(res.Error))
	case http.StatusUnauthorized, http.StatusForbidden:
		return res, fmt.Errorf("reload: eddy at %s refused the token (%s); did http.token change? that needs a restart", addr, resp.Status)
	case http.StatusInternalServerError:
		if res.Error != "" {
			return res, fmt.Errorf("reload failed: %s (applied: %s)", res.Error, orNone(res.Applied))
		}
		fallthrough
	default:
		msg := res.Error
		if msg == "" {
			msg = strings.TrimSpace(string(body))
		}
		return res, fmt.Errorf("reload: eddy at %s answered %s: %s", addr, resp.Status, msg)
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// dialAddr turns a listen address into one to connect to: a wildcard
// host becomes loopback.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}
