package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/test/eddytest"
)

// TestSecondEddyOnLockedDataDir: while one eddy runs, a second `eddy run`
// on the same configuration (so the same data_dir) exits at once,
// non-zero, naming the holder's PID, and touches nothing: the first keeps
// running and answers.
func TestSecondEddyOnLockedDataDir(t *testing.T) {
	b := startBroker(t)
	e := newEddy(t, b, config{Stages: windowStages("{type: tumbling, size: 10s}"), ResultsFrom: "per_device"})
	p := e.StartReady()

	// A bound for a hung second eddy, not a measure of speed.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, eddytest.Binary(t), "run", "--config", e.ConfigPath)
	cmd.Dir, cmd.Env = e.Dir, eddytest.CleanEnv()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if ctx.Err() != nil || !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("second eddy: err %v (ctx %v), want a non-zero exit\n%s", err, ctx.Err(), out)
	}
	want := fmt.Sprintf("LOCK is locked by another eddy (pid %d)", p.Pid())
	if !strings.Contains(string(out), want) {
		t.Fatalf("second eddy said %q, want it to contain %q", out, want)
	}
	if p.Exited() {
		t.Fatal("the first eddy exited")
	}
	_ = p.Overview() // still answers
	p.Stop()
}
