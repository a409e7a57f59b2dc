// Command eddy is a stateful stream processor for one edge appliance:
// MQTT readings in, keyed windowed results out, with Flink-style
// checkpoints in RocksDB. See README.md.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/eddy-stream/eddy/daemon"
)

func main() {
	root := &cobra.Command{
		Use:           "eddy",
		Short:         "Stateful stream processing for one edge appliance",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(), validateCmd(), simulateCmd(), versionCmd(), reloadCmd(), checkpointCmd(), checkpointsCmd(), restoreCmd(),
		savepointCmd(), savepointsCmd(), stateCmd(), planCmd())
	if err := root.Execute(); err != nil {
		code := 1
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			code = ec.ExitCode()
		}
		printError(err)
		os.Exit(code)
	}
}

// printError writes err to stderr. Under systemd every line carries the
// journal priority err ("<3>", sd-daemon(3)), so `journalctl -u eddy -p err`
// shows why eddy did not start.
func printError(err error) {
	prefix := ""
	if daemon.IsJournalStream(os.Stderr) {
		prefix = "<3>"
	}
	lines := strings.Split(strings.TrimRight("eddy: "+err.Error(), "\n"), "\n")
	for _, l := range lines {
		fmt.Fprintln(os.Stderr, prefix+l)
	}
}
