package state

import (
	"bytes"
	"encoding/json"

	"github.com/launchready/launchready/pkg/stripeapi"
)

// actionOf returns the id of the staff action that changed the event's
// object, from metadata[launchready_action_id], or "". Most events carry
// none, and are not parsed for it.
func actionOf(raw []byte) string {
	if !bytes.Contains(raw, []byte(stripeapi.ActionMetadataKey)) {
		return ""
	}
	var r struct {
		Data struct {
			Object struct {
				Metadata map[string]any `json:"metadata"`
			} `json:"object"`
		} `json:"data"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return ""
	}
	id, _ := r.Data.Object.Metadata[stripeapi.ActionMetadataKey].(string)
	return id
}

// linkAction records the event on the staff action that caused it, in the
// event's transaction (queued: no round trip of its own).
func (t *txn) linkAction(eventID string, raw []byte) {
	id := actionOf(raw)
	if id == "" {
		return
	}
	t.tx.Queue("link action "+id, `UPDATE billing.admin_actions SET event_ids = array_append(event_ids, $2)
		WHERE action_id = $1 AND NOT ($2 = ANY (event_ids))`, id, eventID)
}
