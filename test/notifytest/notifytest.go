// Package notifytest plays systemd's side of sd_notify(3) in tests: a
// unixgram socket at NOTIFY_SOCKET that records every datagram.
package notifytest

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Socket plays systemd's side of sd_notify: a unixgram socket that
// records every datagram eddy sends (NOTIFY_SOCKET).
type Socket struct {
	t    *testing.T
	path string
	conn *net.UnixConn

	mu   sync.Mutex
	msgs []Msg
}

// Msg is one datagram: newline-separated KEY=VALUE assignments.
type Msg struct {
	At     time.Time
	Fields map[string]string
	Raw    string
}

func (m Msg) Has(k string) bool { _, ok := m.Fields[k]; return ok }

func Listen(t *testing.T) *Socket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &Socket{t: t, path: path, conn: conn}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			k, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Logf("notify socket: %v", err)
				}
				return
			}
			m := Msg{At: time.Now(), Raw: string(buf[:k]), Fields: map[string]string{}}
			for _, line := range strings.Split(m.Raw, "\n") {
				if key, val, ok := strings.Cut(line, "="); ok {
					m.Fields[key] = val
				}
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, m)
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return n
}

func (n *Socket) Env() string { return "NOTIFY_SOCKET=" + n.path }

// since returns the datagrams from index i on, and the next index.
func (n *Socket) Since(i int) ([]Msg, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	i = min(i, len(n.msgs))
	return append([]Msg(nil), n.msgs[i:]...), len(n.msgs)
}

func (n *Socket) Count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.msgs)
}

// waitFor waits for a datagram from index from on that satisfies ok and
// returns it with its index.
func (n *Socket) WaitFor(from int, timeout time.Duration, what string, ok func(Msg) bool) (Msg, int) {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ms, _ := n.Since(from)
		for i, m := range ms {
			if ok(m) {
				return m, from + i
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("no sd_notify datagram with %s within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pings counts WATCHDOG=1 datagrams received in [from, to).
func (n *Socket) Pings(from, to time.Time) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		if m.Fields["WATCHDOG"] == "1" && !m.At.Before(from) && m.At.Before(to) {
			c++
		}
	}
	return c
}

func IsKey(k, v string) func(Msg) bool {
	return func(m Msg) bool { return m.Fields[k] == v }
}

// Path is the socket's path, the value of NOTIFY_SOCKET.
func (n *Socket) Path() string { return n.path }
