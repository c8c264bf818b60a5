package smoke

import (
	"context"
	"errors"
)

// failViaStripe is not built yet: see the README's smoke section.
func failViaStripe(context.Context, Config, string) (*Payment, error) {
	return nil, errors.New("--via stripe is not available in this build; use --via webhook")
}
