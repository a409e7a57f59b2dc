package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/eddy-stream/eddy/daemon"
	"github.com/eddy-stream/eddy/daemon/config"
)

const defaultConfig = "/etc/eddy/config.yaml"

func runCmd() *cobra.Command {
	var (
		path             string
		fromSavepoint    string
		allowNonRestored bool
	)
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the pipeline (as a service: systemctl start eddy)",
		Long: `Runs the pipeline until stopped. SIGTERM or SIGINT (Ctrl-C) stop gracefully:
the sources stop reading, a final checkpoint is taken and its output published,
then eddy exits 0; a second signal stops at once (the next start replays from
the last checkpoint). SIGHUP reloads log.level, checkpointing.interval,
checkpointing.min_pause and upload.bandwidth from the file, applies a pipeline
or sinks change that fits the running state through a savepoint (eddy reload),
and refuses every other change. Under systemd (Type=notify) eddy reports READY=1 after recovery,
STATUS= lines and watchdog pings.

A second eddy on the same data_dir exits at once: data_dir/LOCK names the
running one's PID. A configuration that does not load or validate exits
with status 78 (EX_CONFIG). A checkpoint whose state does not fit the
configured pipeline (a keyed stage removed, its key_by, window or aggregates
changed) is refused with a log line naming the stage and what to do, and
eddy exits with status 65 (EX_DATAERR); neither is restarted by the unit.

--from-savepoint NAME|PATH starts from a savepoint (eddy savepoint) instead
of the newest checkpoint, at any parallelism; a stage the savepoint does not
hold starts empty. Once the job has completed a checkpoint, a restart
restores that checkpoint.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return exitError{code: daemon.ExitConfigInvalid, err: err}
			}
			level := new(slog.LevelVar)
			level.Set(parseLevel(cfg.Log.Level))
			log := daemon.NewLogger(os.Stderr, cfg.Log.Format, level)
			defer daemon.CatchWatchdogAbort(log, os.Stderr, nil)()
			d, err := daemon.New(cfg, log, level)
			if err != nil {
				return err
			}
			d.SetConfigFile(path)
			if allowNonRestored {
				d.AllowNonRestoredState()
			}
			if fromSavepoint != "" {
				d.SetFromSavepoint(fromSavepoint)
			}
			runErr := d.Run(context.Background())
			closeErr := d.Close()
			if runErr == nil && closeErr == nil {
				log.Info("stopped")
			}
			if daemon.IsStateIncompatible(runErr) {
				return exitError{code: daemon.ExitStateIncompatible, err: errors.Join(runErr, closeErr)}
			}
			return errors.Join(runErr, closeErr)
		},
	}
	c.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	c.Flags().BoolVar(&allowNonRestored, "allow-non-restored-state", false,
		"drop the state of keyed stages the configuration no longer has instead of refusing to start")
	c.Flags().StringVar(&fromSavepoint, "from-savepoint", "", "start from this savepoint (a name under data_dir/savepoints, or a path)")
	return c
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

func validateCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "validate",
		Short: "Check a configuration file and print every problem",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := config.Load(path); err != nil {
				var ve *config.ValidationError
				if errors.As(err, &ve) {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d problem(s):\n%v\n", path, len(ve.Problems), err)
					return exitError{code: daemon.ExitConfigInvalid, err: errors.New("configuration is not valid")}
				}
				return exitError{code: daemon.ExitConfigInvalid, err: err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", path)
			return nil
		},
	}
	c.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file")
	return c
}

// exitError makes main exit with code instead of 1.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }
func (e exitError) ExitCode() int { return e.code }

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "eddy", daemon.Version)
		},
	}
}
