package crm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/vendorhttp"
)

// DefaultHubSpotBaseURL is HubSpot's API host.
const DefaultHubSpotBaseURL = "https://api.hubapi.com"

// DefaultDealStages maps a subscription's canonical status to a stage of
// HubSpot's default sales pipeline ("default"):
//
//	incomplete                      → contractsent          first payment pending
//	trialing                        → decisionmakerboughtin evaluating, card on file or not
//	active, past_due, unpaid, paused → closedwon            the customer bought; billing_status says how it is going
//	canceled, refunded              → closedlost            the subscription ended
//
// HUBSPOT_DEAL_STAGES overrides any of these for a custom pipeline.
var DefaultDealStages = map[string]string{
	"incomplete": "contractsent",
	"trialing":   "decisionmakerboughtin",
	"active":     "closedwon",
	"past_due":   "closedwon",
	"unpaid":     "closedwon",
	"paused":     "closedwon",
	"canceled":   "closedlost",
	"refunded":   "closedlost",
}

// HubSpotConfig configures the HubSpot adapter.
type HubSpotConfig struct {
	BaseURL string
	Token   string
	// Pipeline is the deal pipeline id (HUBSPOT_DEAL_PIPELINE, "default").
	Pipeline string
	// Stages maps canonical status names to stage ids; missing entries
	// fall back to DefaultDealStages.
	Stages map[string]string
}

// HubSpot writes contacts and deals through the CRM v3 objects API and
// associates them through the v4 associations API. Calls, in order:
//
//   - contact with a remembered id: PATCH /crm/v3/objects/contacts/{id}
//     (a 404 means the contact was deleted or merged in HubSpot: forget the
//     id and upsert);
//   - contact without one: POST /crm/v3/objects/contacts/batch/upsert with
//     idProperty=email when the customer has an email, else
//     idProperty=stripe_customer_id (a unique custom property). If the
//     email upsert answers 409 because another contact already holds this
//     stripe_customer_id (it was created before the email was known), the
//     upsert is repeated by stripe_customer_id, which updates that contact
//     and gives it the email;
//   - each changed deal: POST /crm/v3/objects/deals/batch/upsert with
//     idProperty=stripe_subscription_id (a unique custom property);
//   - each deal not yet associated with the contact:
//     PUT /crm/v4/objects/deals/{dealId}/associations/default/contacts/{contactId}
//     (the default, unlabeled deal-to-contact association; PUT is
//     idempotent).
//
// Every write is keyed by a value HubSpot keeps unique, so repeating any of
// them after a crash updates the record it created the first time.
type HubSpot struct {
	c        *vendorhttp.Client
	base     string
	token    string
	pipeline string
	stages   map[string]string
}

// NewHubSpot builds the adapter on the process's shared CRM client.
func NewHubSpot(c *vendorhttp.Client, cfg HubSpotConfig) *HubSpot {
	base := strings.TrimRight(cfg.BaseURL, "/")
	if base == "" {
		base = DefaultHubSpotBaseURL
	}
	stages := make(map[string]string, len(DefaultDealStages))
	for k, v := range DefaultDealStages {
		stages[k] = v
	}
	for k, v := range cfg.Stages {
		stages[k] = v
	}
	pipeline := cfg.Pipeline
	if pipeline == "" {
		pipeline = "default"
	}
	return &HubSpot{c: c, base: base, token: cfg.Token, pipeline: pipeline, stages: stages}
}

// Name is "hubspot".
func (h *HubSpot) Name() string { return "hubspot" }

// TracksRecords is true: HubSpot returns contact and deal ids.
func (h *HubSpot) TracksRecords() bool { return true }

type hsObject struct {
	ID         string            `json:"id"`
	Properties map[string]string `json:"properties,omitempty"`
}

type hsUpsertInput struct {
	IDProperty string            `json:"idProperty"`
	ID         string            `json:"id"`
	Properties map[string]string `json:"properties"`
}

type hsBatchResponse struct {
	Status  string     `json:"status"`
	Results []hsObject `json:"results"`
	Errors  []struct {
		Message  string `json:"message"`
		Category string `json:"category"`
	} `json:"errors"`
}

// Sync pushes the contact (when changed or not yet known), each changed
// deal, and any missing association.
func (h *HubSpot) Sync(ctx context.Context, ch *Change) (Result, error) {
	res := Result{ContactCRMID: ch.ContactCRMID, Deals: map[string]DealResult{}}
	for _, d := range ch.Deals {
		res.Deals[d.Deal.SubscriptionID] = DealResult{CRMID: d.CRMID, AssociatedTo: d.AssociatedTo}
	}
	if ch.ContactChanged || res.ContactCRMID == "" {
		id, err := h.syncContact(ctx, ch, &res)
		if err != nil {
			return res, err
		}
		res.ContactCRMID = id
	}
	for _, d := range ch.Deals {
		dr := res.Deals[d.Deal.SubscriptionID]
		if d.Changed || dr.CRMID == "" {
			id, err := h.upsertDeal(ctx, ch, d.Deal, &res)
			if err != nil {
				return res, err
			}
			if id != dr.CRMID {
				dr.AssociatedTo = "" // a new deal record has no association yet
			}
			dr.CRMID = id
			res.Deals[d.Deal.SubscriptionID] = dr
		}
		if dr.AssociatedTo != res.ContactCRMID {
			if err := h.associate(ctx, dr.CRMID, res.ContactCRMID, d.Deal.SubscriptionID, &res); err != nil {
				return res, err
			}
			dr.AssociatedTo = res.ContactCRMID
			res.Deals[d.Deal.SubscriptionID] = dr
		}
	}
	return res, nil
}

// ContactProperties are the contact properties crm-sync owns. Values are
// strings, as HubSpot's API takes them; an empty string clears a property.
func ContactProperties(c Contact) map[string]string {
	p := map[string]string{
		"stripe_customer_id":      c.CustomerID,
		"billing_status":          c.Status,
		"billing_entitled":        strconv.FormatBool(c.Entitled),
		"plan":                    c.Plan,
		"mrr":                     Money(c.MRR, c.Currency),
		"current_period_end":      timeProp(c.CurrentPeriodEnd),
		"last_payment_failed_at":  timeProp(c.LastPaymentFailedAt),
		"billing_dispute_open":    strconv.FormatBool(c.DisputeOpen),
		"stripe_customer_deleted": strconv.FormatBool(c.Deleted),
	}
	if c.Email != "" {
		p["email"] = c.Email
	}
	if c.Name != "" {
		first, last := splitName(c.Name)
		p["firstname"] = first
		if last != "" {
			p["lastname"] = last
		}
	}
	return p
}

// DealProperties are the deal properties crm-sync owns.
func (h *HubSpot) DealProperties(d Deal) map[string]string {
	stage := h.stages[d.Status]
	if stage == "" {
		stage = h.stages["incomplete"]
	}
	who := d.CustomerEmail
	if who == "" {
		who = d.CustomerID
	}
	plan := d.Plan
	if plan == "" {
		plan = "subscription"
	}
	return map[string]string{
		"dealname":               who + " – " + plan,
		"pipeline":               h.pipeline,
		"dealstage":              stage,
		"amount":                 Money(d.MonthlyAmount, d.Currency),
		"stripe_subscription_id": d.SubscriptionID,
		"billing_status":         d.Status,
	}
}

func (h *HubSpot) syncContact(ctx context.Context, ch *Change, res *Result) (string, error) {
	props := ContactProperties(ch.Contact)
	if id := res.ContactCRMID; id != "" {
		op := "PATCH /crm/v3/objects/contacts/{id}"
		resp, err := h.send(ctx, http.MethodPatch, "/crm/v3/objects/contacts/"+url.PathEscape(id), op, ch.Contact.CustomerID, hsObject{Properties: props}, res)
		if err != nil {
			return "", err
		}
		if resp.Status != http.StatusNotFound {
			if err := h.c.Classify(op, resp); err != nil {
				return "", err
			}
			return id, nil
		}
		// Deleted or merged away in HubSpot: find or create it again.
	}
	idProp, idVal := "email", ch.Contact.Email
	if idVal == "" {
		idProp, idVal = "stripe_customer_id", ch.Contact.CustomerID
	}
	id, resp, err := h.upsert(ctx, "contacts", idProp, idVal, props, ch.Contact.CustomerID, res)
	if err != nil {
		return "", err
	}
	if resp.Status == http.StatusConflict && idProp == "email" {
		id, resp, err = h.upsert(ctx, "contacts", "stripe_customer_id", ch.Contact.CustomerID, props, ch.Contact.CustomerID, res)
		if err != nil {
			return "", err
		}
	}
	if err := h.c.Classify("POST /crm/v3/objects/contacts/batch/upsert", resp); err != nil {
		return "", err
	}
	return id, nil
}

func (h *HubSpot) upsertDeal(ctx context.Context, ch *Change, d Deal, res *Result) (string, error) {
	id, resp, err := h.upsert(ctx, "deals", "stripe_subscription_id", d.SubscriptionID, h.DealProperties(d), d.SubscriptionID, res)
	if err != nil {
		return "", err
	}
	if err := h.c.Classify("POST /crm/v3/objects/deals/batch/upsert", resp); err != nil {
		return "", err
	}
	return id, nil
}

// upsert creates or updates one record by a unique property. It returns the
// record id on 2xx; other answers are returned for the caller to classify.
func (h *HubSpot) upsert(ctx context.Context, object, idProp, idVal string, props map[string]string, subject string, res *Result) (string, *vendorhttp.Response, error) {
	op := "POST /crm/v3/objects/" + object + "/batch/upsert"
	body := struct {
		Inputs []hsUpsertInput `json:"inputs"`
	}{Inputs: []hsUpsertInput{{IDProperty: idProp, ID: idVal, Properties: props}}}
	resp, err := h.send(ctx, http.MethodPost, "/crm/v3/objects/"+object+"/batch/upsert", op, subject, body, res)
	if err != nil {
		return "", nil, err
	}
	if resp.Status >= 300 {
		return "", resp, nil
	}
	var br hsBatchResponse
	if err := json.Unmarshal(resp.Body, &br); err != nil {
		return "", nil, fmt.Errorf("hubspot %s: decode answer: %w", op, err)
	}
	if len(br.Errors) > 0 || len(br.Results) != 1 || br.Results[0].ID == "" {
		// 207 multi-status with the one input failed: HubSpot refused it.
		reason := "no result"
		if len(br.Errors) > 0 {
			reason = br.Errors[0].Category + ": " + br.Errors[0].Message
		}
		return "", nil, bus.Permanent(fmt.Errorf("hubspot %s: %d %s", op, resp.Status, h.c.Reason([]byte(reason), 700)))
	}
	return br.Results[0].ID, resp, nil
}

func (h *HubSpot) associate(ctx context.Context, dealID, contactID, subject string, res *Result) error {
	if dealID == "" || contactID == "" {
		return errors.New("hubspot associate: missing deal or contact id")
	}
	op := "PUT /crm/v4/objects/deals/{id}/associations/default/contacts/{id}"
	path := "/crm/v4/objects/deals/" + url.PathEscape(dealID) + "/associations/default/contacts/" + url.PathEscape(contactID)
	resp, err := h.send(ctx, http.MethodPut, path, op, subject, nil, res)
	if err != nil {
		return err
	}
	return h.c.Classify(op, resp)
}

func (h *HubSpot) send(ctx context.Context, method, path, op, subject string, payload any, res *Result) (*vendorhttp.Response, error) {
	var body []byte
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return nil, fmt.Errorf("hubspot %s: encode: %w", op, err)
		}
		body = b
	}
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("hubspot %s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, calls, err := h.c.Do(ctx, op, req)
	res.Calls = append(res.Calls, logCalls(calls, subject)...)
	return resp, err
}

// Money formats an amount in the smallest currency unit as a decimal in
// the major unit ("29.00", or "500" for zero-decimal currencies such as
// JPY), as CRM number properties expect.
func Money(minor int64, currency string) string {
	if zeroDecimal[strings.ToLower(currency)] {
		return strconv.FormatInt(minor, 10)
	}
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	return fmt.Sprintf("%s%d.%02d", sign, minor/100, minor%100)
}

// zeroDecimal are Stripe's zero-decimal currencies.
var zeroDecimal = map[string]bool{
	"bif": true, "clp": true, "djf": true, "gnf": true, "jpy": true, "kmf": true, "krw": true, "mga": true,
	"pyg": true, "rwf": true, "ugx": true, "vnd": true, "vuv": true, "xaf": true, "xof": true, "xpf": true,
}

func timeProp(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func splitName(name string) (first, last string) {
	name = strings.TrimSpace(name)
	i := strings.LastIndexByte(name, ' ')
	if i < 0 {
		return name, ""
	}
	return strings.TrimSpace(name[:i]), name[i+1:]
}
