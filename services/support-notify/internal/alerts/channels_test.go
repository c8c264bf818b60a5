package alerts

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/services/support-notify/internal/email"
	"github.com/launchready/launchready/services/support-notify/internal/metrics"
	"github.com/launchready/launchready/services/support-notify/internal/render"
	"github.com/launchready/launchready/services/support-notify/internal/rules"
	"github.com/launchready/launchready/services/support-notify/internal/slack"
	"github.com/launchready/launchready/services/support-notify/internal/store"
	"github.com/launchready/launchready/services/support-notify/internal/twilio"
	"github.com/launchready/launchready/services/support-notify/internal/vendor"
	"github.com/launchready/launchready/test/testkit/fakes"
	"github.com/launchready/launchready/test/testkit/journey"
)

// urgentFailures alerts on every failed payment on every ops channel, by
// SMS too, and e-mails the customer.
const urgentFailures = `rules:
  - event: invoice.payment_failed
    actions: [alert, email_customer]
    priority: urgent
`

// channels are the fake vendors behind every channel.
type channels struct {
	slack  *fakes.Slack
	smtp   *fakes.SMTP
	twilio *fakes.Twilio
	ops    []string
}

func newChannels(t *testing.T) *channels {
	t.Helper()
	hook := fakes.NewSlack("/services/" + journey.ID("T") + "/" + journey.ID("B") + "/" + journey.ID("x"))
	t.Cleanup(hook.Close)
	mailSrv, err := fakes.NewSMTP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mailSrv.Close)
	tw := fakes.NewTwilio()
	t.Cleanup(tw.Close)
	return &channels{slack: hook, smtp: mailSrv, twilio: tw, ops: []string{"ops@example.com"}}
}

// handler builds a handler on every channel; window paces e-mail and SMS.
func (c *channels) handler(t *testing.T, pool *pgPool, window time.Duration) (*Handler, *metrics.Metrics) {
	t.Helper()
	return c.handlerWithRules(t, pool, window, urgentFailures)
}

// handlerWithRules is handler with the routing rules given.
func (c *channels) handlerWithRules(t *testing.T, pool *pgPool, window time.Duration, ruleSet string) (*Handler, *metrics.Metrics) {
	t.Helper()
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.Parse([]byte(ruleSet))
	if err != nil {
		t.Fatal(err)
	}
	mailer := email.New(email.Config{Host: c.smtp.Host(), Port: c.smtp.Port(), Username: c.smtp.Username,
		Password: config.Secret(c.smtp.Password), From: "alerts@example.com", TLS: c.smtp.TLSConfig(), Timeout: 5 * time.Second})
	sms := twilio.New(twilio.Config{APIBase: c.twilio.URL(), AccountSID: c.twilio.AccountSID, AuthToken: config.Secret(c.twilio.AuthToken),
		From: "+15005550006", To: "+15005550001"}, vendor.New(vendor.Config{Vendor: "twilio", Timeout: 5 * time.Second, Metrics: m}))
	ch := slack.New(config.Secret(c.slack.URL()), vendor.New(vendor.Config{Vendor: "slack", Timeout: 5 * time.Second, Metrics: m}))
	h := &Handler{Pool: pool, Rules: set, Channel: ch, Metrics: m, Log: logging.Discard(), SLO: 2 * time.Minute, Window: window,
		Outlets: []Outlet{EmailOutlet(mailer, c.ops, window), CustomerEmailOutlet(mailer, 10*time.Millisecond), SMSOutlet(sms, window)}}
	return h, m
}

func TestEmailAndSMSAlertOnceOverSTARTTLSAndAuth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	c := newChannels(t)
	h, m := c.handler(t, pool, 10*time.Millisecond)
	ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 2, time.Now().Add(-3*time.Second))
	for range 2 {
		if err := h.PostAlert(ctx, &bus.Delivery{Event: ev, Delivered: 1}); err != nil {
			t.Fatal(err)
		}
	}
	mails := c.smtp.Mails()
	if len(mails) != 2 {
		t.Fatalf("want 2 e-mails (ops and customer), got %d", len(mails))
	}
	var ops, cust *fakes.Mail
	for i := range mails {
		mail := &mails[i]
		if !mail.TLS || !mail.Authenticated {
			t.Errorf("e-mail to %v sent without STARTTLS (%v) or AUTH (%v)", mail.To, mail.TLS, mail.Authenticated)
		}
		switch {
		case len(mail.To) == 1 && mail.To[0] == "ops@example.com":
			ops = mail
		case len(mail.To) == 1 && mail.To[0] == ev.GetEmail():
			cust = mail
		default:
			t.Errorf("e-mail to unexpected recipients %v", mail.To)
		}
	}
	if ops == nil || cust == nil {
		t.Fatalf("ops e-mail %v, customer e-mail %v", ops != nil, cust != nil)
	}
	for _, want := range []string{"Invoice payment failed: 49.00 USD", ev.GetEmail()} {
		if !strings.Contains(ops.Subject, want) {
			t.Errorf("ops subject %q lacks %q", ops.Subject, want)
		}
	}
	for _, want := range []string{ev.GetEventId(), "Your card was declined.", "dashboard.stripe.com/test/invoices/" + ev.GetInvoiceId()} {
		if !strings.Contains(ops.Body, want) {
			t.Errorf("ops body lacks %q:\n%s", want, ops.Body)
		}
	}
	if !strings.Contains(cust.Subject, "49.00 USD") || strings.Contains(cust.Body, "dashboard.stripe.com") {
		t.Errorf("customer e-mail: subject %q, body %q", cust.Subject, cust.Body)
	}
	texts := c.twilio.Messages()
	if len(texts) != 1 || texts[0].To != "+15005550001" || !strings.Contains(texts[0].Body, ev.GetEventId()) || len([]rune(texts[0].Body)) > render.MaxSMS {
		t.Fatalf("texts: %+v", texts)
	}
	if n := len(c.slack.Messages()); n != 1 {
		t.Fatalf("slack messages = %d", n)
	}
	rows, err := pool.Query(ctx, `SELECT channel FROM support.alerts_sent WHERE event_id = $1 ORDER BY channel`, ev.GetEventId())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var ch string
		if err := rows.Scan(&ch); err != nil {
			t.Fatal(err)
		}
		got = append(got, ch)
	}
	if strings.Join(got, ",") != "email,email_customer,slack,sms" {
		t.Fatalf("recorded channels %v", got)
	}
	for _, ch := range []string{ChannelEmail, ChannelEmailCustomer, ChannelSMS, ChannelSlack} {
		if v := testutil.ToFloat64(m.AlertsSent.WithLabelValues(ch)); v != 1 {
			t.Errorf("lr_alerts_sent_total{channel=%q} = %v", ch, v)
		}
		if n := histogramCount(t, m.AlertLatency.WithLabelValues(ch).(prometheus.Histogram)); n != 1 {
			t.Errorf("lr_alert_latency_seconds{channel=%q} count = %d", ch, n)
		}
	}
}

// A smoke test's event, told by the smoke_run the normaliser set, goes to
// every ops channel, the SMS included, under rules that text nobody about
// a real failure; every message says it is a test.
func TestSmokeEventTakesEveryChannelWhateverItsUrgency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	c := newChannels(t)
	h, _ := c.handlerWithRules(t, pool, 10*time.Millisecond, `rules:
  - event: invoice.payment_failed
    actions: [alert]
`)
	plain := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now().Add(-3*time.Second))
	smoke := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now().Add(-3*time.Second))
	smoke.SmokeRun = "run_alerts"
	for _, ev := range []*billingv1.BillingEvent{plain, smoke} {
		if err := h.PostAlert(ctx, &bus.Delivery{Event: ev, Delivered: 1}); err != nil {
			t.Fatal(err)
		}
	}
	texts := c.twilio.Messages()
	if len(texts) != 1 || !strings.HasPrefix(texts[0].Body, render.TestMark) || !strings.Contains(texts[0].Body, smoke.GetEventId()) {
		t.Fatalf("texts %+v: want one, for the smoke event, marked %q", texts, render.TestMark)
	}
	var marked int
	for _, msg := range c.slack.Messages() {
		if strings.HasPrefix(msg.Text, render.TestMark) {
			marked++
		}
	}
	if n := len(c.slack.Messages()); n != 2 || marked != 1 {
		t.Errorf("slack: %d messages, %d marked as a test; want both alerts, the smoke one marked", n, marked)
	}
}

func TestFailingChannelIsRetriedAloneAndNotRecorded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	c := newChannels(t)
	h, _ := c.handler(t, pool, 10*time.Millisecond)
	ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now())

	c.smtp.Reject(451)
	err := h.PostAlert(ctx, &bus.Delivery{Event: ev, Delivered: 1})
	if err == nil || !strings.Contains(err.Error(), "email") {
		t.Fatalf("want the e-mail channels' failure, got %v", err)
	}
	if bus.IsPermanent(err) {
		t.Fatalf("a 451 must be retried, got a permanent error: %v", err)
	}
	for _, ch := range []string{ChannelEmail, ChannelEmailCustomer} {
		if sent, err := store.AlertSent(ctx, pool, ch, ev.GetEventId()); err != nil || sent {
			t.Fatalf("%s recorded after a refusal: %v %v", ch, sent, err)
		}
	}
	c.smtp.Reject(0)
	if err := h.PostAlert(ctx, &bus.Delivery{Event: ev, Delivered: 2}); err != nil {
		t.Fatal(err)
	}
	if n := len(c.smtp.Mails()); n != 2 {
		t.Errorf("e-mails after the retry = %d, want 2", n)
	}
	if n := len(c.slack.Messages()); n != 1 {
		t.Errorf("slack messages = %d: the retry sent Slack again", n)
	}
	if n := len(c.twilio.Messages()); n != 1 {
		t.Errorf("texts = %d: the retry sent the SMS again", n)
	}

	// A refused number is permanent: nothing a retry fixes.
	c.twilio.FailNext(400)
	ev2 := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now())
	err = h.PostAlert(ctx, &bus.Delivery{Event: ev2, Delivered: 1})
	if err == nil || !strings.Contains(err.Error(), "sms") {
		t.Fatalf("want the SMS failure, got %v", err)
	}
}

// TestEmailAndSMSBurstFoldsAndStaysOnceAcrossCrash sends 40 failed payments
// in 4 s through a consumer whose process dies once it has recorded an SMS
// digest; a fresh process takes over the redeliveries. Every event reaches
// the ops mailbox once and the phone once, in a handful of digests rather
// than 40 messages, and each customer gets exactly one e-mail.
func TestEmailAndSMSBurstFoldsAndStaysOnceAcrossCrash(t *testing.T) {
	t.Parallel()
	const total = 40
	ctx := context.Background()
	ns := natstest.Start(t)
	pool := newPool(t)
	c := newChannels(t)
	set, err := rules.Parse([]byte(urgentFailures))
	if err != nil {
		t.Fatal(err)
	}
	cfg := bus.ConsumerConfig{
		Durable:        "support-notify-alerts",
		FilterSubjects: bus.TypeFilterSubjects("support-notify-alerts", set.Types(rules.Alert, rules.EmailCustomer)),
		Concurrency:    4, BatchSize: 100, AckWait: time.Second,
		BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	}

	var evs []*billingv1.BillingEvent
	for range total {
		evs = append(evs, journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now()))
	}
	newHandler := func() *Handler { h, _ := c.handler(t, pool, time.Second); return h }
	b := crashThenTakeOver(t, ns, cfg, newHandler, func(ctx context.Context) bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM support.alerts_sent WHERE channel = 'sms' AND digest_size >= 3`).Scan(&n)
		return err == nil && n > 0
	}, evs, 4*time.Second)
	// Four channels: Slack, ops e-mail, customer e-mail, SMS.
	waitRecorded(t, pool, 4*total)
	waitSettled(t, b.js, cfg.Durable)

	opsSeen, custSeen, smsSeen := map[string]int{}, map[string]int{}, map[string]int{}
	var opsMails int
	for _, mail := range c.smtp.Mails() {
		if len(mail.To) == 1 && mail.To[0] == c.ops[0] {
			opsMails++
			for _, id := range mail.EventIDs {
				opsSeen[id]++
			}
		} else {
			for _, to := range mail.To {
				custSeen[to]++
			}
		}
	}
	texts := c.twilio.Messages()
	for _, m := range texts {
		if !strings.HasPrefix(m.Body, "Digest") && !strings.HasPrefix(m.Body, "Invoice") {
			t.Errorf("unexpected text %q", m.Body)
		}
	}
	// A text digest names no event ids; the records say which events each
	// SMS carried, and that each was carried once.
	rows, err := pool.Query(ctx, `SELECT event_id FROM support.alerts_sent WHERE channel = 'sms'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		smsSeen[id]++
	}
	for _, ev := range evs {
		if opsSeen[ev.GetEventId()] != 1 {
			t.Errorf("event %s reached the ops mailbox %d times", ev.GetEventId(), opsSeen[ev.GetEventId()])
		}
		if custSeen[ev.GetEmail()] != 1 {
			t.Errorf("customer %s got %d e-mails", ev.GetEmail(), custSeen[ev.GetEmail()])
		}
		if smsSeen[ev.GetEventId()] != 1 {
			t.Errorf("event %s recorded on SMS %d times", ev.GetEventId(), smsSeen[ev.GetEventId()])
		}
	}
	if sum := smsDigestTotal(texts); sum != total {
		t.Errorf("the texts account for %d events, want %d (each once)", sum, total)
	}
	if b.redelivered.Load() == 0 {
		t.Error("nothing was redelivered after the crash; the test proved nothing")
	}
	if len(texts) > total/4 || opsMails > total/4 {
		t.Errorf("%d texts and %d ops e-mails for %d alerts: the burst was not folded", len(texts), opsMails, total)
	}
	t.Logf("%d alerts: %d texts, %d ops e-mails, %d customer e-mails, %d redeliveries after the crash",
		total, len(texts), opsMails, len(custSeen), b.redelivered.Load())
}

// smsDigestTotal adds up the events the texts carried: one for an alert
// alone, the digest's count otherwise.
func smsDigestTotal(texts []fakes.SMS) int {
	n := 0
	for _, m := range texts {
		var k int
		if _, err := fmt.Sscanf(m.Body, "Digest: %d billing alerts", &k); err == nil {
			n += k
		} else {
			n++
		}
	}
	return n
}

// pgPool is the tests' database handle.
type pgPool = pgxpool.Pool

func newPool(t *testing.T) *pgPool {
	t.Helper()
	ctx := context.Background()
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool
}
