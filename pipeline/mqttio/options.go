package mqttio

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Errors callers decide on with errors.Is.
var (
	// ErrClosed is returned by a Source or Publisher used after Close.
	ErrClosed = errors.New("mqttio: closed")
	// ErrNotConnected wraps the context error of a Publish that gave up
	// waiting for the connection.
	ErrNotConnected = errors.New("mqttio: not connected")
	// ErrUnconfirmed is returned by Flush when the connection was lost
	// while messages were unacknowledged: the broker may or may not have
	// them.
	ErrUnconfirmed = errors.New("mqttio: connection lost before the broker acknowledged every message")
)

// Defaults applied to zero fields of ClientOptions.
const (
	DefaultKeepAlive            = 30 * time.Second
	DefaultConnectTimeout       = 10 * time.Second
	DefaultReconnectMaxInterval = 30 * time.Second
	DefaultMaxInflight          = 1024
)

// ClientOptions describe one MQTT client connection. The zero value of a
// duration means its default.
type ClientOptions struct {
	// Broker is the broker URL: tcp://, ssl://, tls://, ws:// or wss://
	// (paho also takes mqtt://, mqtts:// and tcps://).
	Broker   string
	ClientID string
	Username string
	Password string // never logged
	// CAFile, CertFile and KeyFile are PEM files for TLS: the CA that signs
	// the broker's certificate (system roots when empty) and the client's
	// certificate and key (both or neither).
	CAFile, CertFile, KeyFile string
	InsecureSkipVerify        bool
	// CleanSession false keeps a persistent session at the broker; it needs
	// a stable ClientID.
	CleanSession bool
	KeepAlive    time.Duration
	// ConnectTimeout bounds one connection attempt (dial, TLS, CONNACK).
	ConnectTimeout time.Duration
	// ReconnectMaxInterval caps the exponential back-off between attempts.
	ReconnectMaxInterval time.Duration
	// StoreDir holds paho's file store of in-flight QoS 1/2 state; "" keeps
	// it in memory (a Publisher) or nowhere (a Source, see noStore). It
	// matters for a Publisher with CleanSession false (unacknowledged
	// output survives a restart); a Source gains nothing from it, the
	// broker's session holds what was not acked.
	StoreDir string
	// MaxInflight is the Publisher's window of unacknowledged messages.
	MaxInflight int
	Logger      *slog.Logger
}

var schemes = map[string]bool{
	"tcp": true, "mqtt": true, "ssl": true, "tls": true, "mqtts": true, "tcps": true, "ws": true, "wss": true,
}

func isTLSScheme(s string) bool {
	switch s {
	case "ssl", "tls", "mqtts", "tcps", "wss":
		return true
	}
	return false
}

// withDefaults returns o with zero fields set to their defaults.
func (o ClientOptions) withDefaults() ClientOptions {
	if o.KeepAlive == 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.ReconnectMaxInterval == 0 {
		o.ReconnectMaxInterval = DefaultReconnectMaxInterval
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = DefaultMaxInflight
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate reports every problem with o at once.
func (o ClientOptions) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("mqttio: %s: "+format, append([]any{key}, args...)...))
	}
	if o.Broker == "" {
		bad("broker", "required (e.g. tcp://127.0.0.1:1883)")
	} else if u, err := url.Parse(o.Broker); err != nil {
		bad("broker", "%q is not a URL: %v", o.Broker, err)
	} else {
		if !schemes[strings.ToLower(u.Scheme)] {
			bad("broker", "scheme %q not supported: use tcp, ssl, tls, ws or wss", u.Scheme)
		}
		if u.Host == "" {
			bad("broker", "%q has no host:port", o.Broker)
		}
		if !isTLSScheme(strings.ToLower(u.Scheme)) && (o.CAFile != "" || o.CertFile != "" || o.InsecureSkipVerify) {
			bad("broker", "TLS settings given but scheme %q is not TLS: use ssl://, tls:// or wss://", u.Scheme)
		}
	}
	if !o.CleanSession && o.ClientID == "" {
		bad("client_id", "required when clean_session is false (a persistent session is found by client id)")
	}
	if len(o.ClientID) > 65535 {
		bad("client_id", "longer than 65535 bytes")
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		bad("cert_file", "cert_file and key_file go together")
	}
	if o.Password != "" && o.Username == "" {
		bad("password", "set without username (MQTT 3.1.1 sends no password without a username)")
	}
	for key, d := range map[string]time.Duration{
		"keep_alive": o.KeepAlive, "connect_timeout": o.ConnectTimeout, "reconnect_max_interval": o.ReconnectMaxInterval,
	} {
		if d < 0 {
			bad(key, "negative duration %v", d)
		}
	}
	if o.KeepAlive > 0 && o.KeepAlive < time.Second {
		bad("keep_alive", "%v is below MQTT's resolution of one second", o.KeepAlive)
	}
	if o.KeepAlive > 65535*time.Second {
		bad("keep_alive", "%v is above MQTT's maximum of 65535 s", o.KeepAlive)
	}
	if o.MaxInflight < 0 || o.MaxInflight > 65535 {
		bad("max_inflight", "%d out of range 1..65535", o.MaxInflight)
	}
	return errors.Join(errs...)
}

// String describes o for logs, without the password.
func (o ClientOptions) String() string {
	pw := ""
	if o.Password != "" {
		pw = " password=<redacted>"
	}
	return fmt.Sprintf("broker=%s client_id=%s username=%s%s clean_session=%v", o.Broker, o.ClientID, o.Username, pw, o.CleanSession)
}

// LogValue keeps the password out of structured logs.
func (o ClientOptions) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("broker", o.Broker),
		slog.String("client_id", o.ClientID),
		slog.String("username", o.Username),
		slog.Bool("clean_session", o.CleanSession),
	)
}

// tlsConfig builds the TLS configuration for a TLS scheme.
func (o ClientOptions) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.InsecureSkipVerify} //nolint:gosec // operator's explicit choice
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqttio: read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqttio: ca_file %s: no PEM certificate found", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqttio: load cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// closeWait bounds how long Close waits for DISCONNECT to be written.
func (o ClientOptions) closeWait() time.Duration {
	return min(max(o.ConnectTimeout, time.Second), 10*time.Second)
}

// pahoOptions builds paho's options; o must have defaults applied and be
// valid. Handlers are set by the caller.
func (o ClientOptions) pahoOptions() (*paho.ClientOptions, error) {
	po := paho.NewClientOptions().
		AddBroker(o.Broker).
		SetClientID(o.ClientID).
		SetCleanSession(o.CleanSession).
		SetKeepAlive(o.KeepAlive).
		SetConnectTimeout(o.ConnectTimeout).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(o.ReconnectMaxInterval).
		SetConnectRetry(false). // conn.start retries the first connection
		SetOrderMatters(true)
	if o.Username != "" {
		po.SetUsername(o.Username)
		po.SetPassword(o.Password)
	}
	u, _ := url.Parse(o.Broker)
	if isTLSScheme(strings.ToLower(u.Scheme)) {
		cfg, err := o.tlsConfig()
		if err != nil {
			return nil, err
		}
		po.SetTLSConfig(cfg)
	}
	if plainTCP(o.Broker) {
		po.SetCustomOpenConnectionFn(bufferedTCP)
	}
	if o.StoreDir != "" {
		if err := os.MkdirAll(o.StoreDir, 0o750); err != nil {
			return nil, fmt.Errorf("mqttio: create store_dir: %w", err)
		}
		po.SetStore(paho.NewFileStore(o.StoreDir))
	} else {
		// paho's default MemoryStore resumes in map order; keep publish order.
		po.SetStore(paho.NewOrderedMemoryStore())
	}
	return po, nil
}
