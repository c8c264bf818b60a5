package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/redact"
)

// Span attributes for Postgres statements (the OTel database conventions
// that Jaeger renders).
const (
	attrDBSystem       = attribute.Key("db.system")
	attrDBName         = attribute.Key("db.name")
	attrDBStatement    = attribute.Key("db.statement")
	attrDBOperation    = attribute.Key("db.operation")
	attrDBTable        = attribute.Key("db.sql.table")
	attrDBRowsAffected = attribute.Key("db.rows_affected")
	attrDBSQLState     = attribute.Key("db.response.status_code")
	attrServerAddress  = attribute.Key("server.address")
	attrServerPort     = attribute.Key("server.port")
	attrErrorType      = attribute.Key("error.type")
)

// maxStatement bounds db.statement; the shape of a query is in its first
// lines, and spans are not the place for kilobytes of SQL.
const maxStatement = 2048

// PgxTracer returns a pgx tracer (queries, batches, COPY) that records one
// client span per statement, named by its operation and table
// ("INSERT billing.processed_events"). Statement text is recorded with
// string literals blanked and cut to 2 KiB; query parameters never are.
//
// A statement with no sampled span in its context is not traced: pool
// health checks, migrations at start-up and pollers would otherwise each
// start a trace of their own every few milliseconds, and a span under an
// unsampled parent is never exported.
func PgxTracer(tp trace.TracerProvider) pgx.QueryTracer {
	return &pgxTracer{tracer: tp.Tracer("github.com/launchready/launchready/pkg/telemetry/pgx")}
}

// PgxTracer is the package function with this provider's tracer.
func (p *Provider) PgxTracer() pgx.QueryTracer { return PgxTracer(p.TracerProvider()) }

type pgxTracer struct{ tracer trace.Tracer }

var (
	_ pgx.QueryTracer    = (*pgxTracer)(nil)
	_ pgx.BatchTracer    = (*pgxTracer)(nil)
	_ pgx.CopyFromTracer = (*pgxTracer)(nil)
)

func (t *pgxTracer) start(ctx context.Context, conn *pgx.Conn, name string, attrs ...attribute.KeyValue) context.Context {
	attrs = append(attrs, attrDBSystem.String("postgresql"))
	if conn != nil {
		if c := conn.Config(); c != nil {
			attrs = append(attrs, attrDBName.String(c.Database), attrServerAddress.String(c.Host), attrServerPort.Int(int(c.Port)))
		}
	}
	ctx, _ = t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx
}

// traced reports whether a statement gets spans: only under a sampled
// span. A statement under an unsampled one (no exporter, or a trace the
// ratio sampler left out) would make a span nothing exports, after the
// work of summarising and sanitising its SQL.
func traced(ctx context.Context) bool { return trace.SpanContextFromContext(ctx).IsSampled() }

func (t *pgxTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if !traced(ctx) {
		return ctx
	}
	op, table := sqlSummary(data.SQL)
	return t.start(ctx, conn, spanName(op, table), statementAttrs(data.SQL, op, table)...)
}

func (t *pgxTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	endSpan(trace.SpanFromContext(ctx), data.CommandTag, data.Err)
}

func (t *pgxTracer) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	if !traced(ctx) {
		return ctx
	}
	n := 0
	if data.Batch != nil {
		n = data.Batch.Len()
	}
	return t.start(ctx, conn, "BATCH", attribute.Int("db.operation.batch.size", n), attrDBOperation.String("BATCH"))
}

// TraceBatchQuery records each statement of a batch as a child of the batch
// span, from when pgx started reading its result.
func (t *pgxTracer) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	if !traced(ctx) {
		return
	}
	op, table := sqlSummary(data.SQL)
	start := data.ReadStartTime
	if start.IsZero() {
		start = time.Now()
	}
	attrs := append(statementAttrs(data.SQL, op, table), attrDBSystem.String("postgresql"))
	_, span := t.tracer.Start(ctx, spanName(op, table), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	endSpan(span, data.CommandTag, data.Err)
}

func (t *pgxTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	endSpan(trace.SpanFromContext(ctx), pgconn.CommandTag{}, data.Err)
}

func (t *pgxTracer) TraceCopyFromStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceCopyFromStartData) context.Context {
	if !traced(ctx) {
		return ctx
	}
	table := data.TableName.Sanitize()
	return t.start(ctx, conn, spanName("COPY", table), attrDBOperation.String("COPY"), attrDBTable.String(table))
}

func (t *pgxTracer) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceCopyFromEndData) {
	endSpan(trace.SpanFromContext(ctx), data.CommandTag, data.Err)
}

func endSpan(span trace.Span, tag pgconn.CommandTag, err error) {
	if !span.IsRecording() {
		span.End()
		return
	}
	if tag.String() != "" {
		span.SetAttributes(attrDBRowsAffected.Int64(tag.RowsAffected()))
	}
	if err != nil {
		span.SetStatus(codes.Error, describeDBError(err))
		span.SetAttributes(attrErrorType.String(errorType(err)))
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			span.SetAttributes(attrDBSQLState.String(pgErr.Code))
		}
	}
	span.End()
}

// describeDBError keeps error text out of spans unless it is known to be
// safe: pgx encode errors quote the argument, and server messages can quote
// input ("invalid input syntax for type uuid: ...").
func describeDBError(err error) string {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		return "postgres error SQLSTATE " + pgErr.Code
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err.Error()
	}
	return "query failed"
}

func errorType(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		err = u
	}
	return fmt.Sprintf("%T", err)
}

func spanName(op, table string) string {
	if table == "" {
		return op
	}
	return op + " " + table
}

func statementAttrs(sql, op, table string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{attrDBStatement.String(SanitizeSQL(sql)), attrDBOperation.String(op)}
	if table != "" {
		attrs = append(attrs, attrDBTable.String(table))
	}
	return attrs
}

// SanitizeSQL blanks string literals ('...', E'...', $tag$...$tag$) and cuts
// the statement to 2 KiB. Parameters ($1, $2) are placeholders in the text
// and stay placeholders.
func SanitizeSQL(sql string) string {
	var b strings.Builder
	b.Grow(min(len(sql), maxStatement))
	i := 0
	for ; i < len(sql) && b.Len() < maxStatement; i++ {
		c := sql[i]
		switch {
		case c == '\'':
			j := i + 1
			for j < len(sql) {
				if sql[j] == '\'' {
					if j+1 < len(sql) && sql[j+1] == '\'' {
						j += 2
						continue
					}
					break
				}
				if sql[j] == '\\' && j+1 < len(sql) {
					j++
				}
				j++
			}
			b.WriteString("'?'")
			i = j
		case c == '$' && i+1 < len(sql) && !isDigit(sql[i+1]):
			tagEnd := strings.IndexByte(sql[i+1:], '$')
			if tagEnd < 0 || !isIdent(sql[i+1:i+1+tagEnd]) {
				b.WriteByte(c)
				continue
			}
			tag := sql[i : i+tagEnd+2]
			b.WriteString("$$?$$")
			if end := strings.Index(sql[i+len(tag):], tag); end < 0 {
				i = len(sql)
			} else {
				i += len(tag) + end + len(tag) - 1
			}
		default:
			b.WriteByte(c)
		}
	}
	s := b.String()
	if i >= len(sql) && len(s) <= maxStatement {
		return s
	}
	// Cut on a rune boundary so the attribute stays valid UTF-8.
	return redact.CutUTF8(s, maxStatement) + "…"
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isIdent(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// sqlSummary returns the statement's operation (SELECT, INSERT, ...) and,
// when it is cheap to find, its main table. For WITH statements the
// operation is that of the main statement after the CTEs.
func sqlSummary(sql string) (op, table string) {
	toks := topLevelWords(sql, 64)
	if len(toks) == 0 {
		return "SQL", ""
	}
	op = strings.ToUpper(toks[0])
	start := 0
	if op == "WITH" {
		for i, w := range toks {
			switch strings.ToUpper(w) {
			case "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE":
				op, start = strings.ToUpper(w), i
			default:
				continue
			}
			break
		}
	}
	after := func(kw string) string {
		for i := start; i+1 < len(toks); i++ {
			if strings.EqualFold(toks[i], kw) {
				return tableName(toks[i+1])
			}
		}
		return ""
	}
	switch op {
	case "SELECT", "DELETE":
		table = after("FROM")
	case "INSERT", "MERGE":
		table = after("INTO")
	case "UPDATE":
		if start+1 < len(toks) {
			table = tableName(toks[start+1])
			if strings.EqualFold(table, "ONLY") && start+2 < len(toks) {
				table = tableName(toks[start+2])
			}
		}
	}
	if len(op) > 16 || !isIdent(op) {
		op = "SQL"
	}
	return op, table
}

// topLevelWords splits sql into words outside parentheses, comments and
// literals, up to max words.
func topLevelWords(sql string, max int) []string {
	var out []string
	depth := 0
	for i := 0; i < len(sql) && len(out) < max; {
		c := sql[i]
		switch {
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			if j := strings.IndexByte(sql[i:], '\n'); j >= 0 {
				i += j + 1
			} else {
				i = len(sql)
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			if j := strings.Index(sql[i+2:], "*/"); j >= 0 {
				i += j + 4
			} else {
				i = len(sql)
			}
		case c == '\'':
			j := i + 1
			for j < len(sql) && sql[j] != '\'' {
				j++
			}
			i = j + 1
		case c == '(':
			depth++
			i++
		case c == ')':
			depth--
			i++
		case isWordByte(c):
			j := i
			for j < len(sql) && isWordByte(sql[j]) {
				j++
			}
			if depth == 0 {
				out = append(out, sql[i:j])
			}
			i = j
		default:
			i++
		}
	}
	return out
}

func isWordByte(c byte) bool {
	return c == '_' || c == '.' || c == '"' || isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func tableName(w string) string {
	w = strings.ReplaceAll(w, `"`, "")
	if w == "" || len(w) > 64 || isDigit(w[0]) {
		return ""
	}
	return w
}

// SQLSpanName is the span name PgxTracer gives a statement.
func SQLSpanName(sql string) string { return spanName(sqlSummary(sql)) }
