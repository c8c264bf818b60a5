package syncer

// ApplyEvent is applyEvent, the mirror's one switch over pkg/canonical's
// kinds, for the test that runs every fixture through it.
var ApplyEvent = applyEvent
