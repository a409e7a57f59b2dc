package mqtttest_test

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eddy-stream/eddy/test/mqtttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// connack sends a minimal MQTT 3.1.1 CONNECT and returns the CONNACK bytes.
func connack(t *testing.T, addr string) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// CONNECT, remaining length 14: "MQTT", level 4, clean session, keepalive 60, client id "t".
	connect := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 1, 't'}
	if _, err := c.Write(connect); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	return buf
}

func TestStartRestartStop(t *testing.T) {
	b := mqtttest.Start(t)
	if !strings.HasPrefix(b.URL(), "tcp://127.0.0.1:") {
		t.Fatalf("URL = %q", b.URL())
	}
	want := []byte{0x20, 2, 0, 0} // CONNACK, accepted
	if got := connack(t, b.Addr()); !bytes.Equal(got, want) {
		t.Fatalf("CONNACK = %x, want %x", got, want)
	}
	port := b.Port()
	b.Restart()
	if b.Port() != port {
		t.Fatalf("port changed on restart: %d -> %d", port, b.Port())
	}
	if got := connack(t, b.Addr()); !bytes.Equal(got, want) {
		t.Fatalf("after restart CONNACK = %x, want %x", got, want)
	}
	b.Stop()
	if c, err := net.DialTimeout("tcp", b.Addr(), 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("broker still accepts connections after Stop")
	}
	b.Stop() // idempotent
}

func TestConfigApplied(t *testing.T) {
	b := mqtttest.Start(t, mqtttest.WithConfig("max_keepalive 100"))
	if got := connack(t, b.Addr()); got[3] != 0 {
		t.Fatalf("CONNACK return code %d", got[3])
	}
}
