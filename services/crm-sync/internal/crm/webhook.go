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
	// IdempotencyKey names this change of this object (see
	// crmwebhook.IdempotencyKey, derived from the document without it).
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// Batch is the body of one webhook POST.
type Batch struct {
	Documents []Document `json:"documents"`
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

// Webhook posts signed JSON documents, up to crmwebhook.MaxDocuments a
// POST (see package crmwebhook for the scheme).
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

// webhookDoc is one document to post and the change it belongs to.
type webhookDoc struct {
	change int
	doc    Document
}

// Sync posts the documents of every change, in POSTs of at most
// crmwebhook.MaxDocuments. A POST the receiver refuses with a 4xx is split
// until the document it refuses stands alone, which fails that change; a
// retry re-posts the documents with the same keys, which a receiver that
// keeps keys drops.
func (w *Webhook) Sync(ctx context.Context, chs []*Change) []Outcome {
	outs := newOutcomes(chs)
	var docs []webhookDoc
	for i, ch := range chs {
		for _, doc := range Documents(ch) {
			body, err := json.Marshal(doc)
			if err != nil {
				outs[i].Err = fmt.Errorf("webhook encode %s: %w", ch.EventID, err)
				break
			}
			doc.IdempotencyKey = crmwebhook.IdempotencyKey(doc.EventID, doc.Kind, doc.ObjectID(), body)
			docs = append(docs, webhookDoc{i, doc})
		}
	}
	err := inBatches(docs, nil, func(part []webhookDoc) error {
		var pending []webhookDoc
		for _, d := range part {
			if outs[d.change].Err == nil {
				pending = append(pending, d)
			}
		}
		return w.post(ctx, pending, outs)
	}, func(d webhookDoc, err error) { outs[d.change].Err = err })
	if err != nil {
		return failRest(outs, err)
	}
	return outs
}

// post sends one POST of documents and logs it on each of their changes.
func (w *Webhook) post(ctx context.Context, part []webhookDoc, outs []Outcome) error {
	if len(part) == 0 {
		return nil
	}
	batch := Batch{Documents: make([]Document, len(part))}
	keys := make([]string, len(part))
	for j, d := range part {
		batch.Documents[j] = d.doc
		keys[j] = d.doc.IdempotencyKey
	}
	body, err := json.Marshal(batch)
	if err != nil {
		return fmt.Errorf("webhook encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "launchready-crm-sync/1")
	req.Header.Set(crmwebhook.IdempotencyHeader, crmwebhook.BatchKey(keys))
	req.Header.Set(crmwebhook.SignatureHeader, crmwebhook.Sign(w.cfg.Secret, body, w.cfg.Now()))
	const op = "POST documents"
	resp, calls, err := w.c.Do(ctx, op, req)
	for _, d := range part {
		outs[d.change].Result.Calls = append(outs[d.change].Result.Calls, logCalls(calls, d.doc.ObjectID())...)
	}
	if err != nil {
		return err
	}
	return w.c.Classify(op, resp)
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

// Sync logs each document of every change.
func (l *Log) Sync(ctx context.Context, chs []*Change) []Outcome {
	outs := newOutcomes(chs)
	for i, ch := range chs {
		l.logChange(ctx, ch, &outs[i].Result)
	}
	return outs
}

func (l *Log) logChange(ctx context.Context, ch *Change, res *Result) {
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
