package doctor

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/smtp"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// mailDomain is the domain alerts are sent from: DOCTOR_MAIL_DOMAIN, else
// the domain of ALERT_EMAIL_FROM.
func (d *Doctor) mailDomain() string {
	if dom := d.env.Lookup("DOCTOR_MAIL_DOMAIN"); dom != "" {
		return strings.TrimSuffix(dom, ".")
	}
	from := d.env.Lookup("ALERT_EMAIL_FROM")
	if i := strings.LastIndexByte(from, '@'); i >= 0 {
		return strings.TrimSuffix(strings.Trim(from[i+1:], "<> "), ".")
	}
	return ""
}

// resolver is DOCTOR_DNS_RESOLVER (host:port), else the first nameserver of
// /etc/resolv.conf.
func (d *Doctor) resolver() (string, error) {
	if r := d.env.Lookup("DOCTOR_DNS_RESOLVER"); r != "" {
		if _, _, err := net.SplitHostPort(r); err != nil {
			return net.JoinHostPort(r, "53"), nil
		}
		return r, nil
	}
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil || len(cc.Servers) == 0 {
		return "", fmt.Errorf("no DNS resolver: set DOCTOR_DNS_RESOLVER (/etc/resolv.conf: %v)", err)
	}
	return net.JoinHostPort(cc.Servers[0], cc.Port), nil
}

// txt returns the TXT records at name, each with its strings joined.
func txt(ctx context.Context, server, name string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	m.RecursionDesired = true
	c := &dns.Client{Timeout: 5 * time.Second}
	in, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		return nil, fmt.Errorf("TXT %s at %s: %v", name, server, err)
	}
	switch in.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		return nil, fmt.Errorf("TXT %s at %s: %s", name, server, dns.RcodeToString[in.Rcode])
	}
	var out []string
	for _, rr := range in.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out, nil
}

func withPrefix(records []string, prefix string) []string {
	var out []string
	for _, r := range records {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(r)), strings.ToLower(prefix)) {
			out = append(out, r)
		}
	}
	return out
}

func quoted(records []string) string {
	q := make([]string, len(records))
	for i, r := range records {
		q[i] = strconv.Quote(r)
	}
	return strings.Join(q, ", ")
}

// checkMailDNS reads SPF, DKIM and DMARC for the alert sender's domain:
// without them, alert and customer mail lands in spam or nowhere.
func (d *Doctor) checkMailDNS(ctx context.Context) ([]Check, error) {
	domain := d.mailDomain()
	if domain == "" {
		return nil, skip("no mail sender: ALERT_EMAIL_FROM (or DOCTOR_MAIL_DOMAIN) is not set")
	}
	server, err := d.resolver()
	if err != nil {
		return nil, err
	}
	var out []Check

	recs, err := txt(ctx, server, domain)
	spf := withPrefix(recs, "v=spf1")
	switch {
	case err != nil:
		out = append(out, fail("mail/spf "+domain, err.Error(), "check DOCTOR_DNS_RESOLVER"))
	case len(spf) == 0:
		out = append(out, fail("mail/spf "+domain, "no SPF record (TXT v=spf1) at "+domain,
			`publish one naming the SMTP relay, e.g. "v=spf1 include:<relay's spf domain> -all"`))
	case len(spf) > 1:
		out = append(out, fail("mail/spf "+domain, "more than one SPF record, which receivers treat as an error: "+quoted(spf), "merge them into one record"))
	case strings.HasSuffix(strings.TrimSpace(spf[0]), "+all"):
		out = append(out, warn("mail/spf "+domain, "SPF allows every sender: "+quoted(spf), "end the record with -all or ~all"))
	default:
		out = append(out, pass("mail/spf "+domain, quoted(spf)))
	}

	if sel := d.env.Lookup("DOCTOR_DKIM_SELECTOR"); sel == "" {
		out = append(out, warn("mail/dkim "+domain, "no selector to look up", "set DOCTOR_DKIM_SELECTOR to the selector your mail provider signs with"))
	} else {
		name := sel + "._domainkey." + domain
		recs, err := txt(ctx, server, name)
		var keys []string
		for _, r := range recs {
			if strings.Contains(r, "p=") {
				keys = append(keys, r)
			}
		}
		switch {
		case err != nil:
			out = append(out, fail("mail/dkim "+domain, err.Error(), "check DOCTOR_DNS_RESOLVER"))
		case len(keys) == 0:
			out = append(out, fail("mail/dkim "+domain, "no DKIM key at "+name, "publish the provider's DKIM key for selector "+sel))
		case dkimRevoked(keys[0]):
			out = append(out, fail("mail/dkim "+domain, "the key at "+name+" is revoked (empty p=): "+quoted(keys), "publish the current key"))
		default:
			out = append(out, pass("mail/dkim "+domain, name+": "+quoted(keys)))
		}
	}

	recs, err = txt(ctx, server, "_dmarc."+domain)
	dmarc := withPrefix(recs, "v=DMARC1")
	switch {
	case err != nil:
		out = append(out, fail("mail/dmarc "+domain, err.Error(), "check DOCTOR_DNS_RESOLVER"))
	case len(dmarc) == 0:
		out = append(out, fail("mail/dmarc "+domain, "no DMARC record at _dmarc."+domain,
			`publish one, e.g. "v=DMARC1; p=quarantine; rua=mailto:dmarc@`+domain+`"`))
	case strings.Contains(strings.ReplaceAll(strings.ToLower(dmarc[0]), " ", ""), ";p=none"):
		out = append(out, warn("mail/dmarc "+domain, "DMARC only monitors (p=none): "+quoted(dmarc), "move to p=quarantine once reports are clean"))
	default:
		out = append(out, pass("mail/dmarc "+domain, quoted(dmarc)))
	}
	return out, nil
}

func dkimRevoked(rec string) bool {
	for _, part := range strings.Split(rec, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && strings.TrimSpace(k) == "p" {
			return strings.TrimSpace(v) == ""
		}
	}
	return false
}

// checkSMTP connects to SMTP_HOST:SMTP_PORT, upgrades with STARTTLS (or
// starts in TLS on port 465) and authenticates, then quits without
// sending anything.
func (d *Doctor) checkSMTP(ctx context.Context) ([]Check, error) {
	host := d.env.Lookup("SMTP_HOST")
	if host == "" {
		return nil, skip("SMTP_HOST is not set: no e-mail channel")
	}
	port := d.env.String("SMTP_PORT", "587")
	addr := net.JoinHostPort(host, port)
	name := "smtp " + addr
	roots, err := d.roots()
	if err != nil {
		return nil, err
	}
	tcfg := &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12}
	var conn net.Conn
	if port == "465" {
		conn, err = (&tls.Dialer{Config: tcfg}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return []Check{fail(name, "cannot connect: "+oneLine(err.Error()), "check SMTP_HOST, SMTP_PORT and the egress firewall")}, nil
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		_ = conn.Close()
		return []Check{fail(name, "no SMTP greeting: "+oneLine(err.Error()), "point SMTP_HOST at the submission server")}, nil
	}
	defer c.Close()
	if err := c.Hello("launchready-doctor"); err != nil {
		return []Check{fail(name, "EHLO refused: "+oneLine(err.Error()), "check the server")}, nil
	}
	if port != "465" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return []Check{fail(name, "the server offers no STARTTLS: credentials would cross the network in clear", "use the provider's submission port (587) with STARTTLS")}, nil
		}
		if err := c.StartTLS(tcfg); err != nil {
			return []Check{fail(name, "STARTTLS failed: "+oneLine(err.Error()), "the server's certificate must be valid for "+host)}, nil
		}
	}
	user := d.env.Lookup("SMTP_USERNAME")
	if user == "" {
		_ = c.Quit()
		return []Check{warn(name, "TLS works; no SMTP_USERNAME, so AUTH was not tried", "set SMTP_USERNAME and SMTP_PASSWORD unless the relay trusts this host")}, nil
	}
	if ok, _ := c.Extension("AUTH"); !ok {
		return []Check{fail(name, "the server offers no AUTH after TLS", "use the provider's authenticated submission port")}, nil
	}
	if err := c.Auth(smtp.PlainAuth("", user, d.env.Lookup("SMTP_PASSWORD"), host)); err != nil {
		return []Check{fail(name, "AUTH as "+user+" refused: "+oneLine(err.Error()), "check SMTP_USERNAME and SMTP_PASSWORD")}, nil
	}
	_ = c.Quit()
	return []Check{pass(name, "STARTTLS and AUTH as "+user+" succeed (nothing sent)")}, nil
}
