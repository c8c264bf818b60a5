package grpcapi

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// keyPair serves the certificate in certFile and keyFile, read again when
// either file changes, so that a renewed certificate (cert-manager, a
// rotated Secret) is served from the next handshake on, without a restart.
//
// The files are read at every handshake: two small reads cost little next
// to the handshake itself, and unlike a modification time they cannot miss
// a change. A pair that does not load (a rotation caught between its two
// writes, a bad file) is logged once and the previous pair stays in use.
type keyPair struct {
	certFile, keyFile string
	log               *slog.Logger

	mu              sync.Mutex
	certPEM, keyPEM []byte // the pair being served, as read
	cert            *tls.Certificate
	failed          [sha256.Size]byte // the last failure logged, zero when none
}

// loadKeyPair reads the pair once; it fails when the files do not hold a
// matching certificate and key, so a bad setting stops the start.
func loadKeyPair(certFile, keyFile string, log *slog.Logger) (*keyPair, error) {
	k := &keyPair{certFile: certFile, keyFile: keyFile, log: log}
	certPEM, keyPEM, err := k.read()
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("GRPC_TLS_CERT, GRPC_TLS_KEY: %w", errNotAPair)
	}
	k.certPEM, k.keyPEM, k.cert = certPEM, keyPEM, &cert
	return k, nil
}

func (k *keyPair) read() (certPEM, keyPEM []byte, err error) {
	certPEM, cerr := os.ReadFile(k.certFile)
	if cerr != nil {
		cerr = fmt.Errorf("read GRPC_TLS_CERT: %w", cerr)
	}
	keyPEM, kerr := os.ReadFile(k.keyFile)
	if kerr != nil {
		kerr = fmt.Errorf("read GRPC_TLS_KEY: %w", kerr)
	}
	return certPEM, keyPEM, errors.Join(cerr, kerr)
}

// errNotAPair is the whole story of a pair that does not load: the
// parser's own errors say nothing more useful, and nothing of the key may
// reach a log.
var errNotAPair = errors.New("the files do not hold a matching PEM certificate and key")

// getCertificate is tls.Config.GetCertificate.
func (k *keyPair) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	certPEM, keyPEM, err := k.read()
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil && bytes.Equal(certPEM, k.certPEM) && bytes.Equal(keyPEM, k.keyPEM) {
		k.failed = [sha256.Size]byte{}
		return k.cert, nil
	}
	if err == nil {
		cert, perr := tls.X509KeyPair(certPEM, keyPEM)
		if perr == nil {
			k.certPEM, k.keyPEM, k.cert, k.failed = certPEM, keyPEM, &cert, [sha256.Size]byte{}
			k.log.Info("gRPC TLS key pair reloaded", "cert_file", k.certFile)
			return k.cert, nil
		}
		err = errNotAPair
	}
	// Log a failure once, not at every handshake until it is fixed.
	h := sha256.New()
	h.Write([]byte(err.Error()))
	h.Write(certPEM)
	h.Write(keyPEM)
	if sum := [sha256.Size]byte(h.Sum(nil)); sum != k.failed {
		k.failed = sum
		k.log.Warn("gRPC TLS key pair not reloaded; serving the previous one", "cert_file", k.certFile, "error", err.Error())
	}
	return k.cert, nil
}

// tlsConfig is the server's TLS: TLS 1.2 at least, the pair from k.
func (k *keyPair) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: k.getCertificate}
}
