package supportnotify_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/launchready/launchready/pkg/bus"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit/stripefake"

	supportnotify "github.com/launchready/launchready/services/support-notify"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/fakes"
	"github.com/launchready/launchready/test/testkit/journey"
)

// A dispute names a charge, not a customer. Its urgent ticket and its
// alert still name the customer's e-mail and id, whether the charge's own
// event arrives before the dispute or after it (within SUPPORT_LINK_WAIT).
func TestDisputeTicketAndAlertNameTheCustomerWhicheverComesFirst(t *testing.T) {
	for _, chargeFirst := range []bool{true, false} {
		name := "dispute first"
		if chargeFirst {
			name = "charge first"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, map[string]string{"SUPPORT_LINK_WAIT": "20s"}, nil)
			c := journey.NewCustomer()
			ch := journey.ID("ch")
			charge := c.ChargeSucceeded(ch, time.Now())
			dispute := journey.DisputeOnCharge(ch, 15000, "fraudulent", time.Now())
			if chargeFirst {
				b.publish(t, charge, dispute)
			} else {
				b.publish(t, dispute)
				// Both consumers hold the dispute before the charge exists.
				b.inFlight(t, supportnotify.TicketsDurable, supportnotify.AlertsDurable)
				b.publish(t, charge)
			}
			tk := b.zendesk.WaitFor(t, 40*time.Second, "the dispute ticket", count(1))[0]
			if tk.Priority != "urgent" || tk.Requester.Email != c.Email {
				t.Errorf("ticket priority %q requester %q, want urgent and %s", tk.Priority, tk.Requester.Email, c.Email)
			}
			for _, want := range []string{c.Email, "Customer id: " + c.ID, "Charge: " + ch} {
				if !strings.Contains(tk.Comments[0].Body, want) {
					t.Errorf("ticket body lacks %q:\n%s", want, tk.Comments[0].Body)
				}
			}
			msg := alertFor(t, b, dispute.GetEventId())
			for _, want := range []string{c.Email, c.ID} {
				if !strings.Contains(string(msg.Raw), want) {
					t.Errorf("alert lacks %q: %s", want, msg.Raw)
				}
			}
		})
	}
}

// A dispute on a guest payment (a charge with no customer) still opens its
// urgent ticket, naming the charge and its billing e-mail.
func TestGuestDisputeNamesTheChargeAndBillingEmail(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]string{"SUPPORT_LINK_WAIT": "20s"}, nil)
	guest := journey.Customer{Email: journey.ID("guest") + "@example.com"}
	ch := journey.ID("ch")
	b.publish(t, guest.ChargeSucceeded(ch, time.Now()), journey.DisputeOnCharge(ch, 15000, "fraudulent", time.Now()))
	tk := b.zendesk.WaitFor(t, 40*time.Second, "the guest dispute ticket", count(1))[0]
	if tk.Priority != "urgent" || tk.Requester.Email != guest.Email {
		t.Errorf("ticket priority %q requester %q, want urgent and %s", tk.Priority, tk.Requester.Email, guest.Email)
	}
	for _, want := range []string{"Charge: " + ch, "Guest payment: no Stripe customer; billing e-mail " + guest.Email} {
		if !strings.Contains(tk.Comments[0].Body, want) {
			t.Errorf("ticket body lacks %q:\n%s", want, tk.Comments[0].Body)
		}
	}
}

// With STRIPE_API_KEY set, a dispute whose charge is still unknown after
// SUPPORT_LINK_WAIT reads the charge from Stripe's API.
func TestUnknownChargeIsReadFromStripe(t *testing.T) {
	t.Parallel()
	key := "sk_test_" + randomHex(t)
	api := stripefake.New(key)
	t.Cleanup(api.Close)
	c := journey.NewCustomer()
	ch := journey.ID("ch")
	if err := api.PutObject([]byte(`{"id":"` + ch + `","object":"charge","created":1764000000,"customer":"` + c.ID +
		`","billing_details":{"email":"` + c.Email + `","name":"Card Holder"}}`)); err != nil {
		t.Fatal(err)
	}
	b := setup(t, map[string]string{"SUPPORT_LINK_WAIT": "200ms", "STRIPE_API_KEY": key, "STRIPE_API_BASE": api.URL()}, nil)
	b.publish(t, journey.DisputeOnCharge(ch, 15000, "fraudulent", time.Now()))
	tk := b.zendesk.WaitFor(t, 40*time.Second, "the dispute ticket", count(1))[0]
	if tk.Requester.Email != c.Email || !strings.Contains(tk.Comments[0].Body, "Customer id: "+c.ID) {
		t.Fatalf("ticket requester %q body:\n%s", tk.Requester.Email, tk.Comments[0].Body)
	}
}

// Without a key, a dispute whose charge stays unknown opens its ticket
// anyway; the charge's event, when it comes, adds the customer to it.
func TestLateLinkAddsTheCustomerToTheOpenTicket(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]string{"SUPPORT_LINK_WAIT": "100ms"}, nil)
	c := journey.NewCustomer()
	ch := journey.ID("ch")
	b.publish(t, journey.DisputeOnCharge(ch, 15000, "fraudulent", time.Now()))
	tk := b.zendesk.WaitFor(t, 40*time.Second, "the dispute ticket", count(1))[0]
	if tk.Priority != "urgent" || !strings.Contains(tk.Comments[0].Body, "Customer: not known yet") {
		t.Fatalf("ticket without its customer: priority %q body:\n%s", tk.Priority, tk.Comments[0].Body)
	}
	b.publish(t, c.ChargeSucceeded(ch, time.Now()))
	ts := b.zendesk.WaitFor(t, 40*time.Second, "the customer added", func(ts []fakes.ZendeskTicket) bool {
		return len(ts) == 1 && len(ts[0].Comments) == 2
	})
	note := ts[0].Comments[1]
	if note.Public || !strings.Contains(note.Body, c.Email) || !strings.Contains(note.Body, "Customer id: "+c.ID) {
		t.Fatalf("comment naming the customer: %+v", note)
	}
	var waiting string
	if err := b.pool.QueryRow(context.Background(), `SELECT awaiting_charge FROM support.tickets`).Scan(&waiting); err != nil || waiting != "" {
		t.Fatalf("ticket still waits for %q (%v)", waiting, err)
	}
}

// A dispute's opening waits for its charge's customer; its close, which
// names no customer either, can be taken by another worker and handled in
// the meantime. The outcome must still be the one of stream order: one
// ticket, opened by the dispute and solved by its close.
func TestDisputeClosedWhileItsOpeningWaitsStillOpensAndSolvesItsTicket(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]string{"SUPPORT_LINK_WAIT": "20s"}, nil)
	c := journey.NewCustomer()
	ch := journey.ID("ch")
	opened := journey.DisputeOnCharge(ch, 15000, "fraudulent", time.Now().Add(-time.Minute))
	closed := proto.Clone(opened).(*billingv1.BillingEvent)
	closed.EventId, closed.Type, closed.Status = journey.ID("evt"), "charge.dispute.closed", "won"
	closed.Created = timestamppb.New(opened.GetCreated().AsTime().Add(time.Second))

	b.publish(t, opened)
	b.inFlight(t, supportnotify.TicketsDurable) // the opening waits for the charge's customer
	b.publish(t, closed)
	outcome := func(ev *billingv1.BillingEvent) string {
		var o string
		_ = b.pool.QueryRow(context.Background(), `SELECT outcome FROM support.processed_events
			WHERE consumer = $1 AND event_id = $2`, supportnotify.TicketsDurable, ev.GetEventId()).Scan(&o)
		return o
	}
	testkit.Eventually(t, 20*time.Second, "the close handled while the opening waits", func() bool { return outcome(closed) != "" })
	if got := outcome(closed); got != "nothing_open" {
		t.Fatalf("the close's outcome %q, want nothing_open (handled before the opening)", got)
	}
	if got := outcome(opened); got != "" {
		t.Fatalf("the opening finished before its charge was known: %q", got)
	}

	b.publish(t, c.ChargeSucceeded(ch, time.Now().Add(-2*time.Minute)))
	b.zendesk.WaitFor(t, 40*time.Second, "the dispute ticket solved", func(ts []fakes.ZendeskTicket) bool {
		return len(ts) > 0 && ts[0].Status == "solved"
	})
	b.drained(t)
	ts := b.zendesk.Tickets()
	if len(ts) != 1 {
		t.Fatalf("%d tickets, want 1", len(ts))
	}
	tk := ts[0]
	if tk.ExternalID != opened.GetEventId() || tk.Priority != "urgent" || tk.Requester.Email != c.Email || len(tk.Comments) != 2 {
		t.Fatalf("ticket opened by %s, priority %q, requester %q, %d comments; want opened by %s, urgent, %s, 2 comments",
			tk.ExternalID, tk.Priority, tk.Requester.Email, len(tk.Comments), opened.GetEventId(), c.Email)
	}
	if body := tk.Comments[1].Body; !strings.HasPrefix(body, "Resolved: the dispute is closed (won).") || !strings.Contains(body, closed.GetEventId()) {
		t.Fatalf("the second comment is not the close's resolution:\n%s", body)
	}
	if got := outcome(opened); got != "created" {
		t.Fatalf("the opening's outcome %q, want created", got)
	}
}

// alertFor waits for the Slack message naming eventID.
func alertFor(t *testing.T, b *bundle, eventID string) fakes.SlackMessage {
	t.Helper()
	ms := b.slack.WaitFor(t, 40*time.Second, "the alert of "+eventID, func(ms []fakes.SlackMessage) bool {
		return eventsAlerted(ms)[eventID] > 0
	})
	for _, m := range ms {
		for _, id := range m.EventIDs {
			if id == eventID {
				return m
			}
		}
	}
	t.Fatalf("no message names %s", eventID)
	return fakes.SlackMessage{}
}

// inFlight waits until each durable has taken every published message and
// not settled at least one.
func (b *bundle) inFlight(t *testing.T, durables ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, durable := range durables {
		for {
			c, err := b.js.Consumer(context.Background(), bus.StreamEvents, durable)
			if err == nil {
				info, err := c.Info(context.Background())
				if err == nil && info.NumPending == 0 && info.NumAckPending > 0 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never held the message", durable)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
