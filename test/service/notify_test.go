package service

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// notifySocket plays systemd's side of sd_notify: a unixgram socket that
// records every datagram eddy sends (NOTIFY_SOCKET).
type notifySocket struct {
	t    *testing.T
	path string
	conn *net.UnixConn

	mu   sync.Mutex
	msgs []notifyMsg
}

// notifyMsg is one datagram: newline-separated KEY=VALUE assignments.
type notifyMsg struct {
	at     time.Time
	fields map[string]string
	raw    string
}

func (m notifyMsg) has(k string) bool { _, ok := m.fields[k]; return ok }

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{t: t, path: path, conn: conn}
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
			m := notifyMsg{at: time.Now(), raw: string(buf[:k]), fields: map[string]string{}}
			for _, line := range strings.Split(m.raw, "\n") {
				if key, val, ok := strings.Cut(line, "="); ok {
					m.fields[key] = val
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

func (n *notifySocket) env() string { return "NOTIFY_SOCKET=" + n.path }

// since returns the datagrams from index i on, and the next index.
func (n *notifySocket) since(i int) ([]notifyMsg, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	i = min(i, len(n.msgs))
	return append([]notifyMsg(nil), n.msgs[i:]...), len(n.msgs)
}

func (n *notifySocket) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.msgs)
}

// waitFor waits for a datagram from index from on that satisfies ok and
// returns it with its index.
func (n *notifySocket) waitFor(from int, timeout time.Duration, what string, ok func(notifyMsg) bool) (notifyMsg, int) {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ms, _ := n.since(from)
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
func (n *notifySocket) pings(from, to time.Time) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		if m.fields["WATCHDOG"] == "1" && !m.at.Before(from) && m.at.Before(to) {
			c++
		}
	}
	return c
}

func isKey(k, v string) func(notifyMsg) bool {
	return func(m notifyMsg) bool { return m.fields[k] == v }
}
