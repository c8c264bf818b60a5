package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Dead letter headers. The payload is the original message, byte for byte.
const (
	HeaderConsumer        = "Lr-Consumer"
	HeaderError           = "Lr-Error"
	HeaderDeliveryCount   = "Lr-Delivery-Count"
	HeaderOriginalSubject = "Lr-Original-Subject"
	HeaderOriginalSeq     = "Lr-Original-Seq"
	HeaderEventID         = "Lr-Event-Id"
	HeaderEventType       = "Lr-Event-Type"
	HeaderFailedAt        = "Lr-Failed-At"
	// HeaderReplayOf is set on a replayed message: the DLQ sequence it came from.
	HeaderReplayOf = "Lr-Replay-Of"
)

// traceHeaders are copied from the original message onto its dead letter and
// back onto its replay, so the whole story stays in one trace.
var traceHeaders = []string{"traceparent", "tracestate", "baggage"}

// ErrDeadLetterNotFound is returned for a DLQ sequence that holds no dead
// letter, including one already replayed.
var ErrDeadLetterNotFound = errors.New("dead letter not found")

// DeadLetter is one message in BILLING_DLQ.
type DeadLetter struct {
	// Seq is the sequence in BILLING_DLQ; it names the dead letter for replay.
	Seq uint64
	// Consumer is the durable that gave up.
	Consumer string
	// Subject is the subject the message had when it failed.
	Subject   string
	EventID   string
	EventType string
	// Error is the last failure, secrets stripped, at most 1 KiB.
	Error     string
	Delivered uint64
	FailedAt  time.Time
	// Data is the original payload (a BillingEvent, unless it was the
	// reason for the failure).
	Data   []byte
	Header nats.Header
}

func deadLetterFromRaw(m *jetstream.RawStreamMsg) DeadLetter {
	h := m.Header
	if h == nil {
		h = nats.Header{}
	}
	dl := DeadLetter{
		Seq:       m.Sequence,
		Consumer:  h.Get(HeaderConsumer),
		Subject:   h.Get(HeaderOriginalSubject),
		EventID:   h.Get(HeaderEventID),
		EventType: h.Get(HeaderEventType),
		Error:     h.Get(HeaderError),
		Data:      m.Data,
		Header:    h,
	}
	if dl.Consumer == "" {
		dl.Consumer = strings.TrimPrefix(m.Subject, DLQPrefix)
	}
	if dl.EventType == "" {
		dl.EventType, _ = eventTypeFromSubject(dl.Subject)
	}
	dl.Delivered, _ = strconv.ParseUint(h.Get(HeaderDeliveryCount), 10, 64)
	if t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderFailedAt)); err == nil {
		dl.FailedAt = t
	} else {
		dl.FailedAt = m.Time
	}
	return dl
}

// ListDeadLetters returns up to limit dead letters, oldest first, of one
// consumer or, when consumer is empty, of all. limit <= 0 means 100.
func ListDeadLetters(ctx context.Context, js jetstream.JetStream, consumer string, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		limit = 100
	}
	filter := DLQPrefix + ">"
	if consumer != "" {
		var err error
		if filter, err = CheckedDLQSubject(consumer); err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
	}
	st, err := js.Stream(ctx, StreamDLQ)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", wrapUnavailable(err))
	}
	var out []DeadLetter
	// Walk by "next message at or after seq on the filter": it skips the
	// holes replays leave behind without creating a consumer on the stream.
	for seq := uint64(1); len(out) < limit; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list dead letters: %w", wrapUnavailable(err))
		}
		out = append(out, deadLetterFromRaw(m))
		seq = m.Sequence + 1
	}
	return out, nil
}

// ReplayDeadLetter puts dead letter seq back on billing.replay.<consumer>.<type>,
// where only that consumer reads it, and then deletes it from the DLQ. The
// replay carries Nats-Msg-Id "replay:<seq>", so a retry after a failed
// delete does not deliver it twice. A second replay of the same seq returns
// ErrDeadLetterNotFound.
func ReplayDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetter, error) {
	st, dl, err := getDeadLetter(ctx, js, seq)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("replay dead letter %d: %w", seq, err)
	}
	// Anyone who can publish to billing.dlq.> writes these headers: check
	// them before they become a subject.
	subject, err := CheckedReplaySubject(dl.Consumer, dl.EventType)
	if err != nil {
		return dl, fmt.Errorf("replay dead letter %d: %w", seq, err)
	}

	out := &nats.Msg{Subject: subject, Data: dl.Data, Header: nats.Header{}}
	for _, k := range traceHeaders {
		if v := dl.Header.Values(k); len(v) > 0 {
			out.Header[k] = v
		}
	}
	out.Header.Set(jetstream.MsgIDHeader, "replay:"+strconv.FormatUint(seq, 10))
	out.Header.Set(HeaderReplayOf, strconv.FormatUint(seq, 10))
	if _, err := js.PublishMsg(ctx, out); err != nil {
		return dl, fmt.Errorf("replay dead letter %d: %w", seq, wrapUnavailable(err))
	}
	// A concurrent replay that won deletes it first; the publish above was
	// deduplicated.
	if err := deleteDeadLetter(ctx, st, seq); err != nil {
		return dl, fmt.Errorf("replay dead letter %d: delete after publish: %w", seq, err)
	}
	return dl, nil
}

// GetDeadLetter returns dead letter seq, or ErrDeadLetterNotFound.
func GetDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetter, error) {
	_, dl, err := getDeadLetter(ctx, js, seq)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	return dl, nil
}

// DiscardDeadLetter removes dead letter seq without replaying it and
// returns what it held. One already replayed or discarded is
// ErrDeadLetterNotFound.
func DiscardDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetter, error) {
	st, dl, err := getDeadLetter(ctx, js, seq)
	if err == nil {
		err = deleteDeadLetter(ctx, st, seq)
	}
	if err != nil {
		return dl, fmt.Errorf("discard dead letter %d: %w", seq, err)
	}
	return dl, nil
}

func getDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (jetstream.Stream, DeadLetter, error) {
	st, err := js.Stream(ctx, StreamDLQ)
	if err != nil {
		return nil, DeadLetter{}, wrapUnavailable(err)
	}
	m, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, DeadLetter{}, ErrDeadLetterNotFound
	}
	if err != nil {
		return nil, DeadLetter{}, wrapUnavailable(err)
	}
	return st, deadLetterFromRaw(m), nil
}

// deleteDeadLetter deletes seq; gone already is ErrDeadLetterNotFound.
func deleteDeadLetter(ctx context.Context, st jetstream.Stream, seq uint64) error {
	if err := st.DeleteMsg(ctx, seq); err != nil {
		if _, gerr := st.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return ErrDeadLetterNotFound
		}
		return wrapUnavailable(err)
	}
	return nil
}

// wrapUnavailable marks errors that mean the broker did not answer, so an
// operator tool can say "try again" rather than "you asked for the wrong
// thing".
func wrapUnavailable(err error) error {
	if connectionTrouble(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// PurgeDeadLetters removes the dead letters of one consumer or, when
// consumer is empty, of all, without replaying them, and returns how many
// the server removed. Only the admin user may purge.
func PurgeDeadLetters(ctx context.Context, js jetstream.JetStream, consumer string) (uint64, error) {
	// The API's own answer carries the count; jetstream's Purge drops it.
	req := struct {
		Filter string `json:"filter,omitempty"`
	}{}
	if consumer != "" {
		var err error
		if req.Filter, err = CheckedDLQSubject(consumer); err != nil {
			return 0, fmt.Errorf("purge dead letters: %w", err)
		}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return 0, fmt.Errorf("purge dead letters: %w", err)
	}
	msg, err := js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+StreamDLQ, body)
	if err != nil {
		return 0, fmt.Errorf("purge dead letters: %w", wrapUnavailable(err))
	}
	var resp struct {
		Purged uint64 `json:"purged"`
		Error  *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("purge dead letters: %w", err)
	}
	if resp.Error != nil {
		return 0, fmt.Errorf("purge dead letters: %s", resp.Error.Description)
	}
	return resp.Purged, nil
}
