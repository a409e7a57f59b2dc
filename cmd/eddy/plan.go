package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/daemon/plan"
	"github.com/eddy-stream/eddy/simulate"
)

func planCmd() *cobra.Command {
	var (
		a                    apiFlags
		input, scratch       string
		asJSON, keep, noSave bool
		noAPI, noRemote      bool
		sim                  int
		perMsg               int
		o                    plan.Options
	)
	c := &cobra.Command{
		Use:   "plan",
		Short: "Measure what this box can take: maximum rate, recovery, headroom, skew, window bursts",
		Long: `Replays the configured pipeline, checkpointing on (the configured interval,
at most every 250ms so that several complete in the replay), niced, in a
scratch directory: the most recent segments of the ingest log (read-only;
the running eddy is not disturbed), --input FILE of recorded messages
("topic payload" lines, as mosquitto_sub -v prints them), or --simulate N
readings of the simulator. Prints the figures and what to change when one is
bad, and keeps them in data_dir/plan/latest.json for the running eddy's
live headroom (unless --no-save).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(a.config)
			if err != nil {
				return err
			}
			if err := plan.Nice(); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "eddy plan: could not lower priority:", err)
			}
			o.Config, o.Input, o.Scratch, o.Keep = cfg, input, scratch, keep
			if cfg.Upload.Remote != "" && !noRemote {
				if o.Remote, err = openRemoteStore(cfg.Upload); err != nil {
					return fmt.Errorf("upload.remote: %w", err)
				}
			}
			if o.LiveRate == 0 && !noAPI {
				// The running eddy's own 5 s rate, if it answers; else the
				// ingest log's arrival times.
				if b, err := a.do("GET", "/api/v1/overview"); err == nil {
					var ov struct {
						RecordsPerSecond float64 `json:"records_per_second"`
					}
					if json.Unmarshal(b, &ov) == nil {
						o.LiveReadings = ov.RecordsPerSecond
					}
				}
			}
			if sim > 0 {
				o.Simulate = &simulate.Options{Devices: 500, Sites: 10, Batch: perMsg, Count: sim,
					Interval: 40 * time.Microsecond, Seed: 1}
				// Event times end now, as a live stream's would: with
				// event_time.idle_advance an old stream would all be late.
				o.Simulate.Start = time.Now().Add(-time.Duration(sim) * o.Simulate.Interval).Truncate(time.Millisecond)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := plan.Measure(ctx, o)
			if err != nil {
				return err
			}
			if !noSave {
				if err := plan.Save(cfg.DataDir, rep); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "eddy plan: not kept:", err)
				}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return rep.WriteTable(cmd.OutOrStdout())
		},
	}
	f := c.Flags()
	a.add(c)
	f.BoolVar(&noAPI, "no-api", false, "do not ask the running eddy for the live rate")
	f.BoolVar(&noRemote, "no-remote", false, "do not measure the restore from upload.remote")
	f.BoolVar(&asJSON, "json", false, "print JSON (the format of GET /api/v1/plan)")
	f.StringVar(&input, "input", "", `replay this file of recorded messages ("topic payload" per line)`)
	f.IntVar(&sim, "simulate", 0, "replay this many readings of the simulator (500 devices on 10 sites)")
	f.IntVar(&perMsg, "readings-per-msg", 50, "with --simulate: readings per message")
	f.DurationVar(&o.Duration, "duration", 20*time.Second, "bound of the replay (2/3 for the maximum, 1/3 after the restore)")
	f.Float64Var(&o.LiveRate, "live-rate", 0, "live input in messages/s (default: the running eddy's rate from its API, else the ingest log's arrival times)")
	f.Int64Var(&o.MaxBytes, "max-bytes", 256<<20, "replay at most this many bytes of the ingest log's newest segments")
	f.StringVar(&scratch, "scratch", "", "scratch directory (default: a new one under $TMPDIR, removed after)")
	f.BoolVar(&keep, "keep", false, "keep the scratch directory")
	f.BoolVar(&noSave, "no-save", false, "do not write data_dir/plan/latest.json")
	return c
}
