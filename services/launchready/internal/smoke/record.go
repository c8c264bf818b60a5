package smoke

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

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
		err := pool.QueryRow(ctx, `SELECT status FROM support.tickets WHERE opened_by_event = $1 OR ($1 = '' AND customer_id = $2)
			ORDER BY created_at DESC LIMIT 1`, p.EventID, p.CustomerID).Scan(&status)
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
