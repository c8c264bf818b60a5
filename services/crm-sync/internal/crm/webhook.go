package crm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/launchready/launchready/pkg/vendorhttp"
	"github.com/launchready/launchready/services/crm-sync/crmwebhook"
)

// Document is the JSON body of one change, as the webhook adapter posts it
// and the log adapter prints it. Kind is "customer" or "subscription"; the
// matching member is set.
type Document struct {
	Kind      string `json:"kind"`
	EventID   string `json:"event_id"`
	EventType string `json:"event_type"`
	// AsOf is the created time of the newest Stripe event applied to the
	// customer: a receiver that has applied a document with a later as_of
	// for the same object can ignore this one.
	AsOf         time.Time `json:"as_of"`
	Customer     *Contact  `json:"customer,omitempty"`
	Subscription *Deal     `json:"subscription,omitempty"`
}

// Documents returns the documents of a change: the customer when it
// changed, then each changed subscription.
func Documents(ch *Change) []Document {
	var docs []Document
	if ch.ContactChanged {
		c := ch.Contact
		docs = append(docs, Document{Kind: "customer", EventID: ch.EventID, EventType: ch.EventType, AsOf: ch.AsOf.UTC(), Customer: &c})
	}
	for _, d := range ch.Deals {
		if !d.Changed {
			continue
		}
		deal := d.Deal
		docs = append(docs, Document{Kind: "subscription", EventID: ch.EventID, EventType: ch.EventType, AsOf: ch.AsOf.UTC(), Subscription: &deal})
	}
	return docs
}

// ObjectID is the id of the object a document is about.
func (d Document) ObjectID() string {
	if d.Subscription != nil {
		return d.Subscription.SubscriptionID
	}
	if d.Customer != nil {
		return d.Customer.CustomerID
	}
	return ""
}

// WebhookConfig configures the generic webhook adapter.
type WebhookConfig struct {
	URL    string
	Secret string
	// Now signs requests; nil means time.Now.
	Now func() time.Time
}

// Webhook posts one signed JSON document per change (see package
// crmwebhook for the scheme).
type Webhook struct {
	c   *vendorhttp.Client
	cfg WebhookConfig
}

// NewWebhook builds the adapter on the process's shared CRM client.
func NewWebhook(c *vendorhttp.Client, cfg WebhookConfig) *Webhook {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Webhook{c: c, cfg: cfg}
}

// Name is "webhook".
func (w *Webhook) Name() string { return "webhook" }

// TracksRecords is false: a receiver keeps its own records.
func (w *Webhook) TracksRecords() bool { return false }

// Sync posts each document in turn and stops at the first failure; the
// retry re-posts every document of the change with the same keys, which a
// receiver that keeps keys drops.
func (w *Webhook) Sync(ctx context.Context, ch *Change) (Result, error) {
	res := Result{ContactCRMID: ch.ContactCRMID, Deals: map[string]DealResult{}}
	for _, doc := range Documents(ch) {
		body, err := json.Marshal(doc)
		if err != nil {
			return res, fmt.Errorf("webhook encode %s: %w", ch.EventID, err)
		}
		key := crmwebhook.IdempotencyKey(doc.EventID, doc.Kind, doc.ObjectID(), body)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
		if err != nil {
			return res, fmt.Errorf("webhook request: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "launchready-crm-sync/1")
		req.Header.Set(crmwebhook.IdempotencyHeader, key)
		req.Header.Set(crmwebhook.EventIDHeader, doc.EventID)
		req.Header.Set(crmwebhook.SignatureHeader, crmwebhook.Sign(w.cfg.Secret, body, w.cfg.Now()))
		op := "POST " + doc.Kind
		resp, calls, err := w.c.Do(ctx, op, req)
		res.Calls = append(res.Calls, logCalls(calls, doc.ObjectID())...)
		if err != nil {
			return res, err
		}
		if err := w.c.Classify(op, resp); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Log writes what it would send, as JSON through slog: the development
// default, and a dry run before a CRM is connected.
type Log struct{ log *slog.Logger }

// NewLog builds the log adapter.
func NewLog(log *slog.Logger) *Log { return &Log{log: log} }

// Name is "log".
func (l *Log) Name() string { return "log" }

// TracksRecords is false.
func (l *Log) TracksRecords() bool { return false }

// Sync logs each document of the change.
func (l *Log) Sync(ctx context.Context, ch *Change) (Result, error) {
	res := Result{ContactCRMID: ch.ContactCRMID, Deals: map[string]DealResult{}}
	for _, doc := range Documents(ch) {
		if doc.Customer != nil && doc.Customer.Email != "" {
			c := *doc.Customer
			c.Email = maskEmail(c.Email)
			doc.Customer = &c
		}
		l.log.InfoContext(ctx, "crm change",
			slog.String("event_id", doc.EventID),
			slog.String("customer_id", ch.Contact.CustomerID),
			slog.String("subscription_id", subscriptionOf(doc)),
			slog.String("action", "crm."+doc.Kind),
			slog.Uint64("delivery", ch.Delivery),
			slog.String("outcome", "logged"),
			slog.Any("document", doc))
		res.Calls = append(res.Calls, Call{Op: "log " + doc.Kind, Object: doc.ObjectID(), Outcome: vendorhttp.OutcomeOK})
	}
	return res, nil
}

func subscriptionOf(d Document) string {
	if d.Subscription != nil {
		return d.Subscription.SubscriptionID
	}
	return ""
}

// maskEmail keeps the first letter and the domain: enough to recognise a
// test customer in a log, not enough to harvest addresses from one.
func maskEmail(e string) string {
	at := strings.LastIndexByte(e, '@')
	if at <= 0 {
		return "***"
	}
	return e[:1] + "***" + e[at:]
}
