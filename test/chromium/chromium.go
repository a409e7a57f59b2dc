// Package chromium runs Debian's headless Chromium for page tests: it
// loads a URL and returns what Chromium printed (--dump-dom) or wrote
// (--screenshot=…). The whole process group is killed when it returns, so
// no renderer outlives the test.
package chromium

import (
	"bytes"
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Run loads url in headless Chromium with the flags every page test needs
// (1280×2000 window, 5 s of virtual time) plus flags, and returns its
// standard output. A missing chromium fails the test with the command that
// installs it.
func Run(tb testing.TB, url string, flags ...string) string {
	tb.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		tb.Fatal("chromium is not installed: run `make test-deps` (apt-get install chromium)")
	}
	// A bound for a hung browser, not a measure of speed.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + tb.TempDir(), "--window-size=1280,2000",
		"--virtual-time-budget=5000"}, flags...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers left behind, if any
	if err != nil {
		tb.Fatalf("chromium %s: %v\n%s", url, err, errb.String())
	}
	return out.String()
}
