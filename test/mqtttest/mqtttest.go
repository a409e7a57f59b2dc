// Package mqtttest runs a real mosquitto broker for tests.
//
// Start launches `mosquitto -c <conf>` on a free port of 127.0.0.1 with a
// configuration that never drops or throttles QoS 1/2 messages on its own:
// unlimited in-flight and queued messages (max_inflight_messages 0,
// max_queued_messages 0, max_queued_bytes 0), no persistence and anonymous
// access. The broker is stopped (killed and reaped) when the test ends.
//
// mosquitto must be installed: the test fails, rather than skips, without it,
// because `make test` installs it and a silently skipped broker test hides
// the very behaviour the tests exist to check.
package mqtttest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/test/internal/child"
)

// Binary is the mosquitto executable Start looks for when it is not on PATH.
const Binary = "/usr/sbin/mosquitto"

// startTimeout bounds how long Start and Restart wait for the listener.
const startTimeout = 10 * time.Second

// Option changes the broker Start launches.
type Option func(*config)

type config struct {
	extra    []string
	certFile string
	keyFile  string
}

// WithConfig appends raw lines to the generated mosquitto.conf, after the
// defaults (a later line wins for global options).
func WithConfig(lines ...string) Option {
	return func(c *config) { c.extra = append(c.extra, lines...) }
}

// WithTLS makes the listener speak TLS with the given PEM server certificate
// and key; URL then starts with ssl://.
func WithTLS(certFile, keyFile string) Option {
	return func(c *config) { c.certFile, c.keyFile = certFile, keyFile }
}

// Broker is a running mosquitto owned by one test.
type Broker struct {
	t    testing.TB
	bin  string
	dir  string
	conf string
	port int
	tls  bool
	mu   sync.Mutex
	proc *child.Proc
	log  *tailBuffer
}

// Start launches mosquitto on a free 127.0.0.1 port and waits until it
// accepts connections. The test fails if mosquitto is missing or does not
// come up; t.Cleanup stops it.
func Start(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat(Binary); serr != nil {
			t.Fatalf("mosquitto not installed: run make test, which installs it (looked on PATH and at %s)", Binary)
		}
		bin = Binary
	}
	b := &Broker{t: t, bin: bin, dir: t.TempDir(), log: &tailBuffer{max: 64 << 10}, tls: c.certFile != ""}
	t.Cleanup(func() {
		b.Stop()
		if t.Failed() {
			t.Logf("mosquitto log (tail):\n%s", b.log.String())
		}
	})
	// A free port can be taken by someone else between the probe and
	// mosquitto's bind; try a few.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		b.port, err = freePort()
		if err != nil {
			t.Fatalf("mqtttest: find a free port: %v", err)
		}
		if err := b.writeConf(c); err != nil {
			t.Fatalf("mqtttest: %v", err)
		}
		if lastErr = b.start(); lastErr == nil {
			return b
		}
	}
	t.Fatalf("mqtttest: start mosquitto: %v\nlog:\n%s", lastErr, b.log.String())
	return nil
}

func (b *Broker) writeConf(c config) error {
	lines := []string{
		fmt.Sprintf("listener %d 127.0.0.1", b.port),
		"allow_anonymous true",
		"persistence false",
		"max_inflight_messages 0",
		"max_inflight_bytes 0",
		"max_queued_messages 0",
		"max_queued_bytes 0",
		"set_tcp_nodelay true",
		"log_dest stderr",
		"log_type error",
		"log_type warning",
		"log_type notice",
		"log_type information",
		"connection_messages true",
		"log_timestamp_format %H:%M:%S",
	}
	if os.Geteuid() == 0 {
		// Stay root rather than switching to the mosquitto user, which could
		// not read files in the test's temporary directory.
		lines = append(lines, "user root")
	}
	if c.certFile != "" {
		lines = append(lines, "certfile "+c.certFile, "keyfile "+c.keyFile)
	}
	lines = append(lines, c.extra...)
	b.conf = filepath.Join(b.dir, "mosquitto.conf")
	return os.WriteFile(b.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

func (b *Broker) start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc != nil {
		return errors.New("already running")
	}
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.Stdout = b.log
	cmd.Stderr = b.log
	p, err := child.Start(cmd, startTimeout, b.accepts)
	if err != nil {
		return fmt.Errorf("mosquitto on port %d: %w", b.port, err)
	}
	b.proc = p
	return nil
}

// accepts reports whether the listener completes a TCP (and, for a TLS
// listener, a TLS) handshake.
func (b *Broker) accepts() bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	if !b.tls {
		return true
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // readiness probe only
	_ = tc.SetDeadline(time.Now().Add(time.Second))
	return tc.Handshake() == nil
}

// URL is the broker's address for an MQTT client: tcp://127.0.0.1:port, or
// ssl://127.0.0.1:port with WithTLS.
func (b *Broker) URL() string {
	scheme := "tcp"
	if b.tls {
		scheme = "ssl"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, b.port)
}

// Addr is host:port of the listener.
func (b *Broker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// Port is the listener's TCP port; it stays the same across Restart.
func (b *Broker) Port() int { return b.port }

// Log returns the tail of mosquitto's log.
func (b *Broker) Log() string { return b.log.String() }

// Stop kills mosquitto (SIGKILL, as a crash would) and waits for it to exit.
// Without persistence every session and queued message is lost. Stopping a
// stopped broker does nothing.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.proc.Kill()
	b.proc = nil
}

// Pause freezes mosquitto (SIGSTOP): connections stay open but nothing is
// read, acknowledged or delivered, as with a hung broker. Resume or Stop
// ends it.
func (b *Broker) Pause() { b.signal(syscall.SIGSTOP) }

// Resume continues a paused mosquitto (SIGCONT).
func (b *Broker) Resume() { b.signal(syscall.SIGCONT) }

func (b *Broker) signal(sig syscall.Signal) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc == nil {
		b.t.Fatalf("mqtttest: signal %v: mosquitto is not running", sig)
	}
	if err := b.proc.Signal(sig); err != nil {
		b.t.Fatalf("mqtttest: signal %v: %v", sig, err)
	}
}

// Restart stops mosquitto if it runs and starts it again on the same port.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	deadline := time.Now().Add(startTimeout)
	for {
		err := b.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mqtttest: restart mosquitto on port %d: %v\nlog:\n%s", b.port, err, b.log.String())
		}
		time.Sleep(50 * time.Millisecond) // the port may still be held briefly
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if over := w.buf.Len() - w.max; over > 0 {
		w.buf.Next(over)
	}
	return len(p), nil
}

func (w *tailBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
