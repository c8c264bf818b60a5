package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/resync"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/store"
)

// Resyncer asks a consumer to re-send what it holds for a customer
// (resync.Ask over the console's NATS connection).
type Resyncer func(ctx context.Context, consumer string, req resync.Request) (resync.Reply, error)

// natsResyncer asks over nc.
func natsResyncer(nc *nats.Conn) Resyncer {
	return func(ctx context.Context, consumer string, req resync.Request) (resync.Reply, error) {
		return resync.Ask(ctx, nc, consumer, req)
	}
}

// resyncWait bounds the wait for a consumer's answer; a consumer still
// working past it finishes on its own, and asking again with the same
// form is answered from its record.
const resyncWait = 30 * time.Second

// resyncTarget is one consumer a staff member may ask to re-send.
type resyncTarget struct {
	Consumer string
	Title    string
	// What says what the consumer re-sends.
	What string
}

// resyncTargets are the consumers that answer resyncs, by their durable
// (pkg/natsauth says which may).
var resyncTargets = []resyncTarget{
	{Consumer: natsauth.ResyncDurable(natsauth.CRMSync), Title: "Re-send CRM sync",
		What: "crm-sync pushes this customer's current contact and deals to the CRM again."},
	{Consumer: natsauth.ResyncDurable(natsauth.SupportNotify), Title: "Re-send ticket",
		What: "support-notify replays a ticket still pending and re-posts the state of each open ticket."},
}

func resyncTargetOf(consumer string) (resyncTarget, bool) {
	for _, t := range resyncTargets {
		if t.Consumer == consumer {
			return t, true
		}
	}
	return resyncTarget{}, false
}

// resyncForm is one form on the customer page, with a request id of its
// own: submitting it twice is one resync.
type resyncForm struct {
	resyncTarget
	RequestID string
}

// resyncForms are the customer page's resync forms: none for a viewer, or
// when the console has no NATS connection.
func (s *Server) resyncForms(q *request) ([]resyncForm, error) {
	if s.opts.Resync == nil || !q.Role.Allows(auth.Support) {
		return nil, nil
	}
	out := make([]resyncForm, 0, len(resyncTargets))
	for _, t := range resyncTargets {
		id, err := randomToken(18)
		if err != nil {
			return nil, err
		}
		out = append(out, resyncForm{resyncTarget: t, RequestID: "rsy_" + id})
	}
	return out, nil
}

// resyncCustomer asks one consumer to re-send what it holds for the
// customer, shows its answer, and writes the audit row (actor, reason,
// request and the consumer's outcome) whatever the answer.
func (s *Server) resyncCustomer(w http.ResponseWriter, r *http.Request, q *request) {
	target, ok := resyncTargetOf(r.PathValue("consumer"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	req := resync.Request{RequestID: strings.TrimSpace(r.PostForm.Get("request_id")), CustomerID: r.PathValue("id"),
		Actor: q.Staff().Email, Reason: strings.TrimSpace(r.PostForm.Get("reason"))}
	data := map[string]any{"Title": target.Title, "T": target, "CustomerID": req.CustomerID, "Reason": req.Reason,
		"Back": "/customers/" + url.PathEscape(req.CustomerID)}
	switch {
	case !actionIDShape(strings.TrimPrefix(req.RequestID, "rsy_")) || !strings.HasPrefix(req.RequestID, "rsy_"):
		data["Message"] = "The form has no request id; open the customer page again."
	case req.Reason == "" || len(req.Reason) > maxReasonLength:
		data["Message"] = "Give a reason (at most 500 characters)."
	case req.Validate() != nil:
		data["Message"] = "This customer id cannot be sent to a consumer."
	}
	if data["Message"] != nil {
		s.render(w, r, http.StatusBadRequest, "resync", q, data)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), resyncWait)
	defer cancel()
	rep, err := s.opts.Resync(ctx, target.Consumer, req)
	entry := store.AuditEntry{Actor: req.Actor, Action: "resync", CustomerID: req.CustomerID, Target: target.Consumer,
		Reason: req.Reason, RemoteAddr: clientIP(r), Before: jsonOf(map[string]any{"request_id": req.RequestID})}
	status := http.StatusOK
	switch {
	case errors.Is(err, resync.ErrNoResponder):
		entry.Outcome, status = "no_responder", http.StatusServiceUnavailable
		data["Error"] = target.Consumer + " is not running: no process took the request. Nothing was re-sent."
	case errors.Is(err, resync.ErrTimeout):
		entry.Outcome, status = "timed_out", http.StatusGatewayTimeout
		data["Error"] = target.Consumer + " did not answer within " + resyncWait.String() +
			". It may still finish; submitting this form again asks for its outcome and sends nothing twice."
	case err != nil:
		entry.Outcome, status = "failed", http.StatusBadGateway
		s.opts.Log.WarnContext(r.Context(), "resync", "customer_id", req.CustomerID, "consumer", target.Consumer, "error", err.Error())
		data["Error"] = "The request could not be sent to " + target.Consumer + "; the error is in the console's log."
	default:
		entry.Outcome = rep.Outcome
		entry.After = jsonOf(rep)
		data["Reply"] = rep
		if rep.Outcome == resync.OutcomeFailed || rep.Outcome == resync.OutcomeRefused {
			status = http.StatusBadGateway
		}
	}
	s.audit(r.Context(), entry)
	s.render(w, r, status, "resync", q, data)
}
