// Package email sends alert e-mails over SMTP with STARTTLS required and
// AUTH when a user name is set (github.com/wneessen/go-mail). SMTP has no
// idempotency key: each message carries a Message-ID derived from what it
// is about, so a repeat after a lost answer can at least be recognised by
// the receiving side, and exactly-once rests on support-notify's own
// sent-alert records, as for Slack.
package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	mail "github.com/wneessen/go-mail"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
)

// DefaultPort is the submission port, where STARTTLS is the norm.
const DefaultPort = 587

// Config is SMTP_HOST, SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD and
// ALERT_EMAIL_FROM.
type Config struct {
	Host     string
	Port     int
	Username string
	Password config.Secret
	From     string
	// Timeout bounds one connection and send (0: 30 s).
	Timeout time.Duration
	// TLS overrides the TLS settings (tests trust their own CA); nil means
	// the system roots, verifying Host.
	TLS *tls.Config
}

// Message is one e-mail.
type Message struct {
	To      []string
	Subject string
	Body    string
	// ID is the Message-ID without angle brackets; the sender's domain is
	// appended when it has none.
	ID string
}

// Sender sends through one SMTP server.
type Sender struct {
	cfg Config
}

// New returns a sender for cfg.
func New(cfg Config) *Sender {
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	return &Sender{cfg: cfg}
}

// Send delivers msg: connect, STARTTLS (required), AUTH, one message, quit.
// A refused recipient or sender (5xx) is permanent; anything else, from a
// dropped connection to a 4xx, is worth another try.
func (s *Sender) Send(ctx context.Context, msg Message) error {
	m := mail.NewMsg()
	if err := m.From(s.cfg.From); err != nil {
		return bus.Permanent(fmt.Errorf("email: ALERT_EMAIL_FROM: %w", err))
	}
	if err := m.To(msg.To...); err != nil {
		return bus.Permanent(fmt.Errorf("email: recipient: %w", err))
	}
	m.Subject(msg.Subject)
	m.SetBodyString(mail.TypeTextPlain, msg.Body)
	m.SetDate()
	if msg.ID != "" {
		id := msg.ID
		if !strings.Contains(id, "@") {
			id += "@" + domainOf(s.cfg.From)
		}
		m.SetMessageIDWithValue(id)
	}
	m.SetGenHeader("Auto-Submitted", "auto-generated")

	tlsCfg := s.cfg.TLS
	if tlsCfg == nil {
		tlsCfg = &tls.Config{ServerName: s.cfg.Host, MinVersion: tls.VersionTLS12}
	}
	opts := []mail.Option{
		mail.WithPort(s.cfg.Port),
		mail.WithTLSPolicy(mail.TLSMandatory),
		mail.WithTLSConfig(tlsCfg),
		mail.WithTimeout(s.cfg.Timeout),
	}
	if s.cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthPlain), mail.WithUsername(s.cfg.Username), mail.WithPassword(s.cfg.Password.Reveal()))
	}
	c, err := mail.NewClient(s.cfg.Host, opts...)
	if err != nil {
		return bus.Permanent(fmt.Errorf("email: client: %w", err))
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := c.DialAndSendWithContext(ctx, m); err != nil {
		return classify(err)
	}
	return nil
}

// classify marks what no retry will fix: a 5xx answer to the sender or a
// recipient, or a refused AUTH.
func classify(err error) error {
	var se *mail.SendError
	if errors.As(err, &se) && se.IsTemp() {
		return fmt.Errorf("email send: %w", err)
	}
	if errors.As(err, &se) {
		switch se.Reason {
		case mail.ErrSMTPMailFrom, mail.ErrSMTPRcptTo:
			return bus.Permanent(fmt.Errorf("email send: %w", err))
		}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return fmt.Errorf("email send: %w", err)
	}
	if code := smtpCode(err); code >= 500 && code < 600 {
		return bus.Permanent(fmt.Errorf("email send: %w", err))
	}
	return fmt.Errorf("email send: %w", err)
}

// smtpCode finds a three-digit SMTP reply code at the start of the error's
// text, as net/smtp-style errors carry it ("535 5.7.8 ...").
func smtpCode(err error) int {
	for e := err; e != nil; e = errors.Unwrap(e) {
		s := e.Error()
		if len(s) >= 3 {
			if n, convErr := strconv.Atoi(s[:3]); convErr == nil {
				return n
			}
		}
	}
	return 0
}

func domainOf(addr string) string {
	if i := strings.LastIndex(addr, "@"); i >= 0 {
		return strings.Trim(addr[i+1:], "> ")
	}
	return "launchready.invalid"
}
