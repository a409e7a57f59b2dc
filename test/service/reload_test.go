package service

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/daemon"
)

// exitCode runs another eddy subcommand of e and returns its output and
// exit status.
func exitCode(t *testing.T, e *eddy, args ...string) (string, int) {
	t.Helper()
	out, err := e.Command(args...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &ee):
		return out, ee.ExitCode()
	}
	t.Fatalf("eddy %s: %v", strings.Join(args, " "), err)
	return "", 0
}

// TestReloadCommand runs `eddy reload` (the unit's ExecReload) against a
// running eddy: an applied change exits 0, a change that needs a restart
// and a file that does not load exit non-zero (78 for the file) with the
// reason, and the running configuration is kept.
func TestReloadCommand(t *testing.T) {
	c := testConfig{Interval: "3s"}
	e := newEddy(t, c)
	p := e.start()
	defer p.Stop()

	c.Interval = "2s"
	e.writeConfig(c)
	out, code := exitCode(t, e, "reload", "-c", e.ConfigPath)
	if code != 0 || !strings.Contains(out, "reloaded checkpointing.interval") {
		t.Errorf("reload of the interval: exit %d\n%s", code, out)
	}
	var cc daemon.CheckpointConfig
	p.MustGet("/api/v1/checkpoints/config", &cc)
	if cc.Interval != 2000 {
		t.Errorf("interval %d ms after the reload, want 2000", cc.Interval)
	}

	// A window change does not fit the running state: refused with the
	// words of a refused restore (test/e2e/reload_test.go applies one
	// that fits).
	refused := c
	refused.Window = "20s"
	e.writeConfig(refused)
	out, code = exitCode(t, e, "reload", "-c", e.ConfigPath)
	if code == 0 || !strings.Contains(out, "window changed from") || !strings.Contains(out, "reload refused") {
		t.Errorf("reload of a window change: exit %d\n%s", code, out)
	}
	refused = c
	refused.Mode = "at_least_once"
	e.writeConfig(refused)
	out, code = exitCode(t, e, "reload", "-c", e.ConfigPath)
	if code == 0 || !strings.Contains(out, "needs a restart") || !strings.Contains(out, "refused") {
		t.Errorf("reload of checkpointing.mode: exit %d\n%s", code, out)
	}

	if err := os.WriteFile(e.ConfigPath, []byte("checkpointing: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = exitCode(t, e, "reload", "-c", e.ConfigPath)
	if code != daemon.ExitConfigInvalid || !strings.Contains(out, "reload refused") {
		t.Errorf("reload of a broken file: exit %d, want %d\n%s", code, daemon.ExitConfigInvalid, out)
	}
	if out, code := exitCode(t, e, "validate", "-c", e.ConfigPath); code != daemon.ExitConfigInvalid {
		t.Errorf("validate of a broken file: exit %d, want %d\n%s", code, daemon.ExitConfigInvalid, out)
	}
	if out, code := exitCode(t, e, "run", "-c", e.ConfigPath); code != daemon.ExitConfigInvalid {
		t.Errorf("run with a broken file: exit %d, want %d\n%s", code, daemon.ExitConfigInvalid, out)
	}
	p.MustGet("/api/v1/checkpoints/config", &cc)
	if cc.Interval != 2000 {
		t.Errorf("interval %d ms after refused reloads, want 2000 kept", cc.Interval)
	}
}
