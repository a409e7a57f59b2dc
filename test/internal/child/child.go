// Package child runs the helper servers of the tests (mosquitto for
// test/mqtttest, versitygw for test/s3test): start, wait until the server
// is ready, signal, kill and reap. It is internal to test/, so that only
// the test helpers use it.
package child

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Proc is a started helper process.
type Proc struct {
	cmd  *exec.Cmd
	done chan error
}

// Start starts cmd and polls ready every 10 ms until it holds. If cmd
// exits first, or ready does not hold within timeout (cmd is then killed
// and reaped), it returns an error.
func Start(cmd *exec.Cmd, timeout time.Duration, ready func() bool) (*Proc, error) {
	name := filepath.Base(cmd.Path)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec %s: %w", cmd.Path, err)
	}
	p := &Proc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("%s exited before it was ready: %v", name, err)
		default:
		}
		if ready() {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, fmt.Errorf("%s not ready within %v", name, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill kills the process (SIGKILL, as a crash would) and reaps it. A nil
// Proc does nothing.
func (p *Proc) Kill() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	err := <-p.done
	p.done <- err // a second Kill returns at once
}
