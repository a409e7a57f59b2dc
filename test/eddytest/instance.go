package eddytest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Deadlines. CI is a slow 2-core box: they are generous, and only bound how
// long a test waits for a condition before it gives up.
const (
	ReadyTimeout = 90 * time.Second  // start → /healthz 200
	LongTimeout  = 180 * time.Second // input read, results delivered, uploads
	ExitTimeout  = 60 * time.Second  // a signal → the process gone
	PollEvery    = 100 * time.Millisecond
)

// Config is what New needs for one appliance.
type Config struct {
	// YAML returns the configuration file, given the instance (its Dir,
	// DataDir and HTTPAddr).
	YAML func(in *Instance) string
	// Env is added to the environment of every command the instance runs
	// (credentials, for example).
	Env []string
}

// Instance is one appliance: a directory holding its configuration file and
// its data directory, an HTTP address, and the runs of the binary on them.
// The embedded *Process is the newest run, so that in.Overview() asks the
// eddy that runs now; it is nil before the first Start.
type Instance struct {
	*Process

	TB         testing.TB
	Dir        string // t.TempDir(): config, logs, data
	ConfigPath string // Dir/eddy.yaml
	DataDir    string // Dir/data
	HTTPAddr   string // 127.0.0.1:<free port>, for http.listen
	Env        []string

	runs   []*Process
	client *http.Client
}

// New makes the instance's directory and writes its configuration. When the
// test ends, every run still alive is killed (SIGKILL to its process
// group), and if the test failed, the runs' logs are printed; with
// E2E_KEEP_DIR=/some/dir the directory of a failed test is copied there.
func New(tb testing.TB, cfg Config) *Instance {
	tb.Helper()
	dir := tb.TempDir()
	in := &Instance{
		TB: tb, Dir: dir, ConfigPath: filepath.Join(dir, "eddy.yaml"), DataDir: filepath.Join(dir, "data"),
		HTTPAddr: fmt.Sprintf("127.0.0.1:%d", FreePort(tb)), Env: cfg.Env,
		client: &http.Client{Timeout: 30 * time.Second},
	}
	if cfg.YAML != nil {
		in.WriteConfig(cfg.YAML(in))
	}
	tb.Cleanup(func() {
		in.killAll()
		if tb.Failed() {
			in.DumpLogs()
			in.keep()
		}
		in.client.CloseIdleConnections()
	})
	return in
}

// Start is New and StartReady: an eddy running on cfg, ready.
func Start(tb testing.TB, cfg Config, env ...string) *Process {
	tb.Helper()
	return New(tb, cfg).StartReady(env...)
}

// WriteConfig replaces the configuration file (for a reload or a restart).
func (in *Instance) WriteConfig(yaml string) {
	in.TB.Helper()
	if err := os.WriteFile(in.ConfigPath, []byte(yaml), 0o644); err != nil {
		in.TB.Fatal(err)
	}
}

// Path is a path under the data directory.
func (in *Instance) Path(rel string) string { return filepath.Join(in.DataDir, rel) }

// URL is the base URL of the HTTP API.
func (in *Instance) URL() string { return "http://" + in.HTTPAddr }

// Runs are the runs so far, oldest first.
func (in *Instance) Runs() []*Process { return in.runs }

// Start runs `eddy run --config ConfigPath` in the instance's directory, in
// its own process group, stdout and stderr into a new log file; env adds
// variables (EDDY_FAILPOINTS=..., NOTIFY_SOCKET=...). It does not wait.
func (in *Instance) Start(env ...string) *Process {
	in.TB.Helper()
	return in.StartArgs(nil, env...)
}

// StartArgs is Start with more arguments of eddy run (--from-savepoint N).
func (in *Instance) StartArgs(args []string, env ...string) *Process {
	in.TB.Helper()
	if p := in.Process; p != nil && !p.Exited() {
		in.TB.Fatalf("eddy is already running (pid %d)", p.Pid())
	}
	logPath := filepath.Join(in.Dir, fmt.Sprintf("eddy-%02d.log", len(in.runs)+1))
	f, err := os.Create(logPath)
	if err != nil {
		in.TB.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(Binary(in.TB), append([]string{"run", "--config", in.ConfigPath}, args...)...)
	cmd.Dir = in.Dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(append(CleanEnv(), in.Env...), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		in.TB.Fatalf("start eddy: %v", err)
	}
	p := &Process{in: in, cmd: cmd, done: make(chan struct{}), LogPath: logPath, StartEnv: env}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	in.runs = append(in.runs, p)
	in.Process = p
	return p
}

// StartReady is Start and WaitReady.
func (in *Instance) StartReady(env ...string) *Process {
	in.TB.Helper()
	p := in.Start(env...)
	p.WaitReady()
	return p
}

// Command runs another eddy subcommand (validate, restore, checkpoint ...)
// to completion with the instance's environment and returns its combined
// output.
func (in *Instance) Command(args ...string) (string, error) {
	cmd := exec.Command(Binary(in.TB), args...)
	cmd.Dir = in.Dir
	cmd.Env = append(CleanEnv(), in.Env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// CommandStatus is Command that returns the exit status too; it fails the
// test when the command does not run at all.
func (in *Instance) CommandStatus(args ...string) (string, int) {
	in.TB.Helper()
	out, err := in.Command(args...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &ee):
		return out, ee.ExitCode()
	}
	in.TB.Fatalf("eddy %s: %v\n%s", strings.Join(args, " "), err, out)
	return out, -1
}

func (in *Instance) killAll() {
	for _, p := range in.runs {
		p.killWait()
	}
}

// DumpLogs logs the tails of the newest runs' logs, and the warnings and
// errors of older ones.
func (in *Instance) DumpLogs() {
	const maxRuns = 3
	for i, p := range in.runs {
		if i < len(in.runs)-maxRuns {
			var lines []string
			for _, line := range strings.Split(Tail(p.LogPath, 100000), "\n") {
				if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
					lines = append(lines, line)
				}
			}
			if len(lines) > 15 {
				lines = lines[len(lines)-15:]
			}
			in.TB.Logf("eddy run %d (%s, env %v, exit %v): warnings and errors:\n%s", i+1, p.LogPath, p.StartEnv, p.err, strings.Join(lines, "\n"))
			continue
		}
		in.TB.Logf("eddy run %d (%s, env %v, exit %v), log tail:\n%s", i+1, p.LogPath, p.StartEnv, p.err, Tail(p.LogPath, 80))
	}
}

func (in *Instance) keep() {
	keep := os.Getenv("E2E_KEEP_DIR")
	if keep == "" {
		return
	}
	to := filepath.Join(keep, strings.NewReplacer("/", "_", " ", "_").Replace(in.TB.Name()))
	if out, err := exec.Command("cp", "-a", in.Dir, to).CombinedOutput(); err != nil {
		in.TB.Logf("keep %s: %v %s", in.Dir, err, out)
	} else {
		in.TB.Logf("kept %s in %s", in.Dir, to)
	}
}

// CleanEnv is the test's environment without what would change how eddy
// runs: EDDY_* (overrides of the configuration), AWS_* (credentials), and
// the variables systemd passes to a service.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "EDDY_"), strings.HasPrefix(k, "AWS_"), strings.HasPrefix(k, "WATCHDOG_"),
			k == "NOTIFY_SOCKET", k == "JOURNAL_STREAM", k == "LISTEN_FDS", k == "LISTEN_PID":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// FreePort is a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Tail returns the last n lines of a file.
func Tail(path string, n int) string {
	if path == "" {
		return ""
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Poll calls cond every interval until it holds (true) or timeout passes
// (false).
func Poll(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
	return true
}
