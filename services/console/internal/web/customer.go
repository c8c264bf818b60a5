package web

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/holdings"
	"github.com/launchready/launchready/services/console/internal/store"
)

// maxQuery bounds a search box's input (an email is at most 320 bytes).
const maxQuery = 320

// errNoBilling is the answer when no billing-state token is configured.
var errNoBilling = errors.New("the console has no billing-state token (CONSOLE_BILLING_GRPC_TOKEN)")

// lookupKind says what a search query is: a Stripe customer or
// subscription id by its prefix, an email by its "@", else the app's user
// id (metadata.user_id).
func lookupKind(q string) string {
	switch {
	case strings.HasPrefix(q, "cus_"):
		return "customer"
	case strings.HasPrefix(q, "sub_"):
		return "subscription"
	case strings.Contains(q, "@"):
		return "email"
	default:
		return "user"
	}
}

// search finds one customer by email, customer id, user id or
// subscription id and opens its page; otherwise it says what it looked
// for.
func (s *Server) search(w http.ResponseWriter, r *http.Request, q *request) {
	query := strings.TrimSpace(r.URL.Query().Get("q"))
	data := map[string]any{"Title": "Find a customer", "Query": query}
	if query == "" {
		s.render(w, r, http.StatusOK, "search", q, data)
		return
	}
	if len(query) > maxQuery {
		data["Message"] = "That is longer than any email or id."
		s.render(w, r, http.StatusBadRequest, "search", q, data)
		return
	}
	kind := lookupKind(query)
	data["Kind"] = kind
	customer, err := s.findCustomer(r.Context(), kind, query)
	switch {
	case err != nil:
		s.opts.Log.WarnContext(r.Context(), "customer search", "kind", kind, "error", err.Error())
		data["Message"] = "The search failed: " + plainError(err)
		s.render(w, r, http.StatusBadGateway, "search", q, data)
	case customer == "":
		data["Message"] = "No customer has " + kindName(kind) + " " + query + "."
		s.render(w, r, http.StatusNotFound, "search", q, data)
	default:
		http.Redirect(w, r, "/customers/"+url.PathEscape(customer), http.StatusSeeOther)
	}
}

func kindName(kind string) string {
	switch kind {
	case "customer":
		return "the customer id"
	case "subscription":
		return "the subscription id"
	case "email":
		return "the email"
	}
	return "the user id"
}

// findCustomer resolves a query to a customer id: billing-state answers
// for customer ids, emails and user ids, as it does for the mobile
// backend; a subscription is looked up in what the services hold.
func (s *Server) findCustomer(ctx context.Context, kind, query string) (string, error) {
	if kind == "subscription" {
		if s.opts.Reader == nil {
			return "", errors.New("the console has no reader pool")
		}
		return holdings.CustomerOfSubscription(ctx, s.opts.Reader, query)
	}
	if s.opts.Billing == nil {
		return "", errNoBilling
	}
	req := &billingv1.GetCustomerStatusRequest{}
	switch kind {
	case "customer":
		req.Lookup = &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: query}
	case "email":
		req.Lookup = &billingv1.GetCustomerStatusRequest_Email{Email: query}
	default:
		req.Lookup = &billingv1.GetCustomerStatusRequest_UserId{UserId: query}
	}
	st, err := s.opts.Billing.Status.GetCustomerStatus(ctx, req)
	if status.Code(err) == codes.NotFound {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return st.GetCustomerId(), nil
}

// plainError says what went wrong with a call to billing-state without
// its internals.
func plainError(err error) string {
	if errors.Is(err, errNoBilling) {
		return err.Error() + "."
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return "billing-state did not answer."
	case codes.Unauthenticated, codes.PermissionDenied:
		return "billing-state refused the console's token."
	case codes.InvalidArgument:
		return "billing-state refused the query: " + status.Convert(err).Message()
	}
	return "see the console's log."
}

// customerView is everything the customer page shows; a part that could
// not be read carries its error instead.
type customerView struct {
	ID          string
	Status      *billingv1.CustomerStatus
	StatusName  string
	StatusError string
	Changes     []*billingv1.CustomerEvent
	Stripe      *stripeView
	StripeError string
	CRM         holdings.CRM
	CRMError    string
	Tickets     []holdings.Ticket
	TicketError string
	Timeline    []timelineEvent
	TimelineErr string
	Audit       []store.AuditEntry
	AuditError  string
}

// timelineEvent is one event with each consumer's outcome, dead letters
// included.
type timelineEvent struct {
	holdings.Event
	DeadLetters []bus.DeadLetter
}

// customer shows one customer across every system.
func (s *Server) customer(w http.ResponseWriter, r *http.Request, q *request) {
	id := r.PathValue("id")
	if id == "" || len(id) > 255 {
		s.render(w, r, http.StatusNotFound, "error", q, map[string]any{"Title": "Not found", "Message": "No such customer."})
		return
	}
	ctx := r.Context()
	v := customerView{ID: id}
	s.readBilling(ctx, &v)
	if v.Status != nil && s.opts.Stripe != nil {
		v.Stripe, v.StripeError = s.readStripe(ctx, v.Status)
	}
	if s.opts.Reader == nil {
		v.CRMError, v.TicketError, v.TimelineErr = "not configured", "not configured", "not configured"
	} else {
		var err error
		if v.CRM, err = holdings.ReadCRM(ctx, s.opts.Reader, id); err != nil {
			v.CRMError = s.partFailed(ctx, "read the CRM record", err)
		}
		if v.Tickets, err = holdings.OpenTickets(ctx, s.opts.Reader, id); err != nil {
			v.TicketError = s.partFailed(ctx, "read the tickets", err)
		}
		if v.Timeline, err = s.timeline(ctx, id); err != nil {
			v.TimelineErr = s.partFailed(ctx, "read the timeline", err)
		}
	}
	var err error
	if v.Audit, err = store.ListAudit(ctx, s.opts.Pool, store.AuditFilter{CustomerID: id, Limit: 100}); err != nil {
		v.AuditError = s.partFailed(ctx, "read the audit log", err)
	}
	resyncs, err := s.resyncForms(q)
	if err != nil {
		s.failed(w, r, q, "draw the page", err)
		return
	}
	s.render(w, r, http.StatusOK, "customer", q, map[string]any{"Title": "Customer " + id, "C": v, "CustomerID": id,
		"Actions": s.opts.Billing != nil && s.opts.Billing.Admin != nil, "Resyncs": resyncs})
}

func (s *Server) partFailed(ctx context.Context, what string, err error) string {
	s.opts.Log.ErrorContext(ctx, what, "error", err.Error())
	return "Could not " + what + "; the error is in the console's log."
}

// readBilling fills the canonical status and its recent changes from
// billing-state's gRPC API.
func (s *Server) readBilling(ctx context.Context, v *customerView) {
	if s.opts.Billing == nil {
		v.StatusError = plainError(errNoBilling)
		return
	}
	st, err := s.opts.Billing.Status.GetCustomerStatus(ctx, &billingv1.GetCustomerStatusRequest{
		Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: v.ID}})
	switch {
	case status.Code(err) == codes.NotFound:
		v.StatusError = "billing-state has no record of this customer."
		return
	case err != nil:
		s.opts.Log.WarnContext(ctx, "read billing status", "customer_id", v.ID, "error", err.Error())
		v.StatusError = plainError(err)
		return
	}
	v.Status, v.StatusName = st, canonical.StatusName(st.GetStatus())
	resp, err := s.opts.Billing.Status.ListCustomerEvents(ctx, &billingv1.ListCustomerEventsRequest{CustomerId: v.ID, PageSize: 50})
	if err != nil {
		s.opts.Log.WarnContext(ctx, "read billing changes", "customer_id", v.ID, "error", err.Error())
		return
	}
	v.Changes = resp.GetEvents()
}

// timeline is every event the consumers recorded for the customer, with
// the customer's dead letters beside the consumer that gave up.
func (s *Server) timeline(ctx context.Context, customer string) ([]timelineEvent, error) {
	byEvent := map[string][]bus.DeadLetter{}
	var ids []string
	if s.opts.JS != nil {
		dls, err := bus.ListDeadLetters(ctx, s.opts.JS, "", 1000)
		if err != nil {
			return nil, err
		}
		for _, dl := range dls {
			if billingv1.EncodedCustomerID(dl.Data) != customer {
				continue
			}
			if byEvent[dl.EventID] == nil {
				ids = append(ids, dl.EventID)
			}
			byEvent[dl.EventID] = append(byEvent[dl.EventID], dl)
		}
	}
	events, err := holdings.Timeline(ctx, s.opts.Reader, customer, ids, 200)
	if err != nil {
		return nil, err
	}
	out := make([]timelineEvent, 0, len(events)+len(byEvent))
	seen := map[string]bool{}
	for _, e := range events {
		seen[e.ID] = true
		out = append(out, timelineEvent{Event: e, DeadLetters: byEvent[e.ID]})
	}
	// A dead letter of an event no consumer recorded comes first: nothing
	// applied it.
	for _, id := range ids {
		if !seen[id] {
			dls := byEvent[id]
			out = append([]timelineEvent{{Event: holdings.Event{ID: id, Type: dls[0].EventType, First: dls[0].FailedAt}, DeadLetters: dls}}, out...)
		}
	}
	return out, nil
}

// readFuncs are the templates' helpers for the read side's pages.
var readFuncs = template.FuncMap{
	"ms": ms,
	"short": func(rev string) string {
		if len(rev) > 12 {
			return rev[:12]
		}
		return rev
	},
	"whenpb": func(ts *timestamppb.Timestamp) string {
		if ts == nil {
			return "—"
		}
		return ts.AsTime().UTC().Format("2006-01-02 15:04:05 UTC")
	},
	// masked shows personal data to support and up, masked to a viewer.
	"masked": func(v view, s string) string {
		if s == "" {
			return "—"
		}
		if v.Can(string(auth.Support)) {
			return s
		}
		return maskEmail(s)
	},
	// outcome is what consumer recorded for an event, "—" when it has
	// recorded nothing (not yet, or the event is not its business).
	"outcome": func(os []holdings.Outcome, consumer string) string {
		for _, o := range os {
			if o.Consumer == consumer {
				return o.Outcome
			}
		}
		return "—"
	},
	"statuschange": func(e *billingv1.CustomerEvent) string {
		after := canonical.StatusName(e.GetAfter().GetStatus())
		if b := e.GetBefore(); b != nil && b.GetStatus() != e.GetAfter().GetStatus() {
			return canonical.StatusName(b.GetStatus()) + " → " + after
		}
		return after
	},
}
