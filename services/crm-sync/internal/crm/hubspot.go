package crm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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
// associates them through the v4 associations API, in batch calls of up to
// MaxBatch inputs, for many customers at once. Calls, in order:
//
//   - contacts with a remembered id: POST /crm/v3/objects/contacts/batch/update
//     (an id HubSpot no longer knows, deleted or merged there, is
//     forgotten and the contact upserted);
//   - contacts without one: POST /crm/v3/objects/contacts/batch/upsert with
//     idProperty=email when the customer has an email, else
//     idProperty=stripe_customer_id (a unique custom property). If an
//     email upsert conflicts because another contact already holds this
//     stripe_customer_id (it was created before the email was known), that
//     input is upserted again by stripe_customer_id, which updates that
//     contact and gives it the email;
//   - changed deals: POST /crm/v3/objects/deals/batch/upsert with
//     idProperty=stripe_subscription_id (a unique custom property);
//   - deals not yet associated with their contact:
//     POST /crm/v4/associations/deals/contacts/batch/associate/default
//     (the default, unlabeled association; repeating it changes nothing).
//
// HubSpot answers a batch with some bad inputs either with a 207
// multi-status listing them (the others are applied), or with one 4xx for
// the whole batch (nothing applied). A listed input fails its customer
// alone; a refused batch is halved and sent again until the bad input
// stands alone (see inBatches).
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

type hsUpdateInput struct {
	ID         string            `json:"id"`
	Properties map[string]string `json:"properties"`
}

type hsRef struct {
	ID string `json:"id"`
}

type hsAssociation struct {
	From hsRef `json:"from"`
	To   hsRef `json:"to"`
}

// hsError is one bad input of a 207 multi-status answer; context.ids names
// the input (the id or idProperty value it was sent with).
type hsError struct {
	Category string `json:"category"`
	Message  string `json:"message"`
	Context  struct {
		IDs []string `json:"ids"`
	} `json:"context"`
}

// hsAnswer is a batch call's 2xx answer, indexed by input.
type hsAnswer struct {
	results map[string]hsObject // by the value named by resultKey, lower case
	errors  map[string]hsError  // by context id, lower case
	// unmatched is an error that names no input: the call is then treated
	// as refused whole, and split until the input stands alone.
	unmatched *hsError
}

// leftover is what remains to say of a batch once each input was settled
// from the answer: nil when the answer accounted for every input; for a
// batch of one, the error that named no input becomes that input's
// refusal; otherwise the batch is split to find out (errUnexplained).
func (p *hsPush) leftover(op string, ans *hsAnswer, unexplained bool, changes []int) error {
	switch {
	case ans.unmatched != nil && len(changes) == 1:
		p.fail(changes[0], p.refusal(op, *ans.unmatched))
		return nil
	case unexplained || ans.unmatched != nil:
		return bus.Permanent(errUnexplained)
	}
	return nil
}

// errUnexplained is a batch answer that accounts for neither the success
// nor the failure of an input; the batch is split to find out.
var errUnexplained = errors.New("hubspot: the batch answer does not account for every input")

// Sync pushes contacts, then deals, then associations, each in batches.
func (h *HubSpot) Sync(ctx context.Context, chs []*Change) []Outcome {
	outs := newOutcomes(chs)
	p := &hsPush{h: h, ctx: ctx, chs: chs, outs: outs}
	if err := p.contacts(); err != nil {
		return failRest(outs, err)
	}
	if err := p.deals(); err != nil {
		return failRest(outs, err)
	}
	if err := p.associations(); err != nil {
		return failRest(outs, err)
	}
	return outs
}

// hsPush is one Sync in progress.
type hsPush struct {
	h    *HubSpot
	ctx  context.Context
	chs  []*Change
	outs []Outcome
}

func (p *hsPush) failed(i int) bool { return p.outs[i].Err != nil }

func (p *hsPush) fail(i int, err error) {
	if p.outs[i].Err == nil {
		p.outs[i].Err = err
	}
}

// refusal is the permanent error of one input a 207 answer listed.
func (p *hsPush) refusal(op string, e hsError) error {
	return bus.Permanent(fmt.Errorf("hubspot %s: %s: %s", op, e.Category, p.h.c.Reason([]byte(e.Message), 700)))
}

// live keeps the items whose change has not failed.
func live[T any](p *hsPush, items []T, change func(T) int) []T {
	out := items[:0:0]
	for _, it := range items {
		if !p.failed(change(it)) {
			out = append(out, it)
		}
	}
	return out
}

// contacts writes every contact that changed or is not known in HubSpot.
func (p *hsPush) contacts() error {
	var byID, byEmail, byCustomer []int
	for i, ch := range p.chs {
		switch {
		case !ch.ContactChanged && ch.ContactCRMID != "":
		case ch.ContactCRMID != "":
			byID = append(byID, i)
		case ch.Contact.Email != "":
			byEmail = append(byEmail, i)
		default:
			byCustomer = append(byCustomer, i)
		}
	}
	byContact := func(i int) string { return p.outs[i].Result.ContactCRMID }
	err := inBatches(byID, byContact, func(part []int) error {
		gone, err := p.updateContacts(live(p, part, self))
		for _, i := range gone {
			// Deleted or merged away in HubSpot: find or create it again.
			p.outs[i].Result.ContactCRMID = ""
			if p.chs[i].Contact.Email != "" {
				byEmail = append(byEmail, i)
			} else {
				byCustomer = append(byCustomer, i)
			}
		}
		return err
	}, p.fail)
	if err != nil {
		return err
	}
	err = inBatches(byEmail, func(i int) string { return p.chs[i].Contact.Email }, func(part []int) error {
		conflicts, err := p.upsertContacts(live(p, part, self), "email")
		byCustomer = append(byCustomer, conflicts...)
		return err
	}, p.fail)
	if err != nil {
		return err
	}
	return inBatches(byCustomer, func(i int) string { return p.chs[i].Contact.CustomerID }, func(part []int) error {
		_, err := p.upsertContacts(live(p, part, self), "stripe_customer_id")
		return err
	}, p.fail)
}

func self(i int) int { return i }

// updateContacts patches contacts by their remembered ids. It returns the
// changes whose id HubSpot does not know.
func (p *hsPush) updateContacts(part []int) (gone []int, err error) {
	if len(part) == 0 {
		return nil, nil
	}
	const op = "POST /crm/v3/objects/contacts/batch/update"
	inputs := make([]hsUpdateInput, len(part))
	for j, i := range part {
		inputs[j] = hsUpdateInput{ID: p.outs[i].Result.ContactCRMID, Properties: ContactProperties(p.chs[i].Contact)}
	}
	ans, status, err := p.call(op, "/crm/v3/objects/contacts/batch/update", inputs, "", part, p.customers(part))
	if status == http.StatusNotFound && len(part) == 1 {
		return part, nil
	}
	if err != nil {
		return nil, err
	}
	var unexplained bool
	for _, i := range part {
		id := p.outs[i].Result.ContactCRMID
		if e, bad := ans.errors[strings.ToLower(id)]; bad {
			if e.Category == "OBJECT_NOT_FOUND" {
				gone = append(gone, i)
			} else {
				p.fail(i, p.refusal(op, e))
			}
			continue
		}
		if _, ok := ans.results[strings.ToLower(id)]; !ok {
			unexplained = true
		}
	}
	return gone, p.leftover(op, ans, unexplained, part)
}

// upsertContacts creates or updates contacts by idProp (email or
// stripe_customer_id). An email upsert that conflicts with the contact
// holding the customer's stripe_customer_id is returned, to be upserted by
// stripe_customer_id instead.
func (p *hsPush) upsertContacts(part []int, idProp string) (conflicts []int, err error) {
	if len(part) == 0 {
		return nil, nil
	}
	const op = "POST /crm/v3/objects/contacts/batch/upsert"
	value := func(i int) string {
		if idProp == "email" {
			return p.chs[i].Contact.Email
		}
		return p.chs[i].Contact.CustomerID
	}
	inputs := make([]hsUpsertInput, len(part))
	for j, i := range part {
		inputs[j] = hsUpsertInput{IDProperty: idProp, ID: value(i), Properties: ContactProperties(p.chs[i].Contact)}
	}
	ans, status, err := p.call(op, "/crm/v3/objects/contacts/batch/upsert", inputs, idProp, part, p.customers(part))
	if status == http.StatusConflict && len(part) == 1 && idProp == "email" {
		return part, nil
	}
	if err != nil {
		return nil, err
	}
	var unexplained bool
	for _, i := range part {
		key := strings.ToLower(value(i))
		if e, bad := ans.errors[key]; bad {
			if e.Category == "CONFLICT" && idProp == "email" {
				conflicts = append(conflicts, i)
			} else {
				p.fail(i, p.refusal(op, e))
			}
			continue
		}
		r, ok := ans.results[key]
		if !ok || r.ID == "" {
			unexplained = true
			continue
		}
		p.outs[i].Result.ContactCRMID = r.ID
	}
	return conflicts, p.leftover(op, ans, unexplained, part)
}

// dealRef is one deal of one change.
type dealRef struct {
	change int
	deal   Deal
}

func (d dealRef) changeIndex() int { return d.change }

// deals upserts every deal that changed or is not known in HubSpot. A deal
// HubSpot refuses fails its customer's change.
func (p *hsPush) deals() error {
	var refs []dealRef
	for i, ch := range p.chs {
		if p.failed(i) {
			continue
		}
		for _, d := range ch.Deals {
			if d.Changed || p.outs[i].Result.Deals[d.Deal.SubscriptionID].CRMID == "" {
				refs = append(refs, dealRef{i, d.Deal})
			}
		}
	}
	const op = "POST /crm/v3/objects/deals/batch/upsert"
	return inBatches(refs, func(d dealRef) string { return d.deal.SubscriptionID }, func(part []dealRef) error {
		part = live(p, part, dealRef.changeIndex)
		if len(part) == 0 {
			return nil
		}
		inputs := make([]hsUpsertInput, len(part))
		changes := make([]int, len(part))
		for j, d := range part {
			inputs[j] = hsUpsertInput{IDProperty: "stripe_subscription_id", ID: d.deal.SubscriptionID, Properties: p.h.DealProperties(d.deal)}
			changes[j] = d.change
		}
		ans, _, err := p.call(op, "/crm/v3/objects/deals/batch/upsert", inputs, "stripe_subscription_id", changes, subscriptions(part))
		if err != nil {
			return err
		}
		var unexplained bool
		for _, d := range part {
			key := strings.ToLower(d.deal.SubscriptionID)
			if e, bad := ans.errors[key]; bad {
				p.fail(d.change, p.refusal(op, e))
				continue
			}
			r, ok := ans.results[key]
			if !ok || r.ID == "" {
				unexplained = true
				continue
			}
			dr := p.outs[d.change].Result.Deals[d.deal.SubscriptionID]
			if r.ID != dr.CRMID {
				dr.AssociatedTo = "" // a new deal record has no association yet
			}
			dr.CRMID = r.ID
			p.outs[d.change].Result.Deals[d.deal.SubscriptionID] = dr
		}
		return p.leftover(op, ans, unexplained, changes)
	}, func(d dealRef, err error) { p.fail(d.change, err) })
}

// associations links each deal to its customer's contact where the link is
// not known to exist.
func (p *hsPush) associations() error {
	var refs []dealRef
	for i, ch := range p.chs {
		if p.failed(i) {
			continue
		}
		contact := p.outs[i].Result.ContactCRMID
		for _, d := range ch.Deals {
			dr := p.outs[i].Result.Deals[d.Deal.SubscriptionID]
			if dr.AssociatedTo == contact {
				continue
			}
			if dr.CRMID == "" || contact == "" {
				p.fail(i, errors.New("hubspot associate: missing deal or contact id"))
				break
			}
			refs = append(refs, dealRef{i, d.Deal})
		}
	}
	const op = "POST /crm/v4/associations/deals/contacts/batch/associate/default"
	dealID := func(d dealRef) string { return p.outs[d.change].Result.Deals[d.deal.SubscriptionID].CRMID }
	return inBatches(refs, dealID, func(part []dealRef) error {
		part = live(p, part, dealRef.changeIndex)
		if len(part) == 0 {
			return nil
		}
		inputs := make([]hsAssociation, len(part))
		changes := make([]int, len(part))
		for j, d := range part {
			inputs[j] = hsAssociation{From: hsRef{dealID(d)}, To: hsRef{p.outs[d.change].Result.ContactCRMID}}
			changes[j] = d.change
		}
		ans, _, err := p.call(op, "/crm/v4/associations/deals/contacts/batch/associate/default", inputs, "", changes, subscriptions(part))
		if err != nil {
			return err
		}
		for _, d := range part {
			if e, bad := ans.errors[strings.ToLower(dealID(d))]; bad {
				p.fail(d.change, p.refusal(op, e))
				continue
			}
			dr := p.outs[d.change].Result.Deals[d.deal.SubscriptionID]
			dr.AssociatedTo = p.outs[d.change].Result.ContactCRMID
			p.outs[d.change].Result.Deals[d.deal.SubscriptionID] = dr
		}
		return p.leftover(op, ans, false, changes)
	}, func(d dealRef, err error) { p.fail(d.change, err) })
}

// customers names the changes of part in the sync log.
func (p *hsPush) customers(part []int) []string {
	out := make([]string, len(part))
	for j, i := range part {
		out[j] = p.chs[i].Contact.CustomerID
	}
	return out
}

// subscriptions names the deals of part in the sync log.
func subscriptions(part []dealRef) []string {
	out := make([]string, len(part))
	for j, d := range part {
		out[j] = d.deal.SubscriptionID
	}
	return out
}

// call posts one batch. The calls made are logged on every change of the
// batch (input j belongs to change changes[j], and the log names it
// subjects[j]). A 2xx answer (200, or 207 with errors) is decoded, its
// results indexed by resultKey's property (by id, or an association's
// from id, when resultKey is ""), and returned with a nil error; any other
// answer returns its status and the client's verdict on it.
func (p *hsPush) call(op, path string, inputs any, resultKey string, changes []int, subjects []string) (*hsAnswer, int, error) {
	var res Result
	body := struct {
		Inputs any `json:"inputs"`
	}{inputs}
	resp, err := p.h.send(p.ctx, http.MethodPost, path, op, body, &res)
	for j, i := range changes {
		for _, c := range res.Calls {
			c.Object = subjects[j]
			p.outs[i].Result.Calls = append(p.outs[i].Result.Calls, c)
		}
	}
	if err != nil {
		return nil, 0, err
	}
	if err := p.h.c.Classify(op, resp); err != nil {
		return nil, resp.Status, err
	}
	var answer struct {
		Results []struct {
			hsObject
			From hsRef `json:"from"`
		} `json:"results"`
		Errors []hsError `json:"errors"`
	}
	if err := json.Unmarshal(resp.Body, &answer); err != nil {
		return nil, resp.Status, fmt.Errorf("hubspot %s: decode answer: %w", op, err)
	}
	ans := &hsAnswer{results: map[string]hsObject{}, errors: map[string]hsError{}}
	for _, r := range answer.Results {
		key := r.ID
		switch {
		case resultKey != "":
			key = r.Properties[resultKey]
		case r.From.ID != "":
			key = r.From.ID
		}
		ans.results[strings.ToLower(key)] = r.hsObject
	}
	for _, e := range answer.Errors {
		if len(e.Context.IDs) == 0 && ans.unmatched == nil {
			ans.unmatched = &e
		}
		for _, id := range e.Context.IDs {
			ans.errors[strings.ToLower(id)] = e
		}
	}
	return ans, resp.Status, nil
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
	if c.Test {
		// Sent only for smoke contacts, so an account that has not defined
		// the property yet still takes every real contact.
		p["launchready_test"] = "true"
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

func (h *HubSpot) send(ctx context.Context, method, path, op string, payload any, res *Result) (*vendorhttp.Response, error) {
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
	res.Calls = append(res.Calls, logCalls(calls, "")...)
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
