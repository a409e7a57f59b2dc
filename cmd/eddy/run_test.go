package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"

	"github.com/eddy-stream/eddy/daemon"
)

// A configuration that does not load or validate makes `eddy run` and
// `eddy validate` exit with daemon.ExitConfigInvalid.
func TestInvalidConfigExitStatus(t *testing.T) {
	dir := t.TempDir()
	invalid := filepath.Join(dir, "invalid.yaml")
	if err := os.WriteFile(invalid, []byte("appliance_id: x\nno_such_key: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(dir, "missing.yaml")
	for _, c := range []struct {
		name string
		cmd  func() *cobra.Command
		path string
	}{
		{"validate/invalid", validateCmd, invalid},
		{"validate/missing", validateCmd, unreadable},
		{"run/invalid", runCmd, invalid},
		{"run/missing", runCmd, unreadable},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := c.cmd()
			cmd.SetArgs([]string{"-c", c.path})
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			err := cmd.Execute()
			var ee exitError
			if !errors.As(err, &ee) || ee.code != daemon.ExitConfigInvalid {
				t.Fatalf("err %v, want exit status %d", err, daemon.ExitConfigInvalid)
			}
		})
	}
}
