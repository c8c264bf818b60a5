package telemetry_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/pkg/telemetry"
)

func TestPgxTracer(t *testing.T) {
	p, exp := setup(t, telemetry.Config{})
	ctx := context.Background()
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t), pg.WithTracer(telemetry.PgxTracer(p.TracerProvider())))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	// Outside any trace (start-up, pollers): nothing is recorded.
	if _, err := pool.Exec(ctx, "CREATE TABLE billing_customers (id text PRIMARY KEY, email text)"); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans for a statement outside a trace", n)
	}

	const secretArg = "someone@example.com"
	tctx, root := p.Tracer("t").Start(ctx, "handle")
	if _, err := pool.Exec(tctx, "INSERT INTO billing_customers (id, email) VALUES ($1, $2)", "cus_1", secretArg); err != nil {
		t.Fatal(err)
	}
	var id string
	if err := pool.QueryRow(tctx, "SELECT id FROM billing_customers WHERE email = $1 AND id <> 'cus_literal'", secretArg).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(tctx, "INSERT INTO billing_customers (id) VALUES ($1)", "cus_1"); err == nil {
		t.Fatal("duplicate insert succeeded")
	}
	b := &pgx.Batch{}
	b.Queue("UPDATE billing_customers SET email = $1 WHERE id = $2", secretArg, "cus_1")
	b.Queue("DELETE FROM billing_customers WHERE id = $1", "cus_2")
	if err := pool.SendBatch(tctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	root.End()

	byName := map[string]int{}
	spans := exp.GetSpans()
	for i, s := range spans {
		if s.Name == "handle" {
			continue
		}
		byName[s.Name] = i
		a := attrs(s.Attributes)
		if a["db.system"] != "postgresql" || s.SpanKind != trace.SpanKindClient {
			t.Errorf("%s: db.system %q kind %v", s.Name, a["db.system"], s.SpanKind)
		}
		for k, v := range a {
			if strings.Contains(v, secretArg) || strings.Contains(v, "cus_literal") {
				t.Errorf("%s: attribute %s = %q leaks a parameter or literal", s.Name, k, v)
			}
		}
		if s.SpanContext.TraceID() != root.SpanContext().TraceID() {
			t.Errorf("%s: not in the caller's trace", s.Name)
		}
	}
	for _, want := range []string{"INSERT billing_customers", "SELECT billing_customers", "BATCH", "UPDATE billing_customers", "DELETE billing_customers"} {
		if _, ok := byName[want]; !ok {
			t.Errorf("no span %q among %v", want, byName)
		}
	}
	sel := spans[byName["SELECT billing_customers"]]
	if got := attrs(sel.Attributes)["db.statement"]; got != "SELECT id FROM billing_customers WHERE email = $1 AND id <> '?'" {
		t.Errorf("db.statement = %q", got)
	}
	batch := spans[byName["BATCH"]]
	if upd := spans[byName["UPDATE billing_customers"]]; upd.Parent.SpanID() != batch.SpanContext.SpanID() {
		t.Error("batch statement is not a child of the batch span")
	}
	var failed int
	for _, s := range spans {
		if s.Status.Code == codes.Error {
			failed++
			if s.Status.Description != "postgres error SQLSTATE 23505" || attrs(s.Attributes)["db.response.status_code"] != "23505" {
				t.Errorf("failed insert: status %q attrs %v", s.Status.Description, attrs(s.Attributes))
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d failed spans, want the duplicate insert only", failed)
	}
}

// A statement under an unsampled span (no exporter, or a trace the ratio
// left out) gets no span, even from a sampler that would record one: it
// would be an orphan nobody exports, and summarising and sanitising its SQL
// is work on every statement.
func TestPgxTracerSkipsStatementsUnderAnUnsampledSpan(t *testing.T) {
	p, exp := setup(t, telemetry.Config{Sampler: telemetry.SamplerAlwaysOn})
	ctx := context.Background()
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t), pg.WithTracer(telemetry.PgxTracer(p.TracerProvider())))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	unsampled := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1},
	}))
	if _, err := pool.Exec(unsampled, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if err := pool.SendBatch(unsampled, &pgx.Batch{QueuedQueries: []*pgx.QueuedQuery{{SQL: "SELECT 2"}}}).Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans for statements under an unsampled span", n)
	}
	sampled, root := p.Tracer("t").Start(ctx, "handle")
	if _, err := pool.Exec(sampled, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	root.End()
	if n := len(exp.GetSpans()); n != 2 {
		t.Fatalf("%d spans under a sampled span, want the statement's and the root", n)
	}
}

func TestSQLSummaryAndSanitize(t *testing.T) {
	for _, c := range []struct{ sql, name string }{
		{"SELECT 1", "SELECT"},
		{"  -- comment\n select * from billing.customers c join x on true", "SELECT billing.customers"},
		{`INSERT INTO "billing"."outbox" (a) VALUES ($1)`, "INSERT billing.outbox"},
		{"UPDATE ONLY crm.contacts SET a=1", "UPDATE crm.contacts"},
		{"DELETE FROM support.tickets WHERE id=$1", "DELETE support.tickets"},
		{"WITH x AS (SELECT * FROM a) INSERT INTO billing.audit SELECT * FROM x", "INSERT billing.audit"},
		{"SELECT (SELECT max(id) FROM a) FROM billing.events", "SELECT billing.events"},
		{"/* hint */ begin", "BEGIN"},
		{"", "SQL"},
	} {
		if got := telemetry.SQLSpanName(c.sql); got != c.name {
			t.Errorf("SQLSpanName(%q) = %q, want %q", c.sql, got, c.name)
		}
	}
	for in, want := range map[string]string{
		"SELECT 'a''b', E'x\\'y', $1 FROM t": "SELECT '?', E'?', $1 FROM t",
		"DO $fn$ secret $fn$; SELECT $$x$$":  "DO $$?$$; SELECT $$?$$",
	} {
		if got := telemetry.SanitizeSQL(in); got != want {
			t.Errorf("SanitizeSQL(%q) = %q, want %q", in, got, want)
		}
	}
	long := "SELECT " + strings.Repeat("é", 3000)
	got := telemetry.SanitizeSQL(long)
	if len(got) > 2048+len("…") || !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "SELECT é") {
		t.Errorf("long statement not cut cleanly: len %d suffix %q", len(got), got[len(got)-8:])
	}
}
