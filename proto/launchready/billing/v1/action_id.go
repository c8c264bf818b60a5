package billingv1

// MaxActionIDBytes bounds the action_id of BillingAdminService requests.
const MaxActionIDBytes = 64

// ValidActionID reports whether id has the shape every staff action id
// has, wherever it is made or checked: 1 to MaxActionIDBytes letters,
// digits, '_' and '-'. The id is the action's Idempotency-Key at Stripe and
// rides in the object's metadata, so nothing else may appear in it.
func ValidActionID(id string) bool {
	if id == "" || len(id) > MaxActionIDBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
