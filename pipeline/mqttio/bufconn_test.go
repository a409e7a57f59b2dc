package mqttio

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
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

// publishPacket encodes a PUBLISH as a broker sends it.
func publishPacket(topic string, payload []byte, id uint16, qos byte, dup bool) []byte {
	var body []byte
	body = binary.BigEndian.AppendUint16(body, uint16(len(topic)))
	body = append(body, topic...)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, id)
	}
	body = append(body, payload...)
	first := byte(packets.Publish<<4) | qos<<1
	if dup {
		first |= 0x08
	}
	b := []byte{first}
	for n := len(body); ; {
		d := byte(n & 0x7f)
		if n >>= 7; n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			break
		}
	}
	return append(b, body...)
}

// TestDirectPathTakesPublishes: the direct path hands every PUBLISH to
// the source, whatever the read sizes and however the bytes arrive, one
// larger than the read buffer included, and paho (packets.ReadPacket, as
// its reading goroutine) reads the other packets in order, then EOF.
func TestDirectPathTakesPublishes(t *testing.T) {
	raw, server := tcpPair(t)
	type got struct {
		topic, payload string
		id             uint16
		qos            byte
		dup            bool
	}
	var pubs []got
	conn := &bufConn{Conn: raw, r: bufio.NewReaderSize(raw, readBufSize),
		pub: func(_ *coalescer, topic, payload []byte, id uint16, qos byte, dup bool) {
			pubs = append(pubs, got{string(topic), string(payload), id, qos, dup})
		}}
	big := bytes.Repeat([]byte("z"), 3*readBufSize)
	want := []got{
		{"a/b", "one", 7, 1, false},
		{"a/c", "", 0, 0, false},
		{"a/b", "three", 9, 2, true},
		{"big", string(big), 10, 1, false},
		{"a/b", "five", 11, 1, false},
	}
	var stream []byte
	stream = append(stream, 0x20, 2, 0, 0) // CONNACK
	stream = append(stream, publishPacket("a/b", []byte("one"), 7, 1, false)...)
	stream = append(stream, 0xd0, 0) // PINGRESP
	stream = append(stream, publishPacket("a/c", nil, 0, 0, false)...)
	stream = append(stream, publishPacket("a/b", []byte("three"), 9, 2, true)...)
	stream = append(stream, 0x90, 3, 0, 1, 1) // SUBACK id 1, qos 1
	stream = append(stream, publishPacket("big", big, 10, 1, false)...)
	stream = append(stream, publishPacket("a/b", []byte("five"), 11, 1, false)...)
	stream = append(stream, 0x62, 2, 0, 9) // PUBREL id 9
	go func() {
		// The first part a byte at a time, the rest in odd-sized writes.
		for i := 0; i < 40; i++ {
			server.Write(stream[i : i+1])
			time.Sleep(time.Millisecond)
		}
		for rest := stream[40:]; len(rest) > 0; {
			n := min(len(rest), 1000+len(rest)%777)
			server.Write(rest[:n])
			rest = rest[n:]
		}
		server.Close()
	}()
	var types []byte
	for {
		cp, err := packets.ReadPacket(conn)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, packetType(cp))
	}
	if want := []byte{packets.Connack, packets.Pingresp, packets.Suback, packets.Pubrel}; !bytes.Equal(types, want) {
		t.Fatalf("paho read packet types %v, want %v", types, want)
	}
	if len(pubs) != len(want) {
		t.Fatalf("took %d PUBLISHes, want %d", len(pubs), len(want))
	}
	for i := range want {
		if pubs[i] != want[i] {
			t.Fatalf("PUBLISH %d: %+.60v, want %+.60v", i, pubs[i], want[i])
		}
	}
}

func packetType(cp packets.ControlPacket) byte {
	switch cp.(type) {
	case *packets.ConnackPacket:
		return packets.Connack
	case *packets.PingrespPacket:
		return packets.Pingresp
	case *packets.SubackPacket:
		return packets.Suback
	case *packets.PubrelPacket:
		return packets.Pubrel
	}
	return 0
}

// TestDirectPathRejectsMalformed: a PUBLISH whose topic overruns the
// packet, or with QoS 3, fails the read (paho then drops the connection).
func TestDirectPathRejectsMalformed(t *testing.T) {
	for name, pkt := range map[string][]byte{
		"topic overruns": {0x32, 4, 0, 9, 'a', 'b'},
		"qos 3":          {0x36, 5, 0, 1, 'a', 0, 1},
	} {
		t.Run(name, func(t *testing.T) {
			raw, server := tcpPair(t)
			conn := &bufConn{Conn: raw, r: bufio.NewReaderSize(raw, readBufSize),
				pub: func(*coalescer, []byte, []byte, uint16, byte, bool) { t.Error("malformed PUBLISH handed on") }}
			go server.Write(pkt)
			if _, err := packets.ReadPacket(conn); !errors.Is(err, errMalformed) {
				t.Fatalf("read: %v, want %v", err, errMalformed)
			}
		})
	}
}

// TestDirectAcks: Ack and AckAll write PUBACK (QoS 1) and PUBREC (QoS 2)
// in order to the message's connection, once per message: a second call,
// or a call after the broker reused the packet id, writes nothing; QoS 0
// needs none.
func TestDirectAcks(t *testing.T) {
	raw, server := tcpPair(t)
	w := newCoalescer(raw)
	var ms []Message
	s := NewSource(ClientOptions{Broker: "tcp://127.0.0.1:1"}, []Subscription{{Filter: "a"}}, func(m Message) { ms = append(ms, m) })
	s.receive(w, []byte("a"), []byte("1"), 1, 1, false)
	s.receive(w, []byte("a"), []byte("2"), 2, 2, false)
	s.receive(w, []byte("a"), []byte("3"), 0, 0, false)
	s.receive(w, []byte("a"), []byte("4"), 4, 1, false)
	ms[0].Ack()
	ms[0].Ack()
	old := ms[3]
	s.receive(w, []byte("a"), []byte("5"), 4, 1, true) // id 4 again, before old was acked
	old.Ack()
	AckAll([]Acker{ms[1].Acker(), ms[2].Acker(), ms[0].Acker(), ms[4].Acker(), ms[4].Acker()})
	ms[4].Ack()
	w.close()
	raw.Close()
	b, err := io.ReadAll(server)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x40, 2, 0, 1, 0x50, 2, 0, 2, 0x40, 2, 0, 4}
	if !bytes.Equal(b, want) {
		t.Fatalf("wrote % x, want % x", b, want)
	}
	if st := s.Stats(); st.Received != 5 || st.Acked != 3 || st.Duplicates != 1 {
		t.Fatalf("stats %+v, want 5 received, 3 acked, 1 duplicate", st)
	}
	if ms[0].Topic != "a" || string(ms[4].Payload) != "5" {
		t.Fatalf("messages %+v", ms)
	}
}
