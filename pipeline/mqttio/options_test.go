package mqttio

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	good := ClientOptions{Broker: "tcp://127.0.0.1:1883", ClientID: "eddy"}
	cases := []struct {
		name  string
		edit  func(o *ClientOptions)
		wants []string // substrings of the error; none means valid
	}{
		{"good", func(*ClientOptions) {}, nil},
		{"ssl with files", func(o *ClientOptions) {
			o.Broker, o.CAFile, o.CertFile, o.KeyFile = "ssl://h:8883", "ca.pem", "c.pem", "k.pem"
		}, nil},
		{"wss", func(o *ClientOptions) { o.Broker, o.InsecureSkipVerify = "wss://h/mqtt", true }, nil},
		{"no broker", func(o *ClientOptions) { o.Broker = "" }, []string{"broker: required"}},
		{"bad scheme", func(o *ClientOptions) { o.Broker = "http://h:1" }, []string{`scheme "http"`}},
		{"no host", func(o *ClientOptions) { o.Broker = "tcp://" }, []string{"no host"}},
		{"tls files on tcp", func(o *ClientOptions) { o.CAFile = "ca.pem" }, []string{"not TLS"}},
		{"persistent without id", func(o *ClientOptions) { o.ClientID = "" }, []string{"client_id: required"}},
		{"clean without id", func(o *ClientOptions) { o.ClientID, o.CleanSession = "", true }, nil},
		{"cert without key", func(o *ClientOptions) { o.Broker, o.CertFile = "ssl://h:1", "c.pem" }, []string{"cert_file and key_file"}},
		{"password without user", func(o *ClientOptions) { o.Password = "s3cret" }, []string{"password: set without username"}},
		{"sub-second keepalive", func(o *ClientOptions) { o.KeepAlive = 10 * time.Millisecond }, []string{"keep_alive"}},
		{"negative timeout", func(o *ClientOptions) { o.ConnectTimeout = -1 }, []string{"connect_timeout: negative"}},
		{"window too big", func(o *ClientOptions) { o.MaxInflight = 70000 }, []string{"max_inflight"}},
		{"every problem at once", func(o *ClientOptions) {
			o.Broker, o.ClientID, o.Password = "", "", "x"
		}, []string{"broker: required", "client_id: required", "password"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			err := o.withDefaults().Validate()
			if len(tc.wants) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", o)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestPasswordNeverLogged(t *testing.T) {
	o := ClientOptions{Broker: "tcp://127.0.0.1:1", ClientID: "c", Username: "u", Password: "hunter2-secret"}
	var buf bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	lg.Info("x", "options", o)
	buf.WriteString(o.String())
	o.Logger = lg
	// Start and Close log the options, too; the broker is not there.
	s := NewSource(o, []Subscription{{Filter: "a", QoS: 1}}, func(Message) {})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	p := NewPublisher(o)
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	if strings.Contains(buf.String(), "hunter2") {
		t.Fatalf("password in log output:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "username=u") {
		t.Fatalf("options not logged:\n%s", buf.String())
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	s := NewSource(ClientOptions{Broker: "gopher://x"}, []Subscription{{Filter: "a"}}, func(Message) {})
	if err := s.Start(t.Context()); err == nil {
		t.Fatal("Source.Start accepted a bad broker URL")
	}
	_ = s.Close()
	s = NewSource(ClientOptions{Broker: "tcp://127.0.0.1:1", CleanSession: true}, nil, func(Message) {})
	if err := s.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "subscription") {
		t.Fatalf("Source.Start without subscriptions: %v", err)
	}
	p := NewPublisher(ClientOptions{Broker: "tcp://127.0.0.1:1"})
	if err := p.Publish(t.Context(), "a", nil, 1, false); err == nil || !strings.Contains(err.Error(), "client_id") {
		t.Fatalf("Publish with invalid options: %v", err)
	}
	_ = p.Close()
}
