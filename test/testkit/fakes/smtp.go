package fakes

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mail is one message the fake SMTP server accepted.
type Mail struct {
	At        time.Time
	From      string
	To        []string
	Subject   string
	MessageID string
	Body      string
	Raw       []byte
	// TLS and Authenticated say how the session that sent it was secured.
	TLS           bool
	Authenticated bool
	EventIDs      []string // every Stripe event id the message names
}

// SMTP is a submission server (github.com/emersion/go-smtp) on 127.0.0.1
// that offers STARTTLS with a certificate from a CA generated for it, and
// AUTH PLAIN only after STARTTLS, with generated credentials. It refuses
// MAIL FROM before TLS and AUTH, so a client that skips either fails.
type SMTP struct {
	Username, Password string
	// CAPEM is the PEM of the CA that signed the server's certificate;
	// CAPool holds it, for a client's tls.Config.
	CAPEM  []byte
	CAPool *x509.CertPool
	srv    *smtp.Server
	ln     net.Listener
	done   chan struct{}

	inbox *inbox[Mail]

	mu     sync.Mutex
	reject *smtp.SMTPError
	calls  int
}

// NewSMTP starts the server.
func NewSMTP() (*SMTP, error) {
	caPEM, pool, cert, err := testCertificates("127.0.0.1")
	if err != nil {
		return nil, err
	}
	s := &SMTP{Username: "alerts-" + randomHex(4), Password: randomHex(16), CAPEM: caPEM, CAPool: pool,
		inbox: newInbox[Mail](), done: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &smtpSession{s: s, conn: c}, nil }))
	s.srv.Domain = "localhost"
	s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	s.srv.MaxRecipients = 50
	s.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() { defer close(s.done); _ = s.srv.Serve(s.ln) }()
	return s, nil
}

// Host and Port are SMTP_HOST and SMTP_PORT.
func (s *SMTP) Host() string { return "127.0.0.1" }

// Port is the listening port.
func (s *SMTP) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Addr is host:port.
func (s *SMTP) Addr() string { return net.JoinHostPort(s.Host(), strconv.Itoa(s.Port())) }

// TLSConfig trusts the server's CA, for a client.
func (s *SMTP) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.CAPool, ServerName: s.Host(), MinVersion: tls.VersionTLS12}
}

// Close stops the server.
func (s *SMTP) Close() {
	_ = s.srv.Close()
	<-s.done
}

// Reject makes every later MAIL FROM fail with code (e.g. 451 for a
// temporary failure, 550 for a permanent one); 0 accepts again.
func (s *SMTP) Reject(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == 0 {
		s.reject = nil
		return
	}
	s.reject = &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 0, 0}, Message: "refused by the test"}
}

// Sessions counts MAIL FROM commands received, accepted or not.
func (s *SMTP) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Mails returns the accepted messages in arrival order.
func (s *SMTP) Mails() []Mail { return s.inbox.all() }

// WaitFor waits until cond holds over the accepted messages, failing tb at
// the deadline. It wakes on every accepted message.
func (s *SMTP) WaitFor(tb TB, timeout time.Duration, what string, cond func([]Mail) bool) []Mail {
	tb.Helper()
	return s.inbox.waitFor(tb, "smtp", timeout, what, cond)
}

type smtpSession struct {
	s      *SMTP
	conn   *smtp.Conn
	authed bool
	from   string
	to     []string
}

var errNeedsTLS = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}

func (ss *smtpSession) tls() bool {
	_, ok := ss.conn.TLSConnectionState()
	return ok
}

func (ss *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	if !ss.tls() {
		return nil, errNeedsTLS
	}
	return sasl.NewPlainServer(func(_, username, password string) error {
		if username != ss.s.Username || password != ss.s.Password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.s.mu.Lock()
	ss.s.calls++
	reject := ss.s.reject
	ss.s.mu.Unlock()
	switch {
	case !ss.tls():
		return errNeedsTLS
	case !ss.authed:
		return smtp.ErrAuthRequired
	case reject != nil:
		return reject
	}
	ss.from = from
	return nil
}

func (ss *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *smtpSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := Mail{At: time.Now(), From: ss.from, To: append([]string(nil), ss.to...), Raw: raw, TLS: ss.tls(), Authenticated: ss.authed}
	if msg, err := mail.ReadMessage(bytesReader(raw)); err == nil {
		dec := new(mime.WordDecoder)
		m.Subject, _ = dec.DecodeHeader(msg.Header.Get("Subject"))
		m.MessageID = msg.Header.Get("Message-Id")
		body, _ := io.ReadAll(msg.Body)
		m.Body = decodeBody(msg.Header.Get("Content-Transfer-Encoding"), body)
	}
	m.EventIDs = uniqueStrings(eventIDRE.FindAllString(m.Subject+"\n"+m.Body, -1))
	ss.s.inbox.add(m)
	return nil
}

func (ss *smtpSession) Reset() { ss.from, ss.to = "", nil }

func (ss *smtpSession) Logout() error { return nil }

// testCertificates makes a CA and a server certificate for host, valid for
// a day.
func testCertificates(host string) (caPEM []byte, pool *x509.CertPool, cert tls.Certificate, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, cert, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "testkit SMTP CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, cert, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, cert, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, cert, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, cert, err
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if caPEM == nil {
		return nil, nil, cert, errors.New("encode CA")
	}
	return caPEM, pool, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// decodeBody undoes a single-part body's transfer encoding.
func decodeBody(cte string, body []byte) string {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		if b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body))); err == nil {
			return string(b)
		}
	case "base64":
		if b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(body)), "")); err == nil {
			return string(b)
		}
	}
	return string(body)
}

func uniqueStrings(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
