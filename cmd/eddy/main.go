// Command eddy is a stateful stream processor for one edge appliance:
// MQTT readings in, keyed windowed results out, with Flink-style
// checkpoints in RocksDB. See README.md.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "eddy",
		Short:         "Stateful stream processing for one edge appliance",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(), validateCmd(), simulateCmd(), versionCmd(), checkpointCmd(), checkpointsCmd(), restoreCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "eddy:", err)
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}
