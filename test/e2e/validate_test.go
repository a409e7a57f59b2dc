package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/test/eddytest"
)

// TestValidateBinary runs `eddy validate --config F` on broken
// configurations: it exits non-zero and names the key path of every
// problem. A good configuration passes, and `eddy run` refuses a broken
// one before touching anything, naming the key too.
func TestValidateBinary(t *testing.T) {
	good := config{Stages: windowStages("{type: tumbling, size: 10s}"), ResultsFrom: "per_device"}.
		render("/tmp/eddy-e2e-unused", "tcp://127.0.0.1:1883", "127.0.0.1:8086")
	replace := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("the base configuration has no %q", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	cases := []struct {
		name string
		yaml string
		want []string // each must appear in stderr
	}{
		{"mode", replace("mode: exactly_once", "mode: exactly"),
			[]string{"checkpointing.mode: must be one of exactly_once, at_least_once"}},
		{"window size", replace("size: 10s", "size: 0s"),
			[]string{"pipeline.stages[2].window.size"}},
		{"sink from", replace("from: per_device", "from: nope"),
			[]string{"sinks[0].from", "nope"}},
		{"unknown key", replace("  min_pause:", "  intervall: 1s\n  min_pause:"),
			[]string{"checkpointing.intervall: unknown key", "interval"}},
		{"no appliance", replace("appliance_id: e2e\n", ""),
			[]string{"appliance_id"}},
		{"bad aggregate", replace(`"max(temperature)"`, `"median(temperature)"`),
			[]string{"pipeline.stages[2].aggregate.max_temp"}},
		{"duration type", replace("interval: 300ms", "interval: 5"),
			[]string{"checkpointing.interval"}},
		{"every problem at once", strings.NewReplacer("mode: exactly_once", "mode: exactly", "size: 10s", "size: 0s", "qos: 1", "qos: 7").Replace(good),
			[]string{"checkpointing.mode", "pipeline.stages[2].window.size", "mqtt.qos"}},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"validate", "--config", path}, {"run", "--config", path}} {
				stdout, stderr, err := runEddy(t, args...)
				if err == nil {
					t.Errorf("eddy %s: exit 0, want an error\nstdout: %s\nstderr: %s", args[0], stdout, stderr)
					continue
				}
				for _, w := range tc.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("eddy %s: stderr does not name %q:\n%s", args[0], w, stderr)
					}
				}
			}
		})
	}
	t.Run("environment", func(t *testing.T) {
		// A bad EDDY_* override names the key and the variable.
		path := filepath.Join(dir, "env.yaml")
		if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(eddytest.Binary(t), "validate", "--config", path)
		cmd.Env = append(eddytest.CleanEnv(), "EDDY_CHECKPOINTING_INTERVAL=soon")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err == nil {
			t.Errorf("eddy validate with EDDY_CHECKPOINTING_INTERVAL=soon: exit 0")
		}
		for _, w := range []string{"checkpointing.interval", "EDDY_CHECKPOINTING_INTERVAL"} {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("stderr does not name %q:\n%s", w, stderr.String())
			}
		}
	})
	t.Run("good", func(t *testing.T) {
		path := filepath.Join(dir, "good.yaml")
		if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, err := runEddy(t, "validate", "--config", path)
		if err != nil || !strings.Contains(stdout, "ok") {
			t.Errorf("eddy validate on a good configuration: %v\nstdout: %s\nstderr: %s", err, stdout, stderr)
		}
	})
}

// runEddy runs a short-lived eddy command.
func runEddy(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(eddytest.Binary(t), args...)
	cmd.Env = eddytest.CleanEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(exitTimeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("eddy %v did not exit within %v", args, exitTimeout)
	}
	return o.String(), e.String(), err
}
