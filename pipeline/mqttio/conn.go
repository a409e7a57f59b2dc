package mqttio

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// conn tracks the connection state of one paho client for Source and
// Publisher: whether it is up, a generation that advances on every
// connection loss, and logging of attempts and failures.
type conn struct {
	o  ClientOptions
	lg *slog.Logger

	mu   sync.Mutex
	up   chan struct{} // closed while connected
	lost chan struct{} // closed at the next connection loss
	gen  uint64        // advances at every loss and reconnect attempt

	connects   atomic.Int64
	losses     atomic.Int64
	failures   atomic.Int64
	lastFailAt atomic.Int64 // unix nano of the last logged failure
	isUp       atomic.Bool
	loopDone   chan struct{} // closed when the start loop has ended
}

func newConn(o ClientOptions, kind string) *conn {
	return &conn{
		o:    o,
		lg:   o.Logger.With("mqtt", kind, "broker", o.Broker, "client_id", o.ClientID),
		up:   make(chan struct{}),
		lost: make(chan struct{}),
	}
}

// install sets the connection handlers on po; onUp runs after each
// successful connect, in its own goroutine.
func (c *conn) install(po *paho.ClientOptions, onUp func(paho.Client)) {
	po.SetOnConnectHandler(func(cl paho.Client) {
		c.connected()
		if onUp != nil {
			onUp(cl)
		}
	})
	po.SetConnectionLostHandler(c.connectionLost)
	po.SetConnectionNotificationHandler(func(_ paho.Client, n paho.ConnectionNotification) {
		switch n := n.(type) {
		case paho.ConnectionNotificationConnecting:
			// Called synchronously before each attempt, so before paho
			// resends stored messages (and completes their old tokens).
			if n.IsReconnect {
				c.mu.Lock()
				c.markDown()
				c.advance()
				c.mu.Unlock()
			}
		case paho.ConnectionNotificationFailed:
			c.failed(n.Reason)
		}
	})
}

// connected runs (in its own goroutine) after every successful connect.
// The first connection is marked up by the start loop, once paho has also
// resumed its stored messages and claimed their packet ids.
func (c *conn) connected() {
	n := c.connects.Add(1)
	if n == 1 {
		c.lg.Info("mqtt connected")
		return
	}
	c.mu.Lock()
	c.markUp()
	c.mu.Unlock()
	c.lg.Info("mqtt reconnected", "reconnects", n-1)
}

func (c *conn) markUp() {
	if !c.isUp.Load() {
		c.isUp.Store(true)
		close(c.up)
	}
}

// connectionLost runs in its own goroutine, concurrently with paho's
// reconnect, which may already have succeeded: it marks the connection down
// only if paho does not report it open, under the lock connected takes.
func (c *conn) connectionLost(cl paho.Client, err error) {
	c.losses.Add(1)
	c.mu.Lock()
	if !cl.IsConnectionOpen() {
		c.markDown()
	}
	c.advance()
	c.mu.Unlock()
	c.lg.Warn("mqtt connection lost; reconnecting", "err", err)
}

// markDown marks the connection as down; c.mu is held.
func (c *conn) markDown() {
	if c.isUp.Load() {
		c.isUp.Store(false)
		c.up = make(chan struct{})
	}
}

// advance starts a new generation: every message outstanding in the old
// one is unconfirmed. c.mu is held.
func (c *conn) advance() {
	c.gen++
	close(c.lost)
	c.lost = make(chan struct{})
}

// failed logs a failed connection attempt, at most every 30 s at Warn.
func (c *conn) failed(err error) {
	n := c.failures.Add(1)
	now := time.Now().UnixNano()
	last := c.lastFailAt.Load()
	if now-last >= int64(30*time.Second) && c.lastFailAt.CompareAndSwap(last, now) {
		c.lg.Warn("mqtt connection attempt failed; retrying", "err", err, "failed_attempts", n)
		return
	}
	c.lg.Debug("mqtt connection attempt failed; retrying", "err", err, "failed_attempts", n)
}

// generation returns the current generation and the channel closed when it ends.
func (c *conn) generation() (uint64, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen, c.lost
}

// waitUp waits until the connection is up, ctx is done or stop is closed.
func (c *conn) waitUp(ctx context.Context, stop <-chan struct{}) error {
	c.mu.Lock()
	up := c.up
	c.mu.Unlock()
	select {
	case <-up:
		return nil
	case <-stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start connects client in the background: it retries the first
// connection with back-off (capped by ReconnectMaxInterval) until it
// succeeds or stop is closed; paho reconnects by itself after that.
// paho's own ConnectRetry is not used because Disconnect during its retry
// loop cannot finish before the whole quiesce period has passed.
func (c *conn) start(client paho.Client, stop <-chan struct{}) {
	c.loopDone = make(chan struct{})
	go func() {
		defer close(c.loopDone)
		sleep := min(500*time.Millisecond, c.o.ReconnectMaxInterval)
		for {
			tok := client.Connect()
			<-tok.Done() // one attempt, bounded by ConnectTimeout
			if tok.Error() == nil {
				c.mu.Lock()
				if client.IsConnectionOpen() { // else paho is already reconnecting
					c.markUp()
				}
				c.mu.Unlock()
				return
			}
			// paho reported the failure (ConnectionNotificationFailed).
			t := time.NewTimer(sleep)
			select {
			case <-stop:
				t.Stop()
				return
			case <-t.C:
			}
			sleep = min(2*sleep, c.o.ReconnectMaxInterval)
		}
	}()
}

// disconnect stops the start loop and closes client. stop must be closed.
//
// paho's Disconnect hands DISCONNECT to the connection and waits up to the
// quiesce period for it to go out; with no connection (paho reconnecting)
// nothing takes it and the whole period passes. So: the full closeWait
// when connected (it returns as soon as DISCONNECT is written), a short
// one otherwise; paho's reconnect goroutine then ends on its own after its
// back-off sleep.
func (c *conn) disconnect(client paho.Client) {
	if c.loopDone != nil {
		<-c.loopDone
	}
	quiesce := 100 * time.Millisecond
	if client.IsConnectionOpen() {
		quiesce = c.o.closeWait()
	}
	client.Disconnect(uint(quiesce / time.Millisecond))
	c.mu.Lock()
	c.markDown()
	c.mu.Unlock()
}
