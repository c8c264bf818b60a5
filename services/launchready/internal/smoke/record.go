package smoke

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// schemaSQL is the readiness schema: the smoke results the console shows
// and support-notify exports, and the doctor's reports. Written only by
// the launchready command.
const schemaSQL = `
CREATE SCHEMA IF NOT EXISTS readiness;
CREATE TABLE IF NOT EXISTS readiness.smoke_results (
    run_id      text        NOT NULL,
    channel     text        NOT NULL,
    ok          boolean     NOT NULL,
    latency_ms  bigint      NOT NULL,
    detail      text        NOT NULL DEFAULT '',
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, channel)
);
CREATE INDEX IF NOT EXISTS smoke_results_last ON readiness.smoke_results (channel, finished_at DESC);
CREATE TABLE IF NOT EXISTS readiness.doctor_reports (
    id         bigserial   PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    report     jsonb       NOT NULL
);`

// EnsureSchema creates the readiness tables when missing. Two runs racing
// on the first creation are serialised by an advisory lock.
func EnsureSchema(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("readiness schema: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('launchready:readiness', 7))`); err != nil {
		return fmt.Errorf("readiness schema: %w", err)
	}
	if _, err := tx.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("readiness schema: %w", err)
	}
	return tx.Commit(ctx)
}

// Record stores a run's results.
func Record(ctx context.Context, pool *pgxpool.Pool, runID string, results []Result, finished time.Time) error {
	for _, r := range results {
		if _, err := pool.Exec(ctx, `INSERT INTO readiness.smoke_results (run_id, channel, ok, latency_ms, detail, finished_at)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, channel) DO UPDATE SET ok = EXCLUDED.ok,
			latency_ms = EXCLUDED.latency_ms, detail = EXCLUDED.detail, finished_at = EXCLUDED.finished_at`,
			runID, r.Channel, r.OK, r.Latency.Milliseconds(), r.Detail, finished); err != nil {
			return fmt.Errorf("record smoke result %s: %w", r.Channel, err)
		}
	}
	return nil
}

// cleanup solves the smoke ticket (through a signed success for the same
// invoice, which support-notify resolves like any other) and deletes the
// smoke customer's CRM records. A channel whose cleanup fails is reported
// failed: a smoke run that leaves litter behind is not a pass.
func cleanup(ctx context.Context, cfg Config, pool *pgxpool.Pool, p *Payment, results []Result) {
	for i := range results {
		r := &results[i]
		if !r.OK {
			continue
		}
		switch r.Channel {
		case ChannelTicket:
			if err := solveTicket(ctx, cfg, pool, p); err != nil {
				r.OK, r.Detail = false, r.Detail+"; not solved: "+err.Error()
			} else {
				r.Detail += ", solved"
			}
		case ChannelCRM:
			n, err := deleteCRMRecords(ctx, cfg, pool, p)
			if err != nil {
				r.OK, r.Detail = false, r.Detail+"; not cleaned up: "+err.Error()
			} else {
				r.Detail += fmt.Sprintf(", %d record(s) deleted", n)
			}
		}
	}
}

func solveTicket(ctx context.Context, cfg Config, pool *pgxpool.Pool, p *Payment) error {
	if p.resolve == nil {
		return fmt.Errorf("no way to resolve")
	}
	if err := p.resolve(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	tick := time.NewTicker(cfg.Poll)
	defer tick.Stop()
	for {
		var status string
		err := pool.QueryRow(ctx, `SELECT status FROM support.tickets WHERE opened_by_event = $1`, p.EventID).Scan(&status)
		if err == nil && status == "solved" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still %s after %s", status, cfg.Timeout)
		case <-tick.C:
		}
	}
}

// deleteCRMRecords archives the smoke customer's contact and deals in
// HubSpot. The crm-sync rows stay: they name a smoke customer that no run
// uses again.
func deleteCRMRecords(ctx context.Context, cfg Config, pool *pgxpool.Pool, p *Payment) (int, error) {
	if cfg.CRMProvider != "hubspot" || cfg.HubSpotKey == "" {
		return 0, fmt.Errorf("CRM_PROVIDER=%s: only HubSpot records can be deleted (needs HUBSPOT_TOKEN)", cfg.CRMProvider)
	}
	rows, err := pool.Query(ctx, `SELECT 'contacts', crm_id FROM crm.contacts WHERE provider = 'hubspot' AND customer_id = $1 AND crm_id <> ''
		UNION ALL SELECT 'deals', crm_id FROM crm.deals WHERE provider = 'hubspot' AND customer_id = $1 AND crm_id <> ''`, p.CustomerID)
	if err != nil {
		return 0, err
	}
	type rec struct{ kind, id string }
	var recs []rec
	for rows.Next() {
		var r rec
		if err := rows.Scan(&r.kind, &r.id); err != nil {
			rows.Close()
			return 0, err
		}
		recs = append(recs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, r := range recs {
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, cfg.HubSpotBase+"/crm/v3/objects/"+r.kind+"/"+r.id, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+cfg.HubSpotKey.Reveal())
		resp, err := cfg.HTTP.Do(req)
		if err != nil {
			return 0, fmt.Errorf("delete hubspot %s %s: %w", r.kind, r.id, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
			return 0, fmt.Errorf("delete hubspot %s %s: %d", r.kind, r.id, resp.StatusCode)
		}
	}
	return len(recs), nil
}
