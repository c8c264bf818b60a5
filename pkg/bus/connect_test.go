package bus_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
)

func TestConnConfigFromEnv(t *testing.T) {
	e := config.New(config.Map(nil))
	c := bus.ConnConfigFromEnv(e, "crm-sync")
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	if c.URL != "nats://127.0.0.1:4222" || c.User != "crm-sync" || c.Authenticated() {
		t.Errorf("defaults: %+v", c)
	}

	e = config.New(config.Map(map[string]string{
		"NATS_URL": "tls://nats:4222", "NATS_USER": "billing-state", "NATS_PASSWORD": "pw",
		"NATS_CA": "/ca.pem", "NATS_CERT": "/c.pem", "NATS_KEY": "/k.pem", "NATS_INBOX_PREFIX": "_INBOX.bs",
	}))
	c = bus.ConnConfigFromEnv(e, "crm-sync")
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	if c.User != "billing-state" || c.Password.Reveal() != "pw" || c.CAFile != "/ca.pem" || c.CertFile != "/c.pem" ||
		c.KeyFile != "/k.pem" || c.Inbox != "_INBOX.bs" || !c.Authenticated() {
		t.Errorf("read: %+v", c)
	}

	e = config.New(config.Map(map[string]string{
		"NATS_PASSWORD": "pw", "NATS_NKEY": "/seed", "NATS_CERT": "/c.pem", "NATS_INBOX_PREFIX": "_INBOX.>",
	}))
	bus.ConnConfigFromEnv(e, "ingress")
	err := e.Err()
	for _, want := range []string{"NATS_PASSWORD and NATS_NKEY", "NATS_CERT and NATS_KEY", "NATS_INBOX_PREFIX"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}

	for url, want := range map[string]bool{"nats://u:p@nats:4222": true, "nats://tok@nats:4222": true, "nats://a:4222,nats://b:4222": false} {
		if got := (bus.ConnConfig{URL: url}).Authenticated(); got != want {
			t.Errorf("Authenticated(%s) = %v", url, got)
		}
	}
}

// The connection's log line names the server, the user and how it
// authenticates; never a password or token, in the URL or beside it.
func TestConnConfigLogsNoSecret(t *testing.T) {
	for name, c := range map[string]bus.ConnConfig{
		"password":  {URL: "nats://nats:4222", User: "ingress", Password: "hunter2hunter2hunter2"},
		"token":     {URL: "nats://nats:4222", Token: "hunter2hunter2hunter2"},
		"url":       {URL: "nats://ingress:hunter2hunter2hunter2@a:4222,nats://ingress:hunter2hunter2hunter2@b:4222"},
		"url token": {URL: "nats://hunter2hunter2hunter2@nats:4222"},
	} {
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("start", "nats", c)
		if strings.Contains(buf.String(), "hunter2") {
			t.Errorf("%s: %s", name, buf.String())
		}
		if !strings.Contains(buf.String(), `"auth":"`) {
			t.Errorf("%s: the log does not say how the client authenticates: %s", name, buf.String())
		}
	}
}

// A server that refuses the credentials ends Connect at once with
// ErrNotAuthorized, not after the whole connect timeout.
func TestConnectRefusedCredentials(t *testing.T) {
	srv := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, c := range map[string]bus.ConnConfig{
		"anonymous":      {URL: srv.URL(), User: natsauth.Ingress},
		"wrong password": {URL: srv.URL(), User: natsauth.Ingress, Password: "not-it"},
		"another's key":  {URL: srv.URL(), User: natsauth.Ingress, NKeyFile: filepath.Join(t.TempDir(), "missing.nk")},
	} {
		start := time.Now()
		nc, _, err := bus.Connect(ctx, c, "refused", nil)
		if nc != nil {
			nc.Close()
		}
		if name == "another's key" {
			if err == nil || !strings.Contains(err.Error(), "NATS_NKEY") {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if !errors.Is(err, bus.ErrNotAuthorized) || errors.Is(err, bus.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrNotAuthorized", name, err)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("%s: took %s", name, d)
		}
	}
}

// An authenticated service does not create streams: it waits for the
// provisioning step, bounded by Wait, and starts as soon as the streams
// are there.
func TestEnsureStreamsWaitsForProvisioning(t *testing.T) {
	srv := natstest.Start(t)
	ctx := testCtx(t)
	anc, admin, err := bus.Connect(ctx, srv.Conn(natsauth.Admin), "admin", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	for _, s := range []string{bus.StreamEvents, bus.StreamDLQ, bus.StreamStatus} {
		if err := admin.DeleteStream(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	nc, js, err := bus.Connect(ctx, srv.Conn(natsauth.CRMSync), "crm-sync", slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	start := time.Now()
	err = bus.EnsureStreams(ctx, js, bus.StreamConfig{Wait: 1500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "launchready provision") {
		t.Fatalf("no streams: %v, want a bounded wait that names the provisioning step", err)
	}
	if d := time.Since(start); d < time.Second || d > 15*time.Second {
		t.Errorf("gave up after %s, want about the 1.5 s asked for", d)
	}
	if !strings.Contains(logs.String(), "waiting for the streams to be provisioned") {
		t.Errorf("the wait is not logged: %s", logs.String())
	}
	// The service's user may not make them itself.
	if _, err := admin.Stream(ctx, bus.StreamEvents); err == nil {
		t.Fatal("a service's wait created the stream")
	}

	done := make(chan error, 1)
	go func() { done <- bus.EnsureStreams(ctx, js, bus.StreamConfig{Wait: time.Minute}) }()
	srv.Provision(bus.StreamConfig{})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after provisioning: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("EnsureStreams still waiting after provisioning")
	}
}

// NATS_CA makes the client require TLS and trust only that CA; NATS_CERT
// and NATS_KEY present a client certificate to a server that demands one.
func TestConnectTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, serverCert, serverKey, clientCert, clientKey := writeTestPKI(t, dir)
	tlsConfig, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: serverCert, KeyFile: serverKey, CaFile: caFile, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, TLSConfig: tlsConfig, TLS: true, TLSVerify: true, TLSTimeout: 5})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("TLS server not ready")
	}
	url := "nats://" + srv.Addr().(*net.TCPAddr).String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	nc, _, err := bus.Connect(ctx, bus.ConnConfig{URL: url, CAFile: caFile, CertFile: clientCert, KeyFile: clientKey}, "tls", nil)
	if err != nil {
		t.Fatalf("with the CA and a client certificate: %v", err)
	}
	if !nc.TLSRequired() {
		t.Error("connection is not TLS")
	}
	nc.Close()

	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if nc, _, err := bus.Connect(short, bus.ConnConfig{URL: url, CAFile: caFile}, "tls-no-cert", nil); err == nil {
		nc.Close()
		t.Error("connected without the client certificate the server demands")
	}
}

// writeTestPKI makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all fresh for the test.
func writeTestPKI(t *testing.T, dir string) (ca, serverCert, serverKey, clientCert, clientKey string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "launchready test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	ca = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	serverCert, serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	clientCert, clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return ca, serverCert, serverKey, clientCert, clientKey
}

func writePEM(t *testing.T, dir, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
