// Package mqttio moves MQTT messages in and out of eddy: a Source that
// subscribes with manual acknowledgements, a Publisher with a bounded window
// of unacknowledged messages, and an Embedded broker (mochi-mqtt) for
// appliances without one.
//
// # At-least-once into the ingest log
//
// Source turns off paho's automatic acknowledgement. The owner of the
// handler appends each Message to the ingest log and calls Message.Ack only
// once the log has made it durable; acks go out later, from another
// goroutine, in arrival order (MQTT requires PUBACKs in the order the
// PUBLISHes arrived, [MQTT-4.6.0-2]). A message that was never acked is
// redelivered by the broker when the client reconnects to its persistent
// session (CleanSession false, stable ClientID), with Dup set. Confirmed
// (TestUnackedRedelivered, QoS 1 and 2) against mosquitto 2.0.11 and
// mochi-mqtt 2.7.9: the redelivered PUBLISH carries the same packet id as
// the original, because both brokers keep the in-flight message, id
// included, in the session. The packet id is still not a message identity:
// once acked the broker reuses it for another message. mosquitto redelivers
// in the original order; mochi 2.7.9 does not (it sorts the session's
// in-flight messages by their creation second, unstably).
//
// Acks for messages of a connection that has since been lost are dropped
// (the broker redelivers those messages anyway), so a handler owner sees a
// message again, Dup set, even when it did call Ack. A second Ack of a
// message does nothing, even once the broker has reused its packet id.
//
// # The Source's connection
//
// Over plain TCP a Source reads the socket through a buffer (paho reads
// each packet header a byte at a time) and coalesces its writes: one
// goroutine writes every packet handed over meanwhile with one system
// call, so the acknowledgements of one ingest-log fsync leave together.
// A Source without StoreDir keeps no paho store: it publishes nothing, and
// paho never resends an inbound PUBLISH it stored (bufconn.go).
//
// A Source over plain TCP without StoreDir (how the daemon runs one) also
// takes PUBLISH packets past paho (the direct path, directTCP): its
// connection picks every PUBLISH out of the stream as paho's reading
// goroutine reads, and calls the handler right there; paho reads the
// other packets (CONNACK, SUBACK, PINGRESP, PUBREL) as before. Ack (and
// AckAll, which the ingest uses for the messages of one fsync) writes the
// PUBACK or PUBREC straight to the connection the message came on; paho
// answers a PUBREL with PUBCOMP. paho keeps no state for an inbound
// PUBLISH without a store, so it misses nothing; its keep-alive no longer
// sees the PUBLISHes, so it pings every KeepAlive during traffic too.
// Otherwise (TLS, websocket, a StoreDir) paho delivers the messages and
// sends the acknowledgements.
//
// # Handler contract
//
// The handler runs on one goroutine at a time, in arrival order, and that
// goroutine is in the path that reads the socket (on the direct path it
// is paho's reading goroutine; otherwise paho's dispatch goroutine): while
// the handler blocks, nothing is read, not even PINGRESP. A handler may
// block briefly to apply back-pressure, but blocking for longer than
// KeepAlive plus paho's 10 s ping timeout makes paho drop and re-establish
// the connection, and paho cannot finish a disconnect until the handler
// returns (Close returns anyway, leaving paho's goroutines to end after
// the handler).
//
// # Flush and connection loss
//
// Publisher.Flush returns once the broker has acknowledged every message
// published so far. paho completes, without an error, the token of a
// message it resends after a reconnect before the broker has acknowledged
// the resent copy, so a completed token proves nothing across a connection
// loss. Flush therefore reports ErrUnconfirmed for every message that was
// outstanding when the connection was lost; the caller (an exactly-once sink)
// publishes that output again under the same result ids. Publish waits
// while the connection is down rather than letting paho queue the message
// (paho completes QoS 0 messages published while reconnecting without
// sending them, and with a clean session discards QoS 1/2 messages queued
// before the first connection without completing their tokens).
//
// # Embedded broker
//
// Embedded runs mochi-mqtt with raised limits: 65536 pending writes and
// 65535 unacknowledged QoS 1/2 messages per client (mochi's packet-id
// ceiling). Past those mochi drops (with a log line and a $SYS counter, no
// hook for the in-flight limit). It slows a publisher only by accident,
// when a subscriber's socket is full and writing to it holds a lock the
// publisher's goroutine needs; a subscriber that reads promptly but acks
// late (eddy's ingest during a slow fsync) gets no such protection and
// loses messages once 65535 are outstanding (confirmed by
// TestEmbeddedCarriesLoadToSlowSubscriber with the hook below disabled).
// Embedded adds a hook that holds a publisher back while a connected
// subscriber of its topic has 16384 unacknowledged messages, at most 5 s
// per message, and counts every drop in Dropped.
//
// # Drops at the broker
//
// A message a broker drops for a disconnected persistent session (its
// queue limit reached) never reaches the client, so only the broker can
// report it. SysWatcher reads mosquitto's counter,
// $SYS/broker/publish/messages/dropped, on a connection of its own;
// Embedded.Dropped is the embedded broker's. TestEddyConfHoldsOutage runs
// mosquitto 2.0.11 with the packaged conf.d snippet
// (packaging/mosquitto/eddy.conf): 5000 readings queued for an absent
// session all arrive, and with Debian's max_queued_messages 1000 the 4000
// lost are exactly what $SYS reports.
package mqttio
