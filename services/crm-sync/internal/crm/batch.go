package crm

import (
	"net/http"
	"strings"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/vendorhttp"
)

// MaxBatch is the most inputs one call carries: the limit of HubSpot's
// batch endpoints, and the most documents one webhook POST holds.
const MaxBatch = 100

// Outcome is what a push did for one change: the ids learned and calls
// made (kept even when it failed), and its error.
type Outcome struct {
	Result Result
	Err    error
}

// newOutcomes starts one outcome per change from what is already known of
// its records.
func newOutcomes(chs []*Change) []Outcome {
	outs := make([]Outcome, len(chs))
	for i, ch := range chs {
		outs[i].Result = Result{ContactCRMID: ch.ContactCRMID, Deals: map[string]DealResult{}}
		for _, d := range ch.Deals {
			outs[i].Result.Deals[d.Deal.SubscriptionID] = DealResult{CRMID: d.CRMID, AssociatedTo: d.AssociatedTo}
		}
	}
	return outs
}

// failRest fails every change that has not failed yet with err: a
// transient failure stops the whole push, and each change is retried.
func failRest(outs []Outcome, err error) []Outcome {
	for i := range outs {
		if outs[i].Err == nil {
			outs[i].Err = err
		}
	}
	return outs
}

// inBatches sends items in calls of at most MaxBatch, never two items with
// the same key in one call (key nil: no such rule). send makes one call and
// settles each item of it itself; it returns an error only for the call as
// a whole. When the CRM refuses a whole batch because of what is in it
// (one 400, 404, 409 or 422 for many inputs), the batch is halved and each
// half sent again, until the bad input stands alone and refuse fails just
// its change. Any other error (a 429, a 5xx, a timeout) ends the push and
// is returned; so is a refusal that no input can have caused (401, 403, a
// redirect), which refuse gets for every item of the call.
func inBatches[T any](items []T, key func(T) string, send func([]T) error, refuse func(T, error)) error {
	for _, chunk := range chunks(items, key) {
		if err := sendSplitting(chunk, send, refuse); err != nil {
			return err
		}
	}
	return nil
}

func sendSplitting[T any](part []T, send func([]T) error, refuse func(T, error)) error {
	if len(part) == 0 {
		return nil
	}
	err := send(part)
	if err == nil || !bus.IsPermanent(err) {
		return err
	}
	if len(part) == 1 || !inputRefusal(err) {
		for _, it := range part {
			refuse(it, err)
		}
		return nil
	}
	half := len(part) / 2
	if err := sendSplitting(part[:half], send, refuse); err != nil {
		return err
	}
	return sendSplitting(part[half:], send, refuse)
}

// inputRefusal reports whether a refused call may have been refused for
// one of its inputs, so that sending fewer can get the rest through.
func inputRefusal(err error) bool {
	switch vendorhttp.Status(err) {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity:
		return true
	case 0:
		// Not an answer at all: an input the CRM's answer did not account
		// for (see unexplained).
		return true
	}
	return false
}

// chunks cuts items into calls of at most MaxBatch with distinct keys
// (compared without case, as HubSpot compares emails), keeping their
// order otherwise.
func chunks[T any](items []T, key func(T) string) [][]T {
	var out [][]T
	for rest := items; len(rest) > 0; {
		var cur, later []T
		seen := map[string]bool{}
		for _, it := range rest {
			k := ""
			if key != nil {
				k = strings.ToLower(key(it))
			}
			if len(cur) == MaxBatch || (key != nil && seen[k]) {
				later = append(later, it)
				continue
			}
			seen[k] = true
			cur = append(cur, it)
		}
		out = append(out, cur)
		rest = later
	}
	return out
}
