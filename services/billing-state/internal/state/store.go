// Package state is billing-state's store: the billing schema, ApplyEvent
// (one transaction per Stripe event), the customer-level derivation through
// pkg/canonical, the audit trail and the outbox.
package state

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/pg"
)

// Schema is the Postgres schema billing-state owns.
const Schema = "billing"

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the embedded migration files.
func Migrations() fs.FS { return pg.MigrationsIn(migrationFiles, "migrations") }

// Migrate applies the embedded migrations to the billing schema.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pg.MigrateShared(ctx, pool, Schema, Migrations())
}

var (
	// ErrMalformed: the event cannot be applied however often it is
	// retried. The consumer dead-letters it at once.
	ErrMalformed = errors.New("malformed billing event")
	// ErrCustomerUnknown: the event names only a charge (disputes, refunds)
	// whose customer is not known yet. Retried a few times, then parked.
	ErrCustomerUnknown = errors.New("customer of charge not known yet")
	// ErrNotFound: no such customer.
	ErrNotFound = errors.New("customer not found")
)

// Fetcher reads current objects from the Stripe API, when a key is set.
type Fetcher interface {
	Subscription(ctx context.Context, id string) (FetchedSubscription, error)
	Charge(ctx context.Context, id string) (FetchedCharge, error)
}

// FetchedSubscription is the subscription as Stripe has it now.
type FetchedSubscription struct {
	Status            string
	CancelAtPeriodEnd bool
	PriceID           string
	CurrentPeriodEnd  time.Time
	TrialEnd          time.Time
}

// FetchedCharge is what a charge says about who paid and for what.
type FetchedCharge struct {
	CustomerID      string
	PaymentIntentID string
	InvoiceID       string
}

// Options configure a Store.
type Options struct {
	Policy canonical.Policy
	// Fetcher, when set, resolves unknown charges and same-second ties
	// from the Stripe API.
	Fetcher Fetcher
	Logger  *slog.Logger
	// OutboxWritten is called after a commit that wrote an outbox row, to
	// wake the relay at once instead of at its next poll.
	OutboxWritten func()
	// Now is the clock for updated_at; nil means time.Now.
	Now func() time.Time
	// Durable, set when commits are asynchronous (FlushGate.Wait), returns
	// once every commit made before the call is on disk. The outbox relay
	// waits for it before publishing what it claimed.
	Durable func(ctx context.Context) error
}

// Store is the billing schema.
type Store struct {
	pool    *pgxpool.Pool
	policy  canonical.Policy
	fetcher Fetcher
	log     *slog.Logger
	kick    func()
	now     func() time.Time
	durable func(ctx context.Context) error
}

// New returns a Store on pool. The schema must be migrated.
func New(pool *pgxpool.Pool, o Options) *Store {
	s := &Store{pool: pool, policy: o.Policy, fetcher: o.Fetcher, log: o.Logger, kick: o.OutboxWritten, now: o.Now, durable: o.Durable}
	if s.log == nil {
		s.log = logging.Discard()
	}
	if s.kick == nil {
		s.kick = func() {}
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Pool is the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Policy is the entitlement policy in force.
func (s *Store) Policy() canonical.Policy { return s.policy }
