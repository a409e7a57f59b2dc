package mqttio

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"golang.org/x/net/proxy"
)

const (
	// readBufSize is the read buffer of a plain TCP connection to the broker.
	readBufSize = 64 << 10
	// maxPendingWrite bounds what a coalescing connection holds unwritten:
	// past it Write blocks, so a broker that does not read still stops
	// paho's writer.
	maxPendingWrite = 64 << 10
	// closeFlush bounds how long Close waits for held bytes (a DISCONNECT)
	// to be written.
	closeFlush = time.Second
)

// bufConn reads a connection through a buffer and, with w set, coalesces
// its writes. paho reads every packet's fixed header a byte at a time
// straight from the connection (packets.ReadPacket), so without the buffer
// a PUBLISH costs three or more read system calls; with it one read serves
// every packet the socket holds. paho reads a connection from one
// goroutine at a time (the CONNACK, then its incoming loop), so the buffer
// needs no lock.
type bufConn struct {
	net.Conn
	r *bufio.Reader
	w *coalescer // nil: writes go straight to the connection

	// pub, when set, takes every PUBLISH packet out of the stream (the
	// direct receive path, see directTCP); paho reads the other packets.
	pub  func(w *coalescer, topic, payload []byte, id uint16, qos byte, dup bool)
	pass int // bytes of the packet paho is reading still to hand it
}

func (c *bufConn) Read(p []byte) (int, error) {
	if c.pub == nil {
		return c.r.Read(p)
	}
	for c.pass == 0 {
		n, hl, publish, err := c.header()
		if err != nil {
			return 0, err
		}
		if !publish {
			c.pass = n
			break
		}
		if err := c.publish(n, hl); err != nil {
			return 0, err
		}
	}
	if len(p) > c.pass {
		p = p[:c.pass]
	}
	n, err := c.r.Read(p)
	c.pass -= n
	return n, err
}

// errMalformed is a packet the direct receive path cannot take; paho
// would drop the connection for it too.
var errMalformed = errors.New("mqttio: malformed PUBLISH packet")

// header peeks at the fixed header of the next packet and returns the
// packet's length n, the fixed header's length hl and whether it is a
// PUBLISH. It peeks only at bytes the header announces, so it never waits
// for bytes the broker did not send.
func (c *bufConn) header() (n, hl int, publish bool, err error) {
	rl := 0
	for i := 1; i <= 4; i++ {
		b, err := c.r.Peek(i + 1)
		if err != nil {
			return 0, 0, false, err
		}
		rl |= int(b[i]&0x7f) << (7 * (i - 1))
		if b[i]&0x80 == 0 {
			return i + 1 + rl, i + 1, b[0]>>4 == packets.Publish, nil
		}
	}
	return 0, 0, false, errors.New("mqttio: malformed remaining length")
}

// publish reads the PUBLISH packet of n bytes (its fixed header hl) at
// the head of the buffer and hands it to c.pub; topic and payload alias
// the buffer until c.pub returns.
func (c *bufConn) publish(n, hl int) error {
	var pkt []byte
	if n <= c.r.Size() {
		b, err := c.r.Peek(n)
		if err != nil {
			return err
		}
		pkt = b
	} else {
		pkt = make([]byte, n)
		if _, err := io.ReadFull(c.r, pkt); err != nil {
			return err
		}
	}
	flags := pkt[0] & 0x0f
	qos, dup := (flags>>1)&3, flags&0x08 != 0
	body := pkt[hl:]
	if qos == 3 || len(body) < 2 {
		return errMalformed
	}
	tl := int(binary.BigEndian.Uint16(body))
	if 2+tl > len(body) {
		return errMalformed
	}
	topic, rest := body[2:2+tl], body[2+tl:]
	var id uint16
	if qos > 0 {
		if len(rest) < 2 {
			return errMalformed
		}
		id, rest = binary.BigEndian.Uint16(rest), rest[2:]
	}
	c.pub(c.w, topic, rest, id, qos, dup)
	if n <= c.r.Size() {
		_, _ = c.r.Discard(n) // peeked
	}
	return nil
}

func (c *bufConn) Write(p []byte) (int, error) {
	if c.w == nil {
		return c.Conn.Write(p)
	}
	return c.w.write(p)
}

// Close writes what the coalescer holds (within closeFlush), then closes.
func (c *bufConn) Close() error {
	if c.w != nil {
		c.w.close()
	}
	return c.Conn.Close()
}

// coalescer writes a connection from its own goroutine: Write appends the
// packet to a buffer and returns, and the goroutine writes everything
// buffered meanwhile with one system call. paho writes every packet
// (each PUBACK of a source) with its own write; the acknowledgements of
// one ingest-log fsync arrive together and leave in one segment.
// A write error is returned by every later Write; paho sees a broken
// connection on its read side in any case. Bytes a Write accepted are
// lost when the connection breaks before they are written — as they
// would be in the kernel's socket buffer: a PUBACK that does not reach
// the broker makes it redeliver the message, which the ingest
// recognises (ingest.Bridge).
type coalescer struct {
	conn net.Conn

	mu      sync.Mutex
	cond    sync.Cond // pending taken, or err or closed set
	pending []byte
	writing bool // the goroutine is writing a batch
	err     error
	closed  bool
	kick    chan struct{} // cap 1
}

func newCoalescer(conn net.Conn) *coalescer {
	w := &coalescer{conn: conn, kick: make(chan struct{}, 1)}
	w.cond.L = &w.mu
	go w.run()
	return w
}

func (w *coalescer) write(p []byte) (int, error) {
	w.mu.Lock()
	for w.err == nil && !w.closed && len(w.pending) >= maxPendingWrite {
		w.cond.Wait()
	}
	switch {
	case w.closed:
		w.mu.Unlock()
		return 0, net.ErrClosed
	case w.err != nil:
		err := w.err
		w.mu.Unlock()
		return 0, err
	}
	w.pending = append(w.pending, p...)
	select { // under mu: close closes kick under mu
	case w.kick <- struct{}{}:
	default:
	}
	w.mu.Unlock()
	return len(p), nil
}

// run writes what Write buffered until close.
func (w *coalescer) run() {
	var spare []byte
	for range w.kick {
		for {
			w.mu.Lock()
			if len(w.pending) == 0 || w.err != nil {
				w.writing = false
				w.cond.Broadcast()
				stop := w.closed
				w.mu.Unlock()
				if stop {
					return
				}
				break
			}
			b := w.pending
			w.pending, w.writing = spare[:0], true
			w.cond.Broadcast()
			w.mu.Unlock()
			_, err := w.conn.Write(b)
			spare = b
			if err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
			}
		}
	}
}

// close waits, within closeFlush, until what is buffered is written, and
// stops the goroutine. It is idempotent.
func (w *coalescer) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	if w.err == nil && (w.writing || len(w.pending) > 0) {
		_ = w.conn.SetWriteDeadline(time.Now().Add(closeFlush))
		for w.err == nil && (w.writing || len(w.pending) > 0) {
			w.cond.Wait()
		}
	}
	close(w.kick) // Write no longer sends on it: closed is set
	w.mu.Unlock()
}

// dialTCP opens a plain TCP connection as paho does (a proxy from the
// environment included).
func dialTCP(u *url.URL, o paho.ClientOptions) (net.Conn, error) {
	d := o.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: o.ConnectTimeout}
	}
	return proxy.FromEnvironmentUsing(d).Dial("tcp", u.Host)
}

// bufferedTCP is paho's opener for plain TCP with reads buffered. TLS and
// websocket connections keep paho's own opener: both read through their
// own record or frame buffers already.
func bufferedTCP(u *url.URL, o paho.ClientOptions) (net.Conn, error) {
	c, err := dialTCP(u, o)
	if err != nil {
		return nil, err
	}
	return bufferedConn(c)
}

// bufferedConn buffers the reads of c.
func bufferedConn(c net.Conn) (net.Conn, error) {
	return &bufConn{Conn: c, r: bufio.NewReaderSize(c, readBufSize)}, nil
}

// coalescedTCP is bufferedTCP with writes coalesced, for a Source: its
// writes are acknowledgements, and paho sets no write deadlines on them
// (a Publisher's writes keep paho's write timeout, so it does not
// coalesce).
func coalescedTCP(u *url.URL, o paho.ClientOptions) (net.Conn, error) {
	c, err := dialTCP(u, o)
	if err != nil {
		return nil, err
	}
	return &bufConn{Conn: c, r: bufio.NewReaderSize(c, readBufSize), w: newCoalescer(c)}, nil
}

// directTCP is coalescedTCP for a Source without a paho store, with the
// direct receive path: the connection takes every PUBLISH out of the
// stream as paho's reading goroutine reads it and calls the handler right
// there, and Ack writes the PUBACK (PUBREC) to the connection itself.
// paho reads every other packet as before (CONNACK, SUBACK, PINGRESP,
// PUBREL, which it answers with PUBCOMP) and never sees a PUBLISH, so a
// message is no longer handed through four of paho's goroutines, nor its
// acknowledgement through three. paho has nothing to do for an inbound
// PUBLISH without a store: it keeps no state for it. A connection's
// acknowledgements go to that connection only; once it is closed they are
// dropped, as paho drops them, and the broker redelivers the messages.
func (s *Source) directTCP(u *url.URL, o paho.ClientOptions) (net.Conn, error) {
	c, err := coalescedTCP(u, o)
	if err != nil {
		return nil, err
	}
	bc := c.(*bufConn)
	bc.pub = s.receive
	return bc, nil
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

// noStore is a Source's paho store when it has no StoreDir: it keeps
// nothing. A Source never publishes, so paho would keep only inbound
// PUBLISH packets until their PUBACK (its resume discards them), inbound
// PUBRELs (the broker sends them again after a reconnect) and SUBSCRIBE
// packets (resent only with ResumeSubs, which a Source does not set: it
// subscribes after every connect). What is not acknowledged the broker's
// session holds; what is, the ingest log. The ordered memory store's Put
// and Del of every message were 4-8 % of eddy's CPU end to end.
type noStore struct{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}
