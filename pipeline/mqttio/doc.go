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
// against mosquitto 2.0.11 and mochi-mqtt 2.7.9: the redelivered PUBLISH
// carries the same packet id as the original, because both brokers keep the
// in-flight message, id included, in the session. The packet id is still
// not a message identity: after the ack the broker reuses it for another
// message.
//
// Acks for messages of a connection that has since been lost are dropped by
// paho (the broker redelivers those messages anyway), so a handler owner
// sees a message again, Dup set, even when it did call Ack.
//
// # Handler contract
//
// The handler runs on paho's single dispatch goroutine (order matters), and
// that goroutine is in the path that reads the socket: while the handler
// blocks, nothing is read, not even PINGRESP. A handler may block briefly
// to apply back-pressure, but blocking for longer than KeepAlive plus
// paho's 10 s ping timeout makes paho drop and re-establish the connection,
// and Close waits for the handler to return.
//
// # Flush and connection loss
//
// Publisher.Flush returns once the broker has acknowledged every message
// published so far. paho completes, without an error, the token of a
// message it resends after a reconnect before the broker has acknowledged
// the resent copy, so a completed token proves nothing across a connection
// loss. Flush therefore reports ErrUnconfirmed for every message that was
// outstanding when the connection was lost; the caller (an exactly-once sink)
// publishes that output again under the same result ids.
package mqttio
