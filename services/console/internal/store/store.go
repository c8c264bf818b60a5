// Package store is the console's Postgres schema ("console"): staff
// accounts, sessions and the audit log. Every function takes the DB to run
// on, a pool or a pg.Tx, so a caller commits a change and its audit row
// together (pg.InTx).
package store

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/pg"
)

// Schema is the Postgres schema the console owns.
const Schema = "console"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the embedded migrations to Schema.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := pg.MigrateDir(ctx, pool, Schema, migrations, "migrations"); err != nil {
		return err
	}
	// The reader pool runs as the role the services grant SELECT to.
	ok, err := pg.JoinReader(ctx, pool)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", Schema, err)
	}
	if !ok {
		slog.WarnContext(ctx, "the console's login is not a member of the reader role and may not join it: grant it, or the console shows nothing of the other services",
			"role", pg.ConsoleReaderRole)
	}
	return nil
}

// DB is what the functions here run on: a *pgxpool.Pool or a *pg.Tx.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Errors at the package's edge.
var (
	ErrNotFound    = errors.New("not found")
	ErrStaffExists = errors.New("a staff member with this email exists")
)

// Account sources.
const (
	SourceLocal = "local"
	SourceOIDC  = "oidc"
)

// Staff is one staff account.
type Staff struct {
	ID                 int64
	Email              string
	Role               string
	Source             string
	PasswordHash       string
	MustChangePassword bool
	FailedLogins       int
	NextAttemptAt      time.Time
	LockedUntil        time.Time
	Disabled           bool
	CreatedAt          time.Time
}

const staffColumns = `s.id, s.email, s.role, s.source, coalesce(s.password_hash, ''), s.must_change_password,
	s.failed_logins, s.next_attempt_at, s.locked_until, s.disabled, s.created_at`

func scanStaff(row pgx.Row, extra ...any) (Staff, error) {
	var s Staff
	var next, locked *time.Time
	err := row.Scan(append([]any{&s.ID, &s.Email, &s.Role, &s.Source, &s.PasswordHash, &s.MustChangePassword,
		&s.FailedLogins, &next, &locked, &s.Disabled, &s.CreatedAt}, extra...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Staff{}, ErrNotFound
	}
	if next != nil {
		s.NextAttemptAt = *next
	}
	if locked != nil {
		s.LockedUntil = *locked
	}
	return s, err
}

// CreateStaff adds an account. An email already used, in any case, is
// ErrStaffExists.
func CreateStaff(ctx context.Context, db DB, email, role, source, passwordHash string, mustChange bool) (Staff, error) {
	var hash *string
	if passwordHash != "" {
		hash = &passwordHash
	}
	s, err := scanStaff(db.QueryRow(ctx, `INSERT INTO console.staff AS s (email, role, source, password_hash, must_change_password)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+staffColumns, email, role, source, hash, mustChange))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return Staff{}, ErrStaffExists
	}
	if err != nil {
		return Staff{}, fmt.Errorf("create staff: %w", err)
	}
	return s, nil
}

// StaffByEmail finds an account by email, in any case.
func StaffByEmail(ctx context.Context, db DB, email string) (Staff, error) {
	s, err := scanStaff(db.QueryRow(ctx, `SELECT `+staffColumns+` FROM console.staff s WHERE lower(s.email) = lower($1)`, email))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Staff{}, fmt.Errorf("staff by email: %w", err)
	}
	return s, err
}

// ListStaff returns every account, by email.
func ListStaff(ctx context.Context, db DB) ([]Staff, error) {
	rows, err := db.Query(ctx, `SELECT `+staffColumns+` FROM console.staff s ORDER BY lower(s.email)`)
	if err != nil {
		return nil, fmt.Errorf("list staff: %w", err)
	}
	defer rows.Close()
	var out []Staff
	for rows.Next() {
		s, err := scanStaff(rows)
		if err != nil {
			return nil, fmt.Errorf("list staff: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// CountFailedLogin adds one to the account's consecutive failures and
// returns the new count.
func CountFailedLogin(ctx context.Context, db DB, id int64) (int, error) {
	var n int
	err := db.QueryRow(ctx, `UPDATE console.staff SET failed_logins = failed_logins + 1, updated_at = now()
		WHERE id = $1 RETURNING failed_logins`, id).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count failed sign-in: %w", err)
	}
	return n, nil
}

// HoldLogins makes the account's next sign-in wait until next (zero: no
// wait) and locks it until locked (zero: not locked).
func HoldLogins(ctx context.Context, db DB, id int64, next, locked time.Time) error {
	_, err := db.Exec(ctx, `UPDATE console.staff SET next_attempt_at = $2, locked_until = $3, updated_at = now() WHERE id = $1`,
		id, nullTime(next), nullTime(locked))
	if err != nil {
		return fmt.Errorf("hold sign-ins: %w", err)
	}
	return nil
}

// ClearFailedLogins forgets the failures after a good sign-in.
func ClearFailedLogins(ctx context.Context, db DB, id int64) error {
	_, err := db.Exec(ctx, `UPDATE console.staff SET failed_logins = 0, next_attempt_at = NULL, locked_until = NULL, updated_at = now()
		WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("clear failed sign-ins: %w", err)
	}
	return nil
}

// SetPassword replaces the account's password hash.
func SetPassword(ctx context.Context, db DB, id int64, hash string, mustChange bool) error {
	_, err := db.Exec(ctx, `UPDATE console.staff SET password_hash = $2, must_change_password = $3, updated_at = now() WHERE id = $1`,
		id, hash, mustChange)
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	return nil
}

// UpsertOIDCStaff records an OIDC sign-in's account with the role its
// groups map to now. A local account with the same email is not taken
// over: ErrStaffExists.
func UpsertOIDCStaff(ctx context.Context, db DB, email, role string) (Staff, error) {
	s, err := scanStaff(db.QueryRow(ctx, `INSERT INTO console.staff AS s (email, role, source) VALUES ($1, $2, 'oidc')
		ON CONFLICT (lower(email)) DO UPDATE SET role = EXCLUDED.role, updated_at = now() WHERE s.source = 'oidc'
		RETURNING `+staffColumns, email, role))
	if errors.Is(err, ErrNotFound) {
		return Staff{}, ErrStaffExists
	}
	if err != nil {
		return Staff{}, fmt.Errorf("upsert oidc staff: %w", err)
	}
	return s, nil
}

// Session is a signed-in browser, with its account.
type Session struct {
	TokenHash  []byte
	CSRFToken  string
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time
	Staff      Staff
}

// CreateSession stores a new session for staffID.
func CreateSession(ctx context.Context, db DB, tokenHash []byte, staffID int64, csrf string, now, expires time.Time, remoteAddr, userAgent string) error {
	_, err := db.Exec(ctx, `INSERT INTO console.sessions (token_hash, staff_id, csrf_token, created_at, last_seen_at, expires_at, remote_addr, user_agent)
		VALUES ($1, $2, $3, $4, $4, $5, $6, $7)`, tokenHash, staffID, csrf, now, expires, remoteAddr, truncate(userAgent, 256))
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

// SessionByToken returns the session with tokenHash, with its account.
func SessionByToken(ctx context.Context, db DB, tokenHash []byte) (Session, error) {
	var se Session
	st, err := scanStaff(db.QueryRow(ctx, `SELECT `+staffColumns+`, x.token_hash, x.csrf_token, x.created_at, x.last_seen_at, x.expires_at
		FROM console.sessions x JOIN console.staff s ON s.id = x.staff_id WHERE x.token_hash = $1`, tokenHash),
		&se.TokenHash, &se.CSRFToken, &se.CreatedAt, &se.LastSeenAt, &se.ExpiresAt)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Session{}, fmt.Errorf("session: %w", err)
	}
	se.Staff = st
	return se, err
}

// TouchSession records activity on a session.
func TouchSession(ctx context.Context, db DB, tokenHash []byte, now time.Time) error {
	_, err := db.Exec(ctx, `UPDATE console.sessions SET last_seen_at = $2 WHERE token_hash = $1`, tokenHash, now)
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// DeleteSession ends one session.
func DeleteSession(ctx context.Context, db DB, tokenHash []byte) error {
	if _, err := db.Exec(ctx, `DELETE FROM console.sessions WHERE token_hash = $1`, tokenHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteStaffSessions ends every session of an account and returns how
// many there were.
func DeleteStaffSessions(ctx context.Context, db DB, staffID int64) (int64, error) {
	tag, err := db.Exec(ctx, `DELETE FROM console.sessions WHERE staff_id = $1`, staffID)
	if err != nil {
		return 0, fmt.Errorf("delete sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}

// DeleteOtherSessions ends every session of an account but keep.
func DeleteOtherSessions(ctx context.Context, db DB, staffID int64, keep []byte) (int64, error) {
	tag, err := db.Exec(ctx, `DELETE FROM console.sessions WHERE staff_id = $1 AND token_hash <> $2`, staffID, keep)
	if err != nil {
		return 0, fmt.Errorf("delete other sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}

// DeleteExpiredSessions removes sessions past their absolute end or idle
// since before idleSince.
func DeleteExpiredSessions(ctx context.Context, db DB, now, idleSince time.Time) (int64, error) {
	tag, err := db.Exec(ctx, `DELETE FROM console.sessions WHERE expires_at <= $1 OR last_seen_at < $2`, now, idleSince)
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}

// AuditEntry is one audit row.
type AuditEntry struct {
	ID         int64
	At         time.Time
	Actor      string
	Action     string
	Outcome    string
	CustomerID string
	Target     string
	Reason     string
	// Before and After are JSON documents (nil: none).
	Before     json.RawMessage
	After      json.RawMessage
	RemoteAddr string
}

// Audit appends e.
func Audit(ctx context.Context, db DB, e AuditEntry) error {
	_, err := db.Exec(ctx, `INSERT INTO console.audit_log (actor, action, outcome, customer_id, target, reason, before, after, remote_addr)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		truncate(e.Actor, 320), e.Action, e.Outcome, e.CustomerID, e.Target, e.Reason, nullJSON(e.Before), nullJSON(e.After), e.RemoteAddr)
	if err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return nil
}

// AuditFilter selects audit rows; empty fields match everything.
type AuditFilter struct {
	CustomerID string
	Actor      string
	Limit      int
}

// ListAudit returns the newest audit rows that match f.
func ListAudit(ctx context.Context, db DB, f AuditFilter) ([]AuditEntry, error) {
	if f.Limit <= 0 || f.Limit > 500 {
		f.Limit = 100
	}
	rows, err := db.Query(ctx, `SELECT id, at, actor, action, outcome, customer_id, target, reason, before, after, remote_addr
		FROM console.audit_log
		WHERE ($1 = '' OR customer_id = $1) AND ($2 = '' OR lower(actor) = lower($2))
		ORDER BY id DESC LIMIT $3`, f.CustomerID, f.Actor, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		if err := rows.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Outcome, &e.CustomerID, &e.Target, &e.Reason, &e.Before, &e.After, &e.RemoteAddr); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return []byte(b)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
