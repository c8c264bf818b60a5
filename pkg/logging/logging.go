// Package logging builds the slog logger every service uses, in one of two
// formats: JSON, one object per line with the service name and the trace and
// span id of the context, for machines (containers, files, pipes); or short
// text lines a person can read on a terminal. LOG_LEVEL and LOG_FORMAT
// choose; Setup reads them once per process and hands each service its
// logger, so `launchready dev` and a single service's command log alike.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/term"
)

// Variables Setup reads.
const (
	LevelVar  = "LOG_LEVEL"
	FormatVar = "LOG_FORMAT"
)

// Format is how log records are written.
type Format string

// Formats. Auto is text on a terminal and JSON anywhere else.
const (
	Auto Format = ""
	JSON Format = "json"
	Text Format = "text"
)

// ParseFormat reads LOG_FORMAT: "json", "text", or empty for Auto.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case Auto, JSON, Text:
		return f, nil
	}
	return Auto, fmt.Errorf("%s: %q is neither json nor text", FormatVar, s)
}

// Setup is one process's logging: where lines go, at what level, in which
// format. Every logger it makes shares one lock around the writer, so lines
// from services running in one process never interleave.
type Setup struct {
	w      io.Writer
	level  slog.Level
	format Format
	mu     *sync.Mutex
}

// NewSetup resolves Auto against w: text when w is a terminal, else JSON.
func NewSetup(w io.Writer, level slog.Level, f Format) *Setup {
	if f == Auto {
		f = JSON
		if IsTerminal(w) {
			f = Text
		}
	}
	return &Setup{w: w, level: level, format: f, mu: &sync.Mutex{}}
}

// FromEnv reads LOG_LEVEL and LOG_FORMAT. An unknown format is an error; an
// unknown level is info.
func FromEnv(w io.Writer, getenv func(string) string) (*Setup, error) {
	f, err := ParseFormat(getenv(FormatVar))
	return NewSetup(w, ParseLevel(getenv(LevelVar)), f), err
}

// Format is the resolved format, JSON or Text.
func (s *Setup) Format() Format { return s.format }

// Logger returns the logger of one service.
func (s *Setup) Logger(service string) *slog.Logger {
	var h slog.Handler
	if s.format == Text {
		h = newTextHandler(s.w, s.mu, s.level)
	} else {
		h = slog.NewJSONHandler(&lockedWriter{w: s.w, mu: s.mu}, &slog.HandlerOptions{Level: s.level})
	}
	return slog.New(&traceHandler{Handler: h}).With("service", service)
}

// New returns a JSON logger for service, writing to w at level.
func New(w io.Writer, service string, level slog.Level) *slog.Logger {
	return NewSetup(w, level, JSON).Logger(service)
}

// ParseLevel reads "debug", "info", "warn" or "error"; anything else is info.
func ParseLevel(s string) slog.Level {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Discard is a logger that writes nothing, for tests that do not read logs.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// traceHandler adds trace_id and span_id from the record's context.
type traceHandler struct{ slog.Handler }

func (h *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String(TraceIDKey, sc.TraceID().String()), slog.String(SpanIDKey, sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h *traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &traceHandler{Handler: h.Handler.WithAttrs(as)}
}

func (h *traceHandler) WithGroup(name string) slog.Handler {
	return &traceHandler{Handler: h.Handler.WithGroup(name)}
}

// Keys of the trace context on JSON lines.
const (
	TraceIDKey = "trace_id"
	SpanIDKey  = "span_id"
)

// lockedWriter serialises the writes of several handlers on one writer.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
