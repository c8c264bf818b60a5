package alerts

import (
	"context"
	"fmt"
	"strings"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/services/support-notify/internal/email"
	"github.com/launchready/launchready/services/support-notify/internal/render"
	"github.com/launchready/launchready/services/support-notify/internal/rules"
)

// Channel names: the channel column of support.alerts_sent and the channel
// label of the alert metrics.
const (
	ChannelSlack         = "slack"
	ChannelEmail         = "email"
	ChannelEmailCustomer = "email_customer"
	ChannelSMS           = "sms"
)

// Outlet is one alert channel. Every outlet shares the sender: a queue per
// channel, one message at a time, at most one per Window, each carrying
// everything that waited for it (alone, or folded into a digest), with the
// event ids locked, checked and recorded in support.alerts_sent under
// Name.
type Outlet struct {
	// Name keys the channel's sent records and metrics.
	Name string
	// Carries reports whether the channel takes ev's alert, given what the
	// rules decided for it.
	Carries func(d rules.Decision, ev *billingv1.BillingEvent) bool
	// Group, when set, keeps events of different groups out of one message
	// (a customer's e-mail carries only that customer's events).
	Group func(ev *billingv1.BillingEvent) string
	// Deliver sends one message for evs: one alert alone, or a digest.
	Deliver func(ctx context.Context, evs []*billingv1.BillingEvent, late render.Lateness) error
	// Window is the shortest gap between two messages (0: the handler's).
	Window time.Duration
}

// SlackOutlet carries every alert to ch as Block Kit.
func SlackOutlet(ch Channel) Outlet {
	return Outlet{
		Name:    ChannelSlack,
		Carries: func(d rules.Decision, _ *billingv1.BillingEvent) bool { return d.Alert },
		Deliver: func(ctx context.Context, evs []*billingv1.BillingEvent, late render.Lateness) error {
			if len(evs) == 1 {
				return ch.Send(ctx, render.Alert(evs[0], late))
			}
			return ch.Send(ctx, render.Digest(evs, late))
		},
	}
}

// Mailer sends one e-mail.
type Mailer interface {
	Send(ctx context.Context, msg email.Message) error
}

// EmailOutlet carries every alert to the ops addresses to.
func EmailOutlet(m Mailer, to []string, window time.Duration) Outlet {
	return Outlet{
		Name:    ChannelEmail,
		Window:  window,
		Carries: func(d rules.Decision, _ *billingv1.BillingEvent) bool { return d.Alert },
		Deliver: func(ctx context.Context, evs []*billingv1.BillingEvent, late render.Lateness) error {
			msg := render.AlertText(evs[0], late)
			if len(evs) > 1 {
				msg = render.DigestText(evs, late)
			}
			return m.Send(ctx, email.Message{To: to, Subject: msg.Subject, Body: msg.Body, ID: messageID(ChannelEmail, evs)})
		},
	}
}

// CustomerEmailOutlet e-mails the customer of a failed payment, where the
// rules say so (email_customer) and the event names an address. A burst
// about one customer folds into one e-mail; different customers never
// share one.
func CustomerEmailOutlet(m Mailer, window time.Duration) Outlet {
	return Outlet{
		Name:   ChannelEmailCustomer,
		Window: window,
		Carries: func(d rules.Decision, ev *billingv1.BillingEvent) bool {
			return d.EmailCustomer && ev.GetEmail() != ""
		},
		Group: func(ev *billingv1.BillingEvent) string { return strings.ToLower(ev.GetEmail()) },
		Deliver: func(ctx context.Context, evs []*billingv1.BillingEvent, _ render.Lateness) error {
			msg := render.CustomerEmail(evs)
			return m.Send(ctx, email.Message{To: []string{evs[0].GetEmail()}, Subject: msg.Subject, Body: msg.Body, ID: messageID(ChannelEmailCustomer, evs)})
		},
	}
}

// Texter sends one SMS.
type Texter interface {
	Send(ctx context.Context, body string) error
}

// SMSOutlet texts the alerts of rules marked urgent.
func SMSOutlet(t Texter, window time.Duration) Outlet {
	return Outlet{
		Name:    ChannelSMS,
		Window:  window,
		Carries: func(d rules.Decision, _ *billingv1.BillingEvent) bool { return d.Alert && d.Urgent },
		Deliver: func(ctx context.Context, evs []*billingv1.BillingEvent, late render.Lateness) error {
			return t.Send(ctx, render.SMS(evs, late))
		},
	}
}

// messageID names an e-mail by its channel, first event and size, so a
// message sent again after a lost answer carries the same Message-ID.
func messageID(channel string, evs []*billingv1.BillingEvent) string {
	return fmt.Sprintf("launchready.%s.%s.%d", channel, evs[0].GetEventId(), len(evs))
}

// outlets is the Slack channel, when set, and the other outlets.
func (h *Handler) outlets() []Outlet {
	var out []Outlet
	if h.Channel != nil {
		out = append(out, SlackOutlet(h.Channel))
	}
	return append(out, h.Outlets...)
}

// Channels names the handler's channels, Slack first.
func (h *Handler) Channels() []string {
	var names []string
	for _, o := range h.outlets() {
		names = append(names, o.Name)
	}
	return names
}
