package smoke

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	crmsync "github.com/launchready/launchready/services/crm-sync"
	supportnotify "github.com/launchready/launchready/services/support-notify"
	"github.com/launchready/launchready/test/testkit/hubspotfake"
)

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// received is one POST the fake public URL accepted.
type received struct {
	body, signature []byte
	ev              *billingv1.BillingEvent
}

// fakeDeployment stands behind PUBLIC_WEBHOOK_URL in place of ingress and
// the consumers behind it: it verifies each POST as ingress does and then,
// after the answer, writes the outcome records support-notify and crm-sync
// write when a channel delivered (support.alerts_sent, support.tickets,
// crm.contacts, in those services' own schemas) for the channels in
// deliver. The CRM contact is made in a HubSpot fake, so the run's cleanup
// has something real to archive. A channel left out of deliver is a broken
// one: its record never appears.
type fakeDeployment struct {
	t       *testing.T
	secret  string
	pool    *pgxpool.Pool
	hubspot *hubspotfake.Server
	token   string
	deliver []string
	// slow channels confirm only after this delay, so the run must wait.
	slow  []string
	delay time.Duration

	mu       sync.Mutex
	received []received
	pending  sync.WaitGroup
	srv      *httptest.Server
}

func (d *fakeDeployment) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sig := r.Header.Get("Stripe-Signature")
	if err := stripeevent.Verify(body, sig, []string{d.secret}, 5*time.Minute, time.Now()); err != nil {
		http.Error(w, "signature: "+err.Error(), http.StatusBadRequest)
		return
	}
	ev, err := stripeevent.Normalize(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	d.mu.Lock()
	d.received = append(d.received, received{body: body, signature: []byte(sig), ev: ev})
	d.mu.Unlock()
	w.WriteHeader(http.StatusOK)

	// The consumers act after ingress answered, as they do in a deployment.
	for _, ch := range d.deliver {
		d.pending.Add(1)
		go func() {
			defer d.pending.Done()
			if slices.Contains(d.slow, ch) {
				<-time.After(d.delay)
			}
			if err := d.record(ch, ev); err != nil {
				d.t.Errorf("fake %s for %s: %v", ch, ev.GetType(), err)
			}
		}()
	}
}

func (d *fakeDeployment) record(channel string, ev *billingv1.BillingEvent) error {
	ctx := context.Background()
	failed := ev.GetType() == "invoice.payment_failed"
	switch {
	case failed && (channel == ChannelSlack || channel == ChannelEmail || channel == ChannelSMS):
		_, err := d.pool.Exec(ctx, `INSERT INTO support.alerts_sent (channel, event_id, event_type, customer_id, event_created, sent_at, latency_seconds, late)
			VALUES ($1, $2, $3, $4, $5, now(), 0.1, false)`, channel, ev.GetEventId(), ev.GetType(), ev.GetCustomerId(), ev.GetCreated().AsTime())
		return err
	case failed && channel == ChannelTicket:
		_, err := d.pool.Exec(ctx, `INSERT INTO support.tickets (object_key, ticket_id, status, priority, customer_id, opened_by_event, last_event_id)
			VALUES ($1, 1, 'open', 'normal', $2, $3, $3)`, "invoice:"+ev.GetInvoiceId(), ev.GetCustomerId(), ev.GetEventId())
		return err
	case !failed && channel == ChannelTicket:
		_, err := d.pool.Exec(ctx, `UPDATE support.tickets SET status = 'solved', last_event_id = $2 WHERE object_key = $1`,
			"invoice:"+ev.GetInvoiceId(), ev.GetEventId())
		return err
	case failed && channel == ChannelCRM:
		id, err := d.createContact(ev)
		if err != nil {
			return err
		}
		_, err = d.pool.Exec(ctx, `INSERT INTO crm.contacts (provider, customer_id, crm_id, last_event_id) VALUES ('hubspot', $1, $2, $3)`,
			ev.GetCustomerId(), id, ev.GetEventId())
		return err
	}
	return nil
}

func (d *fakeDeployment) createContact(ev *billingv1.BillingEvent) (string, error) {
	body, _ := json.Marshal(map[string]any{"properties": map[string]string{"email": ev.GetEmail(), "stripe_customer_id": ev.GetCustomerId()}})
	req, err := http.NewRequest(http.MethodPost, d.hubspot.URL()+"/crm/v3/objects/contacts", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.ID == "" {
		return "", fmt.Errorf("hubspot create contact: %d %v", resp.StatusCode, err)
	}
	return out.ID, nil
}

func (d *fakeDeployment) posts() []received {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.received)
}

// startDeployment migrates support-notify's and crm-sync's schemas into a
// database of the test's own and serves the fake public URL.
func startDeployment(t *testing.T, deliver []string) (*fakeDeployment, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbURL := pgtest.NewDatabase(t)
	pool, err := pg.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, schema := range []func() (string, fs.FS){supportnotify.Schema, crmsync.Schema} {
		name, migrations := schema()
		if err := pg.MigrateShared(ctx, pool, name, migrations); err != nil {
			t.Fatal(err)
		}
	}
	token := "pat-na1-" + randomHex(t, 16)
	d := &fakeDeployment{t: t, secret: "whsec_" + randomHex(t, 24), pool: pool, hubspot: hubspotfake.Start(token), token: token,
		deliver: deliver, slow: []string{ChannelTicket, ChannelCRM}, delay: 300 * time.Millisecond}
	d.srv = httptest.NewServer(d)
	t.Cleanup(func() {
		d.srv.Close()
		d.pending.Wait()
		d.hubspot.Close()
		pool.Close()
	})
	return d, dbURL
}

type smokeRow struct {
	runID, channel string
	ok             bool
	latencyMS      int64
	detail         string
}

func smokeRows(t *testing.T, pool *pgxpool.Pool) map[string]smokeRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT run_id, channel, ok, latency_ms, detail FROM readiness.smoke_results`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]smokeRow{}
	for rows.Next() {
		var r smokeRow
		if err := rows.Scan(&r.runID, &r.channel, &r.ok, &r.latencyMS, &r.detail); err != nil {
			t.Fatal(err)
		}
		out[r.channel] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkSmokeEvents holds every POST to the public URL to what a smoke
// event must be: signed with the configured secret (and with no other),
// the run's id in the smoke metadata that the normaliser turns into
// smoke_run, a dedicated smoke customer, and the test mark.
func checkSmokeEvents(t *testing.T, d *fakeDeployment, runID string, wantTypes ...string) {
	t.Helper()
	posts := d.posts()
	var types []string
	for _, p := range posts {
		ev := p.ev
		types = append(types, ev.GetType())
		if err := stripeevent.Verify(p.body, string(p.signature), []string{"whsec_" + randomHex(t, 24)}, 5*time.Minute, time.Now()); err == nil {
			t.Errorf("%s verifies with a secret it was not signed with", ev.GetEventId())
		}
		if ev.GetSmokeRun() != runID || stripeevent.SmokeRun(p.body) != runID {
			t.Errorf("%s: smoke_run %q, want the run %q", ev.GetEventId(), ev.GetSmokeRun(), runID)
		}
		if ev.GetCustomerId() != "cus_lrsmoke"+runID || ev.GetInvoiceId() != "in_lrsmoke"+runID {
			t.Errorf("%s: customer %q invoice %q, want the run's own smoke customer and invoice", ev.GetEventId(), ev.GetCustomerId(), ev.GetInvoiceId())
		}
		var env struct {
			Data struct {
				Object struct {
					Description string `json:"description"`
				} `json:"object"`
			} `json:"data"`
		}
		if err := json.Unmarshal(p.body, &env); err != nil || !strings.HasPrefix(env.Data.Object.Description, "[TEST] ") {
			t.Errorf("%s: description %q is not marked as a test (%v)", ev.GetEventId(), env.Data.Object.Description, err)
		}
	}
	if !slices.Equal(types, wantTypes) {
		t.Errorf("posted %v, want %v", types, wantTypes)
	}
}

// --via webhook posts a signed, marked failed payment, waits until every
// configured channel confirms (two of them only after a delay), solves the
// ticket with a signed invoice.paid, archives the CRM contact, prints and
// stores each channel's latency.
func TestSmokeViaWebhookWaitsForEveryChannel(t *testing.T) {
	t.Parallel()
	all := []string{ChannelSlack, ChannelEmail, ChannelSMS, ChannelTicket, ChannelCRM}
	d, dbURL := startDeployment(t, all)
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	cfg := Config{Via: ViaWebhook, Timeout: 30 * time.Second, Poll: 20 * time.Millisecond, DatabaseURL: dbURL,
		PublicWebhookURL: d.srv.URL, WebhookSecret: config.Secret(d.secret), Channels: all, CustomerEmail: "ops@example.com",
		CRMProvider: "hubspot", HubSpotBase: d.hubspot.URL(), HubSpotKey: config.Secret(d.token), HTTP: client}
	var out bytes.Buffer
	results, err := Run(context.Background(), cfg, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}

	if len(results) != len(all) {
		t.Fatalf("results %+v, want one per channel %v", results, all)
	}
	for i, r := range results {
		if r.Channel != all[i] || !r.OK || r.Latency <= 0 {
			t.Errorf("result %+v: want %s confirmed with a latency", r, all[i])
		}
		if slices.Contains(d.slow, r.Channel) && r.Latency < d.delay {
			t.Errorf("%s confirmed after %s, before its record could exist (%s): the run did not wait for it", r.Channel, r.Latency, d.delay)
		}
	}
	if r := results[3]; !strings.Contains(r.Detail, "solved") {
		t.Errorf("ticket: %q, want it solved", r.Detail)
	}
	if r := results[4]; !strings.Contains(r.Detail, "1 record(s) deleted") {
		t.Errorf("crm: %q, want its record deleted", r.Detail)
	}
	var created, archived int
	for _, r := range d.hubspot.Requests() {
		switch {
		case r.Method == http.MethodPost && r.Path == "/crm/v3/objects/contacts" && r.Status/100 == 2:
			created++
		case r.Method == http.MethodDelete && strings.HasPrefix(r.Path, "/crm/v3/objects/contacts/") && r.Status == http.StatusNoContent:
			archived++
		}
	}
	if created != 1 || archived != 1 || len(d.hubspot.Contacts()) != 0 {
		t.Errorf("hubspot: %d contact(s) made, %d archived, %d left; want the smoke contact made and archived",
			created, archived, len(d.hubspot.Contacts()))
	}

	stored := smokeRows(t, d.pool)
	runID := ""
	for _, r := range results {
		row, ok := stored[r.Channel]
		if !ok || !row.ok || row.latencyMS != r.Latency.Milliseconds() || row.detail != r.Detail {
			t.Errorf("readiness.smoke_results %s = %+v, want ok with latency %d ms and %q", r.Channel, row, r.Latency.Milliseconds(), r.Detail)
		}
		runID = row.runID
		if !strings.Contains(out.String(), r.Latency.Round(time.Millisecond).String()) {
			t.Errorf("output does not print %s's latency %s:\n%s", r.Channel, r.Latency.Round(time.Millisecond), out.String())
		}
	}
	if !strings.HasPrefix(out.String(), "smoke run "+runID+" via webhook") {
		t.Errorf("output does not name the run %s:\n%s", runID, out.String())
	}
	checkSmokeEvents(t, d, runID, "invoice.payment_failed", "invoice.paid")
}

// A channel whose record never appears is reported by name, failed, stored
// as failed, and the command exits non-zero; the channels that delivered
// still pass.
func TestSmokeViaWebhookNamesABrokenChannel(t *testing.T) {
	t.Parallel()
	d, dbURL := startDeployment(t, []string{ChannelSlack, ChannelTicket})
	env := map[string]string{
		"DATABASE_URL": dbURL, "PUBLIC_WEBHOOK_URL": d.srv.URL, "STRIPE_WEBHOOK_SECRET": d.secret,
		"SMOKE_CHANNELS": "slack,sms,ticket",
	}
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"--via", "webhook", "--timeout", "2s"}, config.Map(env), &stdout, &stderr)
	if code == 0 {
		t.Fatalf("exit 0 with sms broken\n%s%s", stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "not confirmed: sms\n") {
		t.Errorf("stderr does not name sms alone: %q", stderr.String())
	}
	if !lineWith(stdout.String(), "sms", "FAILED") || !lineWith(stdout.String(), "slack", "ok") || !lineWith(stdout.String(), "ticket", "ok") {
		t.Errorf("output:\n%s", stdout.String())
	}
	stored := smokeRows(t, d.pool)
	if r := stored["sms"]; r.ok || !strings.Contains(r.detail, "no confirmation within 2s") || r.latencyMS < 2000 {
		t.Errorf("stored sms %+v, want failed after the 2s timeout", r)
	}
	if !stored["slack"].ok || !stored["ticket"].ok || len(stored) != 3 {
		t.Errorf("stored %+v, want slack and ticket ok beside the failed sms", stored)
	}
	checkSmokeEvents(t, d, stored["sms"].runID, "invoice.payment_failed", "invoice.paid")
}

// lineWith reports whether a line of out starts with channel (after the
// indent) and contains word.
func lineWith(out, channel, word string) bool {
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 1 && f[0] == channel && f[1] == word {
			return true
		}
	}
	return false
}
