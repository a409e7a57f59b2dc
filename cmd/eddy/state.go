package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/daemon/plan"
	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/storage/savepoint"
)

// stateCmd is `eddy state inspect`: the keyed state of a checkpoint, read
// only. It takes no lock, so it runs next to an eddy on the same data_dir;
// the work is pipeline.InspectCheckpointDir.
func stateCmd() *cobra.Command {
	c := &cobra.Command{Use: "state", Short: "Look at keyed state"}
	var (
		path, dataDir, stage, key, spName, scratch string
		id                                         int64
		asJSON                                     bool
	)
	insp := &cobra.Command{
		Use:   "inspect --checkpoint N|--savepoint NAME [--stage S] [--key K] [--json]",
		Short: "List the open windows, accumulators, timers and key-group sizes of a checkpoint",
		Long: "inspect reads the keyed state of a completed checkpoint in data_dir/checkpoints, read-only:\n" +
			"nothing under checkpoints/ is opened for writing (native checkpoints are opened through a\n" +
			"scratch copy of hard links, full snapshots are read into a scratch RocksDB). It takes no\n" +
			"lock, so it works while eddy runs. Values are decoded with the aggregate lists the\n" +
			"checkpoint records (a checkpoint older than schemas: the configuration's, which must be\n" +
			"those it was written with). See docs/state-inspect.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (id > 0) == (spName != "") {
				return errors.New("give exactly one of --checkpoint N (N ≥ 1) and --savepoint NAME")
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if dataDir == "" {
				dataDir = cfg.DataDir
			}
			layout := datadir.New(dataDir)
			var dir string
			var md *checkpoint.Metadata
			if spName != "" {
				if dir, md, err = savepointDir(layout, spName); err != nil {
					return err
				}
			} else {
				dir = filepath.Join(layout.Checkpoints(), "chk-"+strconv.FormatInt(id, 10))
				if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("no checkpoint %d in %s", id, layout.Checkpoints())
				}
			}
			in, err := inspectDir(dir, md, cfg, stage, key, scratch)
			if err != nil {
				return err
			}
			if asJSON {
				e := json.NewEncoder(cmd.OutOrStdout())
				e.SetIndent("", "  ")
				return e.Encode(in)
			}
			printInspection(cmd.OutOrStdout(), in)
			return nil
		},
	}
	insp.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration file (data_dir and the stages' aggregates)")
	insp.Flags().StringVar(&dataDir, "data-dir", "", "data directory (default: data_dir of the configuration)")
	insp.Flags().Int64Var(&id, "checkpoint", 0, "checkpoint id (see `eddy checkpoints`)")
	insp.Flags().StringVar(&spName, "savepoint", "", "savepoint name")
	insp.Flags().StringVar(&stage, "stage", "", "only this keyed stage")
	insp.Flags().StringVar(&key, "key", "", "only this key, as results show it (site-3|dev-0003)")
	insp.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of tables")
	insp.Flags().StringVar(&scratch, "scratch-dir", "", "where the temporary read-only copy goes (default: the system's temporary directory)")
	c.AddCommand(insp)
	return c
}

// savepointDir is where savepoint name lives, and its metadata.
func savepointDir(layout datadir.Layout, name string) (string, *checkpoint.Metadata, error) {
	if err := savepoint.ValidName(name); err != nil {
		return "", nil, fmt.Errorf("--savepoint %q: %w", name, err)
	}
	dir := filepath.Join(layout.Savepoints(), name)
	if _, err := os.Stat(dir); err != nil {
		return "", nil, fmt.Errorf("no savepoint named %q (looked in %s)", name, dir)
	}
	md, err := savepoint.Load(dir)
	if err != nil {
		return "", nil, err
	}
	return dir, md.Checkpoint(), nil
}

// inspectDir inspects the checkpoint-layout directory dir (a checkpoint,
// or a savepoint with its metadata md) with the stages of cfg.
func inspectDir(dir string, md *checkpoint.Metadata, cfg *config.Config, stage, key, scratch string) (*pipeline.Inspection, error) {
	return pipeline.InspectCheckpointDir(dir, pipeline.InspectOptions{
		Stages: plan.StageSpecs(cfg), Stage: stage, Key: key, Scratch: scratch, Metadata: md,
	})
}

func fmtTS(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z") }

func printInspection(w io.Writer, in *pipeline.Inspection) {
	fmt.Fprintf(w, "checkpoint %d (%s), parallelism %d, max_parallelism %d, %s\n", in.Checkpoint, in.Dir,
		in.Parallelism, in.MaxParallelism, map[bool]string{true: "incremental", false: "full snapshots"}[in.Incremental])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nTASK\tKIND\tKEY GROUPS\tWATERMARK\tTIMERS\tSTATE SIZE")
	for _, t := range in.Tasks {
		wm := "-inf"
		if t.Watermark > -1<<62 {
			wm = fmtTS(t.Watermark)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d-%d\t%s\t%s\t%s\n", t.Task, t.Kind, t.KeyGroupStart, t.KeyGroupEnd, wm, t.TimerMode, humanBytes(t.StateSize))
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSTAGE\tKEY\tKG\tWINDOW START\tWINDOW END\tFIRINGS\tAGGREGATES\tTIMERS")
	for _, k := range in.Keys {
		tms := make([]string, len(k.Timers))
		for i, t := range k.Timers {
			tms[i] = fmtTS(t)
		}
		if len(k.Windows) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%d\t-\t-\t-\t-\t%s\n", k.Stage, k.Key, k.KeyGroup, strings.Join(tms, ","))
		}
		for i, win := range k.Windows {
			aggs := make([]string, len(win.Accs))
			for j, a := range win.Accs {
				aggs[j] = fmtAcc(a)
			}
			t := ""
			if i == 0 {
				t = strings.Join(tms, ",")
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", k.Stage, k.Key, k.KeyGroup, fmtTS(win.Start), fmtTS(win.End),
				win.Firings, strings.Join(aggs, " "), t)
		}
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nTASK\tKEY GROUP\tKEYS\tTIMERS\tBYTES")
	var keys, tms int
	var bytes int64
	for _, g := range in.KeyGroups {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", g.Task, g.KeyGroup, g.Keys, g.Timers, g.Bytes)
		keys, tms, bytes = keys+g.Keys, tms+g.Timers, bytes+g.Bytes
	}
	fmt.Fprintf(tw, "total\t%d groups\t%d\t%d\t%d\n", len(in.KeyGroups), keys, tms, bytes)
	tw.Flush()
}

// fmtAcc prints an accumulator as name=fn(state)=result, with "(partial)"
// when it was added by a migration while the window was open.
func fmtAcc(a pipeline.AccState) string {
	if a.Partial {
		a.Partial = false
		return fmtAcc(a) + "(partial)"
	}
	if !a.Set {
		return a.Name + "=" + a.Func + "(empty)"
	}
	res := "-"
	if a.Result != nil {
		res = strconv.FormatFloat(*a.Result, 'g', -1, 64)
	}
	switch a.Func {
	case "count":
		return fmt.Sprintf("%s=%d", a.Name, a.Count)
	case "sum":
		return fmt.Sprintf("%s=%s(n=%d)", a.Name, res, a.Count)
	case "avg":
		return fmt.Sprintf("%s=%s(n=%d,sum=%s)", a.Name, res, a.Count, strconv.FormatFloat(a.Value, 'g', -1, 64))
	case "first", "last":
		return fmt.Sprintf("%s=%s@%s", a.Name, res, fmtTS(a.Timestamp))
	}
	return a.Name + "=" + res
}
