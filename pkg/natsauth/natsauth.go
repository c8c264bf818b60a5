// Package natsauth is who may do what on the NATS server: one user per
// client, each allowed the subjects its job needs and nothing else. Ingress
// may only publish events; a consumer may only read its own durable, ack
// its own messages and write its own dead letters; only the admin user may
// provision, purge or delete. The model is defined here once: it configures
// the embedded server of `launchready dev` and of the tests, and go
// generate writes it out as the server configuration of compose and
// Kubernetes, so no environment runs with permissions other than the ones
// the tests prove.
package natsauth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/resync"
)

// The users. Each service connects as its own name (bus.ConnConfigFromEnv
// defaults NATS_USER to it).
const (
	Ingress       = "ingress"
	BillingState  = "billing-state"
	CRMSync       = "crm-sync"
	SupportNotify = "support-notify"
	// Admin provisions the streams and runs `launchready dlq`.
	Admin = "admin"
	// Backfill is `launchready backfill`: it publishes events the API
	// lists, as ingress publishes those webhooks bring.
	Backfill = "backfill"
	// Reader is for read-only tools: stream and consumer state, no message.
	Reader = "reader"
	// Console is the staff console: it shows stream and consumer state and
	// dead letters, and replays or discards a dead letter on a staff
	// member's request.
	Console = "console"
)

// User is one NATS user and what it may do. Publish and Subscribe are
// allow lists: anything else is refused by the server.
type User struct {
	Name string
	// Role says in one line what the user is for.
	Role      string
	Publish   []string
	Subscribe []string
	// Respond lets the user answer a request it received (the server's
	// allow_responses: one reply to the request's reply subject, within
	// two minutes), whatever Publish says. A service that answers staff
	// resyncs needs it, and nothing more, to reach the asker's inbox.
	Respond bool
}

// Durables of each consumer service.
var durables = map[string][]string{
	BillingState:  {BillingState},
	CRMSync:       {CRMSync},
	SupportNotify: {SupportNotify, SupportNotify + "-alerts"},
}

// resyncDurables are the durables that answer staff resyncs on
// resync.Subject(durable), by user: support-notify's tickets durable
// re-sends tickets; its alerts are not re-sent.
var resyncDurables = map[string]string{
	CRMSync:       CRMSync,
	SupportNotify: SupportNotify,
}

// ResyncDurable returns the durable of user that answers resyncs, or "".
func ResyncDurable(user string) string { return resyncDurables[user] }

// resyncSubjects are every resync subject, sorted.
func resyncSubjects() []string {
	var out []string
	for _, d := range resyncDurables {
		out = append(out, resync.Subject(d))
	}
	slices.Sort(out)
	return out
}

// Durables returns the durable consumers user runs (none for a user that
// does not consume).
func Durables(user string) []string { return slices.Clone(durables[user]) }

// streams are every stream the services use.
var streams = []string{bus.StreamEvents, bus.StreamDLQ, bus.StreamStatus, bus.StreamStandby}

// Users returns the model, in a fixed order.
func Users() []User {
	inbox := func(user string) string { return bus.InboxPrefix(user) + ".>" }
	users := []User{
		{
			Name: Ingress,
			Role: "publishes verified webhooks to billing.events.> (billing.standby.> during an election); reads BILLING_EVENTS's info for /readyz; keeps the standby's leader apart",
			// A JetStream publish is a request: the PubAck comes back to
			// the user's inbox.
			Publish: []string{
				bus.EventsPrefix + ">", bus.StandbyPrefix + ">",
				api("STREAM.INFO", bus.StreamEvents), api("STREAM.INFO", bus.StreamStandby),
				api("STREAM.LEADER.STEPDOWN", bus.StreamStandby),
			},
			Subscribe: []string{inbox(Ingress)},
		},
		consumer(BillingState, "applies events to the canonical state; publishes status changes (billing.status.>) and watches them for gRPC Watch",
			[]string{bus.StatusPrefix + ">"}, []string{bus.StatusPrefix + ">"}),
		consumer(CRMSync, "mirrors events into the CRM; answers staff resyncs on billing.resync.crm-sync", nil, nil),
		consumer(SupportNotify, "opens tickets (durable support-notify) and sends alerts (durable support-notify-alerts); answers staff resyncs on billing.resync.support-notify", nil, nil),
		{
			Name: Admin,
			Role: "provisions the streams; lists, replays and purges dead letters; the only user that may purge or delete a stream or a consumer",
			Publish: append(perStream(func(s string) []string {
				return []string{
					api("STREAM.CREATE", s), api("STREAM.UPDATE", s), api("STREAM.INFO", s),
					api("STREAM.PURGE", s), api("STREAM.DELETE", s),
					api("CONSUMER.NAMES", s), api("CONSUMER.LIST", s),
					api("CONSUMER.INFO", s, "*"), api("CONSUMER.DELETE", s, "*"),
				}
			}),
				api("INFO"), api("STREAM.NAMES"), api("STREAM.LIST"),
				// Provisioning moves the standby's leader off the events
				// stream's node (bus.SeparateStandbyLeader).
				api("STREAM.LEADER.STEPDOWN", bus.StreamStandby),
				// Dead letters: read one, delete it once replayed.
				api("STREAM.MSG.GET", bus.StreamDLQ), api("STREAM.MSG.DELETE", bus.StreamDLQ),
				bus.ReplayPrefix+">",
			),
			Subscribe: []string{inbox(Admin)},
		},
		{
			Name:      Backfill,
			Role:      "publishes events listed by Stripe's API to billing.events.>, as ingress does",
			Publish:   []string{bus.EventsPrefix + ">"},
			Subscribe: []string{inbox(Backfill)},
		},
		{
			Name: Console,
			Role: "the staff console: stream and consumer state, reads dead letters, replays or deletes one at a time (no purge); asks a consumer to resync a customer (billing.resync.<durable>)",
			Publish: append(append(perStream(func(s string) []string {
				return []string{api("STREAM.INFO", s), api("CONSUMER.NAMES", s), api("CONSUMER.LIST", s), api("CONSUMER.INFO", s, "*")}
			}),
				api("INFO"), api("STREAM.NAMES"), api("STREAM.LIST"),
				// Provisioning moves the standby's leader off the events
				// stream's node (bus.SeparateStandbyLeader).
				api("STREAM.LEADER.STEPDOWN", bus.StreamStandby),
				api("STREAM.MSG.GET", bus.StreamDLQ), api("STREAM.MSG.DELETE", bus.StreamDLQ),
				bus.ReplayPrefix+">",
			), resyncSubjects()...),
			Subscribe: []string{inbox(Console)},
		},
		{
			Name: Reader,
			Role: "reads stream and consumer state (read-only commands); no message content",
			Publish: append(perStream(func(s string) []string {
				return []string{api("STREAM.INFO", s), api("CONSUMER.NAMES", s), api("CONSUMER.LIST", s), api("CONSUMER.INFO", s, "*")}
			}), api("INFO"), api("STREAM.NAMES"), api("STREAM.LIST")),
			Subscribe: []string{inbox(Reader)},
		},
	}
	for i := range users {
		slices.Sort(users[i].Publish)
		slices.Sort(users[i].Subscribe)
	}
	return users
}

// consumer is a service that runs its durables on BILLING_EVENTS: it may
// create or update only those durables, pull from them, ack, nak or term
// their messages, read their info and its dead-letter depth, and store its
// own dead letters. pub and sub add what the service does besides.
func consumer(name, role string, pub, sub []string) User {
	u := User{
		Name: name,
		Role: role,
		Publish: append([]string{
			api("STREAM.INFO", bus.StreamEvents),
			// lr_dlq_depth reads its own subject's count.
			api("STREAM.INFO", bus.StreamDLQ),
		}, pub...),
		Subscribe: append([]string{bus.InboxPrefix(name) + ".>"}, sub...),
	}
	if d := resyncDurables[name]; d != "" {
		// Its own resync subject only, and the one reply per request.
		u.Subscribe = append(u.Subscribe, resync.Subject(d))
		u.Respond = true
	}
	for _, d := range durables[name] {
		u.Publish = append(u.Publish,
			// nats.go names the durable in the subject: one filter subject
			// adds it as a further token, several put them in the body.
			api("CONSUMER.CREATE", bus.StreamEvents, d),
			api("CONSUMER.CREATE", bus.StreamEvents, d, ">"),
			api("CONSUMER.INFO", bus.StreamEvents, d),
			api("CONSUMER.MSG.NEXT", bus.StreamEvents, d),
			// Ack, Nak, InProgress and Term answer to the delivery's reply
			// subject, $JS.ACK.<stream>.<durable>.<counters>.
			"$JS.ACK."+bus.StreamEvents+"."+d+".>",
			bus.DLQSubject(d),
		)
	}
	return u
}

// api is a JetStream API subject: $JS.API.<op>[.<token>...].
func api(op string, tokens ...string) string {
	return strings.Join(append([]string{"$JS.API." + op}, tokens...), ".")
}

func perStream(f func(stream string) []string) []string {
	var out []string
	for _, s := range streams {
		out = append(out, f(s)...)
	}
	return out
}

// Lookup returns the user named name.
func Lookup(name string) (User, bool) {
	for _, u := range Users() {
		if u.Name == name {
			return u, true
		}
	}
	return User{}, false
}

// Names returns every user's name, in the model's order.
func Names() []string {
	var out []string
	for _, u := range Users() {
		out = append(out, u.Name)
	}
	return out
}

// Permissions are u's allow lists in the server's terms.
func (u User) Permissions() *server.Permissions {
	p := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: slices.Clone(u.Publish)},
		Subscribe: &server.SubjectPermission{Allow: slices.Clone(u.Subscribe)},
	}
	if u.Respond {
		p.Response = &server.ResponsePermission{MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS, Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION}
	}
	return p
}

// Login is how one user proves who it is to the server: a password, or the
// public key of its nkey pair.
type Login struct {
	User     string
	Password string
	NKey     string
}

// ServerUsers turns logins into the server's users, each with the model's
// permissions. Every login must name a user of the model.
func ServerUsers(logins []Login) ([]*server.User, []*server.NkeyUser, error) {
	var users []*server.User
	var nkeys []*server.NkeyUser
	for _, l := range logins {
		u, ok := Lookup(l.User)
		if !ok {
			return nil, nil, fmt.Errorf("natsauth: %q is not a user of the model", l.User)
		}
		switch {
		case l.NKey != "" && l.Password == "":
			nkeys = append(nkeys, &server.NkeyUser{Nkey: l.NKey, Permissions: u.Permissions()})
		case l.Password != "" && l.NKey == "":
			users = append(users, &server.User{Username: l.User, Password: l.Password, Permissions: u.Permissions()})
		default:
			return nil, nil, fmt.Errorf("natsauth: %s: want a password or an nkey", l.User)
		}
	}
	return users, nkeys, nil
}
