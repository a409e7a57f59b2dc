package mqttio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(acc)
			return
		}
		acc <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, ok := <-acc
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestCoalescerWritesEverythingInOrder: every byte Write accepted reaches
// the peer, in order, Close included (the DISCONNECT case), and Write
// after Close fails as on a closed connection.
func TestCoalescerWritesEverythingInOrder(t *testing.T) {
	raw, server := tcpPair(t)
	c := &bufConn{Conn: raw, w: newCoalescer(raw)}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(server)
		got <- b
	}()
	var want bytes.Buffer
	for i := range 20000 {
		p := []byte("puback-" + strconv.Itoa(i) + ";")
		if i%997 == 0 {
			p = bytes.Repeat([]byte{byte(i)}, maxPendingWrite+10) // larger than the bound
		}
		n, err := c.Write(p)
		if err != nil || n != len(p) {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
		want.Write(p)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("peer got %d bytes, want %d (or different bytes)", len(b), want.Len())
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
	if err := c.Close(); err == nil {
		t.Fatal("second close of the connection: no error")
	}
}

// TestCoalescerReportsWriteErrors: once the connection fails, Write
// returns the error.
func TestCoalescerReportsWriteErrors(t *testing.T) {
	raw, server := tcpPair(t)
	c := &bufConn{Conn: raw, w: newCoalescer(raw)}
	defer c.Close()
	server.(*net.TCPConn).SetLinger(0) // reset, not FIN: the client's writes fail
	server.Close()
	p := bytes.Repeat([]byte("x"), 1024)
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := c.Write(p); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("writes to a reset connection kept succeeding for a minute")
		}
	}
}

// TestBufConnReadsThroughBuffer: reads of any size see the peer's bytes
// in order.
func TestBufConnReadsThroughBuffer(t *testing.T) {
	raw, server := tcpPair(t)
	conn, err := bufferedConn(raw)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for i := range 5000 {
		want.WriteString("publish-" + strconv.Itoa(i) + ";")
	}
	go func() {
		server.Write(want.Bytes())
		server.Close()
	}()
	var got bytes.Buffer
	one := make([]byte, 1)
	for i := 0; ; i++ {
		p := one
		if i%3 == 0 {
			p = make([]byte, 700)
		}
		n, err := conn.Read(p)
		got.Write(p[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("read %d bytes, want %d (or different bytes)", got.Len(), want.Len())
	}
}
