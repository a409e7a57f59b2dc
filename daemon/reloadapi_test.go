package daemon

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runEddy runs the eddy binary with args and extra environment and returns
// its output and exit status.
func runEddy(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("eddy %s: %v", strings.Join(args, " "), err)
	return "", 0
}

// TestReloadCommand runs `eddy reload` (the unit's ExecReload) against a
// running eddy: an applied change exits 0, a change that needs a restart
// and a file that does not load exit non-zero (78 for the file) with the
// reason, and the running configuration is kept.
func TestReloadCommand(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	c := testConfig{DataDir: filepath.Join(dir, "data"), Interval: "3s", MinPause: "100ms", Out: filepath.Join(dir, "out.jsonl")}
	writeConfig(t, cfgPath, c)
	p := startEddy(t, cfgPath)
	defer func() {
		p.signal(syscall.SIGTERM)
		p.wait(60 * time.Second)
	}()
	// The file says 127.0.0.1:0; tell eddy reload where this one listens.
	env := []string{"EDDY_HTTP_LISTEN=" + strings.TrimPrefix(p.httpURL, "http://")}

	c.Interval = "2s"
	writeConfig(t, cfgPath, c)
	out, code := runEddy(t, env, "reload", "-c", cfgPath)
	if code != 0 || !strings.Contains(out, "reloaded checkpointing.interval") {
		t.Errorf("reload of the interval: exit %d\n%s", code, out)
	}
	var cc CheckpointConfig
	p.get("/api/v1/checkpoints/config", &cc)
	if cc.Interval != 2000 {
		t.Errorf("interval %d ms after the reload, want 2000", cc.Interval)
	}

	refused := c
	refused.Window = "20s"
	writeConfig(t, cfgPath, refused)
	out, code = runEddy(t, env, "reload", "-c", cfgPath)
	if code == 0 || !strings.Contains(out, "needs a restart") || !strings.Contains(out, "refused") {
		t.Errorf("reload of a window change: exit %d\n%s", code, out)
	}

	if err := os.WriteFile(cfgPath, []byte("checkpointing: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = runEddy(t, env, "reload", "-c", cfgPath)
	if code != 78 || !strings.Contains(out, "reload refused") {
		t.Errorf("reload of a broken file: exit %d, want 78\n%s", code, out)
	}
	if out, code := runEddy(t, nil, "validate", "-c", cfgPath); code != 78 {
		t.Errorf("validate of a broken file: exit %d, want 78\n%s", code, out)
	}
	if out, code := runEddy(t, nil, "run", "-c", cfgPath); code != 78 {
		t.Errorf("run with a broken file: exit %d, want 78\n%s", code, out)
	}
	p.get("/api/v1/checkpoints/config", &cc)
	if cc.Interval != 2000 {
		t.Errorf("interval %d ms after refused reloads, want 2000 kept", cc.Interval)
	}
}
