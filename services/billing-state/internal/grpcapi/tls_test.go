package grpcapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/launchready/launchready/pkg/config"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "launchready test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue writes a server certificate for 127.0.0.1 with the given serial
// and its key as PEM files, replacing what they held.
func (ca *testCA) issue(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "billing-state"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	// Write then rename, as a Secret volume or cert-manager updates.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, data)
}

// servedSerial is the serial of the certificate the server presents.
func servedSerial(t *testing.T, addr string, roots *x509.CertPool) int64 {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// With GRPC_TLS_CERT and GRPC_TLS_KEY the server speaks TLS only, and a
// renewed pair is served from the next handshake on; a pair that does not
// load leaves the previous one in service.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca := newTestCA(t)
	ca.issue(t, 100, certFile, keyFile)
	b := setup(t, setupOptions{cfg: Config{TLSCert: certFile, TLSKey: keyFile}})
	ctx := testContext(t)
	req := byID("cus_A")

	_, err := b.tlsClient(&tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}).GetCustomerStatus(as(ctx, b.read), req)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("over TLS: %v", err)
	}
	if _, err := b.client().GetCustomerStatus(as(ctx, b.read), req); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext: %v, want Unavailable", err)
	}
	if _, err := b.tlsClient(&tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}).GetCustomerStatus(as(ctx, b.read), req); status.Code(err) != codes.Unavailable {
		t.Fatalf("a client that does not trust the CA: %v, want Unavailable", err)
	}
	if got := servedSerial(t, b.addr, ca.pool); got != 100 {
		t.Fatalf("serial %d, want 100", got)
	}

	ca.issue(t, 101, certFile, keyFile)
	if got := servedSerial(t, b.addr, ca.pool); got != 101 {
		t.Fatalf("after renewal: serial %d, want 101", got)
	}

	// Half a rotation: a new certificate with the old key does not load.
	other := filepath.Join(dir, "other")
	ca.issue(t, 102, other+".crt", other+".key")
	copyFile(t, other+".crt", certFile)
	if got := servedSerial(t, b.addr, ca.pool); got != 101 {
		t.Fatalf("mismatched pair: serial %d, want the previous 101", got)
	}
	copyFile(t, other+".key", keyFile)
	if got := servedSerial(t, b.addr, ca.pool); got != 102 {
		t.Fatalf("rotation completed: serial %d, want 102", got)
	}
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, b.addr, ca.pool); got != 102 {
		t.Fatalf("files gone: serial %d, want the previous 102", got)
	}
}

// A bad pair is a configuration error, so the service does not start.
func TestTLSBadPairIsAConfigError(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca := newTestCA(t)
	ca.issue(t, 1, certFile, keyFile)
	ca.issue(t, 2, filepath.Join(dir, "b.crt"), filepath.Join(dir, "b.key"))
	wrongKey, err := os.ReadFile(filepath.Join(dir, "b.key"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keyFile, wrongKey)
	for _, env := range []map[string]string{
		{"GRPC_TLS_CERT": certFile, "GRPC_TLS_KEY": keyFile},
		{"GRPC_TLS_CERT": filepath.Join(dir, "missing.crt"), "GRPC_TLS_KEY": keyFile},
		{"GRPC_TLS_CERT": certFile},
	} {
		e := config.New(config.Map(env))
		ConfigFromEnv(e)
		err := e.Err()
		if err == nil || !strings.Contains(err.Error(), "GRPC_TLS_") {
			t.Errorf("%v: %v, want a GRPC_TLS_ configuration error", env, err)
			continue
		}
		if strings.Contains(err.Error(), string(wrongKey[40:80])) {
			t.Errorf("the error shows the key: %v", err)
		}
	}
}
