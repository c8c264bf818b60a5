package state

import (
	"bytes"
	"context"
	"encoding/json"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/stripeapi"
)

// actionOf returns the id of the staff action that changed the event's
// object, from metadata[launchready_action_id], or "", and the trace the
// action was made in, from metadata[launchready_traceparent]. Most events
// carry none, and are not parsed for it.
func actionOf(raw []byte) (id string, action trace.SpanContext) {
	if !bytes.Contains(raw, []byte(stripeapi.ActionMetadataKey)) {
		return "", trace.SpanContext{}
	}
	var r struct {
		Data struct {
			Object struct {
				Metadata map[string]any `json:"metadata"`
			} `json:"object"`
		} `json:"data"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return "", trace.SpanContext{}
	}
	id, _ = r.Data.Object.Metadata[stripeapi.ActionMetadataKey].(string)
	if tp, _ := r.Data.Object.Metadata[stripeapi.ActionTraceMetadataKey].(string); tp != "" {
		ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
		action = trace.SpanContextFromContext(ctx)
	}
	return id, action
}

// linkAction records the event on the staff action that caused it, in the
// event's transaction (queued: no round trip of its own), and links the
// event's span, in the webhook's trace, to the span that made the action.
func (t *txn) linkAction(eventID string, raw []byte) {
	id, action := actionOf(raw)
	if id == "" {
		return
	}
	if action.IsValid() {
		trace.SpanFromContext(t.ctx).AddLink(trace.Link{SpanContext: action,
			Attributes: []attribute.KeyValue{attribute.String("launchready.action_id", id)}})
	}
	t.tx.Queue("link action "+id, `UPDATE billing.admin_actions SET event_ids = array_append(event_ids, $2)
		WHERE action_id = $1 AND NOT ($2 = ANY (event_ids))`, id, eventID)
}
