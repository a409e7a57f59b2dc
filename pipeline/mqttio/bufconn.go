package mqttio

import (
	"bufio"
	"net"
	"net/url"
	"strings"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"
)

// readBufSize is the read buffer of a plain TCP connection to the broker.
const readBufSize = 64 << 10

// bufConn reads a connection through a buffer. paho reads every packet's
// fixed header a byte at a time straight from the connection
// (packets.ReadPacket), so without it a PUBLISH costs three or more read
// system calls; with it one read serves every packet the socket holds.
// paho reads a connection from one goroutine at a time (the CONNACK, then
// its incoming loop), so the buffer needs no lock.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// bufferedTCP opens plain TCP connections as paho does (a proxy from the
// environment included) and buffers their reads. TLS and websocket
// connections keep paho's own opener: both read through their own record
// or frame buffers already.
func bufferedTCP(u *url.URL, o paho.ClientOptions) (net.Conn, error) {
	d := o.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: o.ConnectTimeout}
	}
	c, err := proxy.FromEnvironmentUsing(d).Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	return &bufConn{Conn: c, r: bufio.NewReaderSize(c, readBufSize)}, nil
}

// plainTCP reports whether broker is a plain TCP URL (tcp://, mqtt://).
func plainTCP(broker string) bool {
	u, err := url.Parse(broker)
	if err != nil {
		return false
	}
	s := strings.ToLower(u.Scheme)
	return s == "tcp" || s == "mqtt"
}
