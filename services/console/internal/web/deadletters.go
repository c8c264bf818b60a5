package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/redact"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/holdings"
	"github.com/launchready/launchready/services/console/internal/store"
)

// maxReasonLength bounds a staff member's reason.
const maxReasonLength = 500

// deadLetterView is one dead letter as a page shows it.
type deadLetterView struct {
	bus.DeadLetter
	// Event is the decoded payload, nil when it does not decode (which may
	// be why it is a dead letter).
	Event *billingv1.BillingEvent
	// Email is the event's email, masked for a viewer.
	Email string
	// Raw is the verified Stripe body, for support and up only.
	Raw string
}

func (s *Server) viewDeadLetter(dl bus.DeadLetter, q *request) deadLetterView {
	v := deadLetterView{DeadLetter: dl}
	var ev billingv1.BillingEvent
	if proto.Unmarshal(dl.Data, &ev) == nil && ev.GetEventId() != "" {
		v.Event = &ev
		v.Email = ev.GetEmail()
		if !q.Role.Allows(auth.Support) {
			v.Email = maskEmail(v.Email)
		} else {
			v.Raw = redact.Text(string(ev.GetRawJson()))
		}
	}
	return v
}

// maskEmail keeps the first letter and the domain: enough to tell two
// customers apart on a page, not enough to contact one.
func maskEmail(e string) string {
	at := strings.LastIndex(e, "@")
	if at < 1 {
		if e == "" {
			return ""
		}
		return "•••"
	}
	return e[:1] + "•••" + e[at:]
}

// deadLetters lists the dead letters, optionally of one consumer.
func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request, q *request) {
	consumer := r.URL.Query().Get("consumer")
	dls, err := bus.ListDeadLetters(r.Context(), s.opts.JS, consumer, 200)
	if err != nil {
		s.failed(w, r, q, "list the dead letters", err)
		return
	}
	views := make([]deadLetterView, 0, len(dls))
	for _, dl := range dls {
		views = append(views, s.viewDeadLetter(dl, q))
	}
	s.render(w, r, http.StatusOK, "deadletters", q, map[string]any{"Title": "Dead letters", "Letters": views, "Consumer": consumer,
		"Notice": r.URL.Query().Get("done")})
}

// deadLetter shows one dead letter and what a replay would do.
func (s *Server) deadLetter(w http.ResponseWriter, r *http.Request, q *request) {
	seq, ok := seqOf(r)
	if !ok {
		s.render(w, r, http.StatusNotFound, "error", q, map[string]any{"Title": "Not found", "Message": "No such dead letter."})
		return
	}
	dl, err := bus.GetDeadLetter(r.Context(), s.opts.JS, seq)
	if errors.Is(err, bus.ErrDeadLetterNotFound) {
		s.render(w, r, http.StatusNotFound, "error", q, map[string]any{"Title": "Not found",
			"Message": "This dead letter is gone: it was replayed or discarded."})
		return
	}
	if err != nil {
		s.failed(w, r, q, "read the dead letter", err)
		return
	}
	replayTo, _ := bus.CheckedReplaySubject(dl.Consumer, dl.EventType)
	data := map[string]any{"Title": "Dead letter " + strconv.FormatUint(seq, 10), "L": s.viewDeadLetter(dl, q), "ReplayTo": replayTo}
	s.previewReplay(r.Context(), dl, data)
	s.render(w, r, http.StatusOK, "deadletter", q, data)
}

// replayDeadLetter puts a dead letter back for its consumer only.
func (s *Server) replayDeadLetter(w http.ResponseWriter, r *http.Request, q *request) {
	s.settleDeadLetter(w, r, q, "dlq_replay", func(seq uint64) (bus.DeadLetter, error) {
		return bus.ReplayDeadLetter(r.Context(), s.opts.JS, seq)
	})
}

// discardDeadLetter removes a dead letter for good; it needs a reason.
func (s *Server) discardDeadLetter(w http.ResponseWriter, r *http.Request, q *request) {
	s.settleDeadLetter(w, r, q, "dlq_discard", func(seq uint64) (bus.DeadLetter, error) {
		return bus.DiscardDeadLetter(r.Context(), s.opts.JS, seq)
	})
}

func (s *Server) settleDeadLetter(w http.ResponseWriter, r *http.Request, q *request, action string, do func(uint64) (bus.DeadLetter, error)) {
	seq, ok := seqOf(r)
	if !ok {
		s.render(w, r, http.StatusNotFound, "error", q, map[string]any{"Title": "Not found", "Message": "No such dead letter."})
		return
	}
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	if len(reason) > maxReasonLength {
		reason = reason[:maxReasonLength]
	}
	if action == "dlq_discard" && reason == "" {
		s.render(w, r, http.StatusBadRequest, "error", q, map[string]any{"Title": "A reason is needed",
			"Message": "Say why this dead letter is discarded: it will never be applied."})
		return
	}
	ctx := r.Context()
	dl, err := do(seq)
	entry := store.AuditEntry{Actor: q.Staff().Email, Action: action, Target: dl.Consumer + "/" + strconv.FormatUint(seq, 10),
		Reason: reason, RemoteAddr: clientIP(r), CustomerID: billingv1.EncodedCustomerID(dl.Data),
		Before: jsonOf(map[string]any{"seq": seq, "consumer": dl.Consumer, "event_id": dl.EventID, "event_type": dl.EventType,
			"error": dl.Error, "delivered": dl.Delivered})}
	switch {
	case errors.Is(err, bus.ErrDeadLetterNotFound):
		entry.Outcome = "not_found"
		s.audit(ctx, entry)
		s.render(w, r, http.StatusConflict, "error", q, map[string]any{"Title": "Already settled",
			"Message": "This dead letter was already replayed or discarded."})
		return
	case err != nil:
		entry.Outcome = "failed"
		s.audit(ctx, entry)
		s.failed(w, r, q, "settle the dead letter", err)
		return
	}
	entry.Outcome = "ok"
	if action == "dlq_replay" {
		to, _ := bus.CheckedReplaySubject(dl.Consumer, dl.EventType)
		entry.After = jsonOf(map[string]any{"replayed_to": to})
	} else {
		entry.After = jsonOf(map[string]any{"discarded": true})
	}
	if err := pg.InTx(ctx, s.opts.Pool, func(tx *pg.Tx) error { return store.Audit(ctx, tx, entry) }); err != nil {
		s.failed(w, r, q, "record the action", err)
		return
	}
	done := "replayed"
	if action == "dlq_discard" {
		done = "discarded"
	}
	http.Redirect(w, r, "/dead-letters?done="+done+"+"+strconv.FormatUint(seq, 10), http.StatusSeeOther)
}

func seqOf(r *http.Request) (uint64, bool) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	return seq, err == nil && seq > 0
}

// previewReplay says what a replay of dl would change, from what its
// consumer has recorded for the event since: nothing when it has applied
// it (its dedupe acknowledges the replay), else the event applied for the
// first time. Other consumers' outcomes are shown beside it: a replay does
// not touch them.
func (s *Server) previewReplay(ctx context.Context, dl bus.DeadLetter, data map[string]any) {
	if s.opts.Reader == nil {
		return
	}
	e, _, err := holdings.EventOutcomes(ctx, s.opts.Reader, dl.EventID)
	if err != nil {
		data["PreviewError"] = s.partFailed(ctx, "read what the consumers recorded", err)
		return
	}
	var others []holdings.Outcome
	for _, o := range e.Outcomes {
		if o.Consumer == dl.Consumer {
			data["Since"] = o
		} else {
			others = append(others, o)
		}
	}
	data["Others"] = others
	if data["Since"] == nil {
		data["Unapplied"] = true
	}
}
