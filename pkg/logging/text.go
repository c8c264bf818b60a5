package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// textHandler writes one short line per record, for a person at a terminal:
//
//	15:04:05.123 billing-state   event applied  evt_1Nx cus_Q2 outcome=applied delivery=1
//
// time of day, service, level when it is not info, message, then the event
// and customer ids bare (their evt_ and cus_ prefixes say what they are),
// then the other attributes as key=value. Trace and span ids stay on the
// JSON lines only: a terminal reader follows an event by its id.
type textHandler struct {
	w       io.Writer
	mu      *sync.Mutex
	level   slog.Leveler
	service string
	attrs   []textAttr
	prefix  string // open groups, "a.b."
}

type textAttr struct {
	key string
	val slog.Value
}

// Keys the text format shows first and bare.
const (
	eventIDKey    = "event_id"
	customerIDKey = "customer_id"
	serviceKey    = "service"
)

// serviceWidth fits the longest service name, support-notify.
const serviceWidth = 14

func newTextHandler(w io.Writer, mu *sync.Mutex, level slog.Leveler) *textHandler {
	return &textHandler{w: w, mu: mu, level: level}
}

func (h *textHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *textHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append([]textAttr(nil), h.attrs...)
	for _, a := range as {
		if h.prefix == "" && a.Key == serviceKey {
			c.service = a.Value.Resolve().String()
			continue
		}
		c.attrs = flatten(c.attrs, h.prefix, a)
	}
	return &c
}

func (h *textHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.prefix = h.prefix + name + "."
	return &c
}

func (h *textHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := append([]textAttr(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		attrs = flatten(attrs, h.prefix, a)
		return true
	})
	var b bytes.Buffer
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	b.WriteString(t.Format("15:04:05.000"))
	b.WriteByte(' ')
	b.WriteString(h.service)
	for i := len(h.service); i < serviceWidth; i++ {
		b.WriteByte(' ')
	}
	b.WriteByte(' ')
	if r.Level != slog.LevelInfo {
		b.WriteString(r.Level.String())
		b.WriteByte(' ')
	}
	b.WriteString(r.Message)
	for _, key := range []string{eventIDKey, customerIDKey} {
		for _, a := range attrs {
			if a.key == key && a.val.String() != "" {
				b.WriteByte(' ')
				b.WriteString(quoteIfNeeded(a.val.String()))
			}
		}
	}
	for _, a := range attrs {
		switch a.key {
		case eventIDKey, customerIDKey, TraceIDKey, SpanIDKey:
			continue
		}
		b.WriteByte(' ')
		b.WriteString(a.key)
		b.WriteByte('=')
		b.WriteString(textValue(a.val))
	}
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(b.Bytes())
	return err
}

// flatten appends a, with groups spelled out as dotted keys.
func flatten(out []textAttr, prefix string, a slog.Attr) []textAttr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			out = flatten(out, p, g)
		}
		return out
	}
	if a.Key == "" {
		return out
	}
	return append(out, textAttr{key: prefix + a.Key, val: v})
}

// textValue writes structured values (a document, a list) as compact JSON
// and everything else as plain, quoted when needed.
func textValue(v slog.Value) string {
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().Format(time.RFC3339)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return quoteIfNeeded(x.Error())
		case fmt.Stringer:
			return quoteIfNeeded(x.String())
		}
		if b, err := json.Marshal(v.Any()); err == nil {
			return string(b)
		}
		return quoteIfNeeded(fmt.Sprint(v.Any()))
	}
	return quoteIfNeeded(v.String())
}

// quoteIfNeeded quotes values a reader could not tell apart otherwise:
// empty, or holding spaces, quotes, = or control characters.
func quoteIfNeeded(s string) string {
	if s == "" {
		return `""`
	}
	if strings.IndexFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || r == '"' || r == '=' || !unicode.IsPrint(r)
	}) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
