package mqttio

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/test/mqtttest"
)

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all PEM, into dir.
type testPKI struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "eddy test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certFile := filepath.Join(dir, name+".pem")
		keyFile := filepath.Join(dir, name+"-key.pem")
		writePEM(t, certFile, "CERTIFICATE", der)
		writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
		return certFile, keyFile
	}
	p := testPKI{ca: filepath.Join(dir, "ca.pem")}
	writePEM(t, p.ca, "CERTIFICATE", caDER)
	p.serverCert, p.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.clientCert, p.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth, nil)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTLS(t *testing.T) {
	pki := newTestPKI(t)
	b := mqtttest.Start(t, mqtttest.WithTLS(pki.serverCert, pki.serverKey),
		mqtttest.WithConfig("cafile "+pki.ca, "require_certificate true"))
	url := b.URL()
	withCA := func(o ClientOptions) ClientOptions {
		o.CAFile, o.CertFile, o.KeyFile = pki.ca, pki.clientCert, pki.clientKey
		return o
	}

	col := newCollector()
	src := startSource(t, withCA(opts(t, url, "tls-sub")), []Subscription{{Filter: "tls/#", QoS: 1}}, func(m Message) {
		col.handle(m)
		m.Ack()
	})
	// waitSubscribed probes over a plain Publisher; do it by hand here.
	pub := startPublisher(t, withCA(opts(t, url, "tls-pub")))
	ctx := ctxT(t, 10*time.Second)
	for src.Stats().Received == 0 {
		if err := pub.Publish(ctx, "tls/x", []byte("hello"), 1, false); err != nil {
			t.Fatalf("Publish over TLS: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("skip verify", func(t *testing.T) {
		o := opts(t, url, "tls-insecure")
		o.InsecureSkipVerify, o.CertFile, o.KeyFile = true, pki.clientCert, pki.clientKey
		p := startPublisher(t, o)
		if err := p.Publish(ctxT(t, 5*time.Second), "tls/x", []byte("x"), 1, false); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unknown CA is refused", func(t *testing.T) {
		o := opts(t, url, "tls-untrusted")
		o.CertFile, o.KeyFile = pki.clientCert, pki.clientKey // system roots do not know the test CA
		p := startPublisher(t, o)
		short, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if err := p.Publish(short, "tls/x", []byte("x"), 1, false); !errors.Is(err, ErrNotConnected) {
			t.Fatalf("Publish to a broker with an untrusted certificate: %v", err)
		}
	})
	t.Run("no client certificate is refused", func(t *testing.T) {
		o := opts(t, url, "tls-anon")
		o.CAFile = pki.ca
		p := startPublisher(t, o)
		short, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if err := p.Publish(short, "tls/x", []byte("x"), 1, false); !errors.Is(err, ErrNotConnected) {
			t.Fatalf("Publish without a client certificate: %v", err)
		}
	})
	t.Run("bad files", func(t *testing.T) {
		o := opts(t, url, "tls-bad")
		o.CAFile = filepath.Join(t.TempDir(), "missing.pem")
		if err := NewPublisher(o).Start(t.Context()); err == nil {
			t.Fatal("Start with a missing ca_file succeeded")
		}
		o.CAFile = pki.clientKey // not a certificate
		if err := NewPublisher(o).Start(t.Context()); err == nil {
			t.Fatal("Start with a ca_file without certificates succeeded")
		}
	})
}
