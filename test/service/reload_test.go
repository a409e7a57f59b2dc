package service

import (
	"os"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/daemon"
)

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
	out, code := e.CommandStatus("reload", "-c", e.ConfigPath)
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
	out, code = e.CommandStatus("reload", "-c", e.ConfigPath)
	if code == 0 || !strings.Contains(out, "window changed from") || !strings.Contains(out, "reload refused") {
		t.Errorf("reload of a window change: exit %d\n%s", code, out)
	}
	refused = c
	refused.Mode = "at_least_once"
	e.writeConfig(refused)
	out, code = e.CommandStatus("reload", "-c", e.ConfigPath)
	if code == 0 || !strings.Contains(out, "needs a restart") || !strings.Contains(out, "refused") {
		t.Errorf("reload of checkpointing.mode: exit %d\n%s", code, out)
	}

	if err := os.WriteFile(e.ConfigPath, []byte("checkpointing: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = e.CommandStatus("reload", "-c", e.ConfigPath)
	if code != daemon.ExitConfigInvalid || !strings.Contains(out, "reload refused") {
		t.Errorf("reload of a broken file: exit %d, want %d\n%s", code, daemon.ExitConfigInvalid, out)
	}
	if out, code := e.CommandStatus("validate", "-c", e.ConfigPath); code != daemon.ExitConfigInvalid {
		t.Errorf("validate of a broken file: exit %d, want %d\n%s", code, daemon.ExitConfigInvalid, out)
	}
	if out, code := e.CommandStatus("run", "-c", e.ConfigPath); code != daemon.ExitConfigInvalid {
		t.Errorf("run with a broken file: exit %d, want %d\n%s", code, daemon.ExitConfigInvalid, out)
	}
	p.MustGet("/api/v1/checkpoints/config", &cc)
	if cc.Interval != 2000 {
		t.Errorf("interval %d ms after refused reloads, want 2000 kept", cc.Interval)
	}
}
