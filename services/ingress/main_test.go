package ingress_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Run owns every goroutine it starts; after the tests none may be left.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
