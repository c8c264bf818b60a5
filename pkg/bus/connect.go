package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/config"
)

// ConnConfig says where NATS is and how a client proves who it is there.
// The server gives each user permissions of its own (pkg/natsauth), so a
// service connects as its own user and nothing else.
type ConnConfig struct {
	// URL is NATS_URL: one server or a comma-separated list. Credentials
	// in it (nats://user:password@host, nats://token@host) are used as
	// nats.go uses them.
	URL string
	// User is NATS_USER, the service's own name unless set. With Password
	// it is the login; in any case it names the client's private inbox
	// (InboxPrefix), the only reply subjects its user may subscribe to.
	User string
	// Password is NATS_PASSWORD, sent with User.
	Password config.Secret
	// Token is NATS_TOKEN, for a server that authenticates by token alone.
	Token config.Secret
	// NKeyFile is NATS_NKEY: a file holding the user's nkey seed. The seed
	// never leaves the process: the client signs the server's challenge.
	NKeyFile string
	// CredsFile is NATS_CREDS: a user JWT and seed (decentralised auth).
	CredsFile string
	// CAFile is NATS_CA: trust this CA (PEM) and require TLS. CertFile and
	// KeyFile (NATS_CERT, NATS_KEY) present a client certificate.
	CAFile, CertFile, KeyFile string
	// Inbox is NATS_INBOX_PREFIX; empty means InboxPrefix(User).
	Inbox string
}

// InboxPrefix is where user's replies arrive (PubAcks, JetStream API
// answers, pulled messages): _INBOX.<user>. The server lets only that user
// subscribe there, so no client can read another's replies.
func InboxPrefix(user string) string {
	if user == "" {
		return nats.InboxPrefix[:len(nats.InboxPrefix)-1]
	}
	return nats.InboxPrefix + user
}

// ConnConfigFromEnv reads NATS_URL (nats://127.0.0.1:4222), NATS_USER
// (user), NATS_PASSWORD, NATS_TOKEN, NATS_NKEY, NATS_CREDS, NATS_CA,
// NATS_CERT, NATS_KEY and NATS_INBOX_PREFIX. user is the name the
// deployment gives the caller on the server: the service's own name.
// Problems are collected in e.
func ConnConfigFromEnv(e *config.Env, user string) ConnConfig {
	c := ConnConfig{
		URL:       e.String("NATS_URL", nats.DefaultURL),
		User:      e.String("NATS_USER", user),
		Password:  e.Secret("NATS_PASSWORD"),
		Token:     e.Secret("NATS_TOKEN"),
		NKeyFile:  e.Lookup("NATS_NKEY"),
		CredsFile: e.Lookup("NATS_CREDS"),
		CAFile:    e.Lookup("NATS_CA"),
		CertFile:  e.Lookup("NATS_CERT"),
		KeyFile:   e.Lookup("NATS_KEY"),
		Inbox:     e.Lookup("NATS_INBOX_PREFIX"),
	}
	if err := c.validate(); err != nil {
		e.Fail("%v", err)
	}
	return c
}

func (c ConnConfig) validate() error {
	var errs []error
	var methods []string
	for _, m := range []struct {
		name string
		set  bool
	}{
		{"NATS_PASSWORD", c.Password != ""},
		{"NATS_TOKEN", c.Token != ""},
		{"NATS_NKEY", c.NKeyFile != ""},
		{"NATS_CREDS", c.CredsFile != ""},
	} {
		if m.set {
			methods = append(methods, m.name)
		}
	}
	if len(methods) > 1 {
		errs = append(errs, fmt.Errorf("NATS credentials: %s are set; use one", strings.Join(methods, " and ")))
	}
	if c.Password != "" && c.User == "" {
		errs = append(errs, errors.New("NATS_PASSWORD is set without NATS_USER"))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("NATS_CERT and NATS_KEY go together"))
	}
	if c.Inbox != "" && (strings.ContainsAny(c.Inbox, "*> \t") || strings.HasSuffix(c.Inbox, ".")) {
		errs = append(errs, fmt.Errorf("NATS_INBOX_PREFIX %q: want subject tokens without wildcards or a trailing dot", c.Inbox))
	}
	return errors.Join(errs...)
}

// Authenticated reports whether the client presents credentials of any
// kind, in the URL or beside it.
func (c ConnConfig) Authenticated() bool {
	if c.Password != "" || c.Token != "" || c.NKeyFile != "" || c.CredsFile != "" {
		return true
	}
	for _, raw := range strings.Split(c.URL, ",") {
		if u, err := url.Parse(strings.TrimSpace(raw)); err == nil && u.User != nil {
			return true
		}
	}
	return false
}

// Options are the nats.go options for the credentials and TLS settings,
// for a caller that dials with nats.Connect itself.
func (c ConnConfig) Options() ([]nats.Option, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	inbox := c.Inbox
	if inbox == "" {
		inbox = InboxPrefix(c.User)
	}
	opts := []nats.Option{nats.CustomInboxPrefix(inbox)}
	switch {
	case c.Password != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password.Reveal()))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token.Reveal()))
	case c.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY %s: %w", c.NKeyFile, err)
		}
		opts = append(opts, o)
	case c.CredsFile != "":
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.CAFile))
	}
	if c.CertFile != "" {
		opts = append(opts, nats.ClientCert(c.CertFile, c.KeyFile))
	}
	return opts, nil
}

// LogValue names the server, the user and how it authenticates; never a
// secret.
func (c ConnConfig) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("url", maskURLs(c.URL)), slog.String("user", c.User), slog.String("auth", c.method())}
	if c.CAFile != "" {
		attrs = append(attrs, slog.String("ca", c.CAFile))
	}
	if c.CertFile != "" {
		attrs = append(attrs, slog.String("cert", c.CertFile))
	}
	return slog.GroupValue(attrs...)
}

func (c ConnConfig) method() string {
	switch {
	case c.Password != "":
		return "password"
	case c.Token != "":
		return "token"
	case c.NKeyFile != "":
		return "nkey " + c.NKeyFile
	case c.CredsFile != "":
		return "creds " + c.CredsFile
	case c.Authenticated():
		return "url"
	}
	return "none"
}

// maskURLs masks each URL of a comma-separated NATS_URL.
func maskURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = config.MaskURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// Connect dials NATS as cc says and returns the connection and its
// JetStream handle. The client reconnects forever with jittered waits, so a
// broker restart costs an outage, never a process restart; a server that
// refuses the credentials twice in a row closes the connection for good.
// Connect blocks until the first connection is up or ctx ends; bound ctx
// to bound the wait.
//
// While disconnected, a publish attempt fails at once instead of being
// buffered, so a publish the caller was told had failed can never reach
// the stream later behind its back; a publish with a message id tries
// again until its deadline (see Publisher), which covers a reconnect to
// another node of a cluster.
func Connect(ctx context.Context, cc ConnConfig, clientName string, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "nats", "client", clientName)
	auth, err := cc.Options()
	if err != nil {
		return nil, nil, fmt.Errorf("connect nats %s: %w", maskURLs(cc.URL), err)
	}
	opts := append(auth,
		nats.Name(clientName),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ReconnectBufSize(-1),
		// Notice a server that stopped answering (a paused process, a
		// half-open connection after a node loss) within 4 to 6 s instead
		// of the 4 minutes of the defaults, and reconnect to another: a
		// consumer or publisher on it is stuck until then. A ping every
		// 2 s costs nothing beside the traffic.
		nats.PingInterval(2*time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", Redact(err.Error()))
				return
			}
			log.Info("nats disconnected")
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ConnectHandler(func(c *nats.Conn) {
			log.Info("nats connected", "url", c.ConnectedUrlRedacted(), "user", cc.User, "auth", cc.method())
		}),
		nats.ClosedHandler(func(c *nats.Conn) {
			if err := c.LastError(); err != nil {
				log.Error("nats connection closed", "error", Redact(err.Error()))
				return
			}
			log.Info("nats connection closed")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats async error", "subject", subj, "error", Redact(err.Error()))
		}),
	)
	nc, err := nats.Connect(cc.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect nats %s: %w", maskURLs(cc.URL), err)
	}
	if err := waitConnected(ctx, nc); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("connect nats %s as %q: %w", maskURLs(cc.URL), cc.User, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, &connectedJS{JetStream: js, log: log, provisions: !cc.Authenticated()}, nil
}

// connectedJS is the JetStream handle Connect returns. It carries what the
// setup steps need to know about the connection: its logger, and whether
// the client may create streams itself (see EnsureStreams).
type connectedJS struct {
	jetstream.JetStream
	log        *slog.Logger
	provisions bool
}

func waitConnected(ctx context.Context, nc *nats.Conn) error {
	ch := nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer nc.RemoveStatusListener(ch)
	for !nc.IsConnected() {
		if nc.IsClosed() {
			return closedError(nc)
		}
		select {
		case <-ctx.Done():
			if err := nc.LastError(); err != nil {
				return errors.Join(ErrUnavailable, ctx.Err(), err)
			}
			return errors.Join(ErrUnavailable, ctx.Err())
		case st := <-ch:
			if st == nats.CLOSED {
				return closedError(nc)
			}
		}
	}
	return nil
}

// closedError says why a connection closed before it was ever up: most
// often the server refused the credentials.
func closedError(nc *nats.Conn) error {
	if err := nc.LastError(); err != nil {
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			return fmt.Errorf("%w: %w", ErrNotAuthorized, err)
		}
		return errors.Join(ErrUnavailable, nats.ErrConnectionClosed, err)
	}
	return errors.Join(ErrUnavailable, nats.ErrConnectionClosed)
}
