// Package s3test runs a real S3 server for tests: versitygw
// (github.com/versity/versitygw) with its posix backend on a temporary
// directory, listening on a free port of 127.0.0.1.
//
// versitygw must be installed (`make test` does it with `go install
// github.com/versity/versitygw/cmd/versitygw@v1.8.0`): the test fails,
// rather than skips, without it, so that a missing server never passes
// silently. Every server is stopped (killed and reaped) when its test ends.
package s3test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/test/internal/child"
)

// Credentials of the server's root account.
const (
	AccessKey = "eddytestaccess"
	SecretKey = "eddytestsecret0123456789"
	Bucket    = "eddy-test"
)

// Server is a running versitygw owned by one test.
type Server struct {
	t    testing.TB
	bin  string
	Dir  string // the posix backend's root; Dir/Bucket is the bucket
	port int
	mu   sync.Mutex
	proc *child.Proc
	logf string
}

// Binary finds versitygw: $VERSITYGW, then PATH, then $(go env GOPATH)/bin.
func Binary() (string, error) {
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err == nil {
			gopath = string(trimNL(out))
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, "go", "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("versitygw not found: run `make test-deps` " +
		"(go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)")
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// Start launches versitygw with an empty bucket Bucket and waits until it
// answers. t.Cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: bin, Dir: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(s.Dir, Bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	s.logf = filepath.Join(t.TempDir(), "versitygw.log")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(s.logf); err == nil && len(b) > 0 {
				t.Logf("versitygw log:\n%s", tail(b, 4000))
			}
		}
	})
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return nil
	}
	logf, err := os.OpenFile(s.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // versitygw has its own descriptor
	cmd := exec.Command(s.bin, "--access", AccessKey, "--secret", SecretKey, "--port", s.Addr(), "--quiet",
		"posix", s.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p, err := child.Start(cmd, 15*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if err != nil {
		return fmt.Errorf("%w (log %s)", err, s.logf)
	}
	s.proc = p
	return nil
}

// Addr is host:port of the S3 endpoint.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Endpoint is the endpoint URL: http://127.0.0.1:port.
func (s *Server) Endpoint() string { return "http://" + s.Addr() }

// Stop kills the server and waits for it; the data stays for Restart.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proc.Kill()
	s.proc = nil
}

// Restart starts a stopped server again on the same port and data.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// Objects returns the keys stored in the bucket below prefix with their
// sizes, read from the backend directory.
func (s *Server) Objects(prefix string) map[string]int64 {
	s.t.Helper()
	out := map[string]int64{}
	root := filepath.Join(s.Dir, Bucket)
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		key := filepath.ToSlash(rel)
		if len(key) >= len(prefix) && key[:len(prefix)] == prefix {
			out[key] = fi.Size()
		}
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}
