package canonical

import "strings"

// ProbeEventType is the type of the marked test event `launchready doctor`
// posts through the public webhook route. Its object is ProbeObject, which
// no consumer routes (Classify gives KindIgnored), so every consumer
// recognises it and ignores it: it proves the route, signature and bus
// without touching any customer's truth.
const (
	ProbeEventType = "launchready.probe"
	ProbeObject    = "launchready.probe"
	// ProbeIDPrefix starts the event id of every probe.
	ProbeIDPrefix = "evt_lrprobe_"
)

// IsProbe reports whether an event is a doctor's probe.
func IsProbe(eventType, eventID string) bool {
	return eventType == ProbeEventType || strings.HasPrefix(eventID, ProbeIDPrefix)
}
