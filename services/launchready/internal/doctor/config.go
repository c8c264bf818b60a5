package doctor

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/launchready/launchready/pkg/config"
	billingstate "github.com/launchready/launchready/services/billing-state"
	crmsync "github.com/launchready/launchready/services/crm-sync"
	"github.com/launchready/launchready/services/ingress"
	supportnotify "github.com/launchready/launchready/services/support-notify"
)

// serviceConfigs parse each service's configuration exactly as the service
// does at start: what fails here fails the service.
var serviceConfigs = []struct {
	name  string
	parse func(config.Getenv) error
}{
	{"ingress", func(g config.Getenv) error { _, err := ingress.ConfigFromEnv(g); return err }},
	{"billing-state", func(g config.Getenv) error { _, err := billingstate.ConfigFromEnv(g); return err }},
	{"crm-sync", func(g config.Getenv) error { _, err := crmsync.ConfigFromEnv(g); return err }},
	{"support-notify", func(g config.Getenv) error { _, err := supportnotify.ConfigFromEnv(g); return err }},
}

// deploymentRequired are settings every service has a default for on a
// developer's machine, and that a deployment must set: left out, a service
// talks to a local Postgres or NATS that is not there, or accepts events of
// both modes.
var deploymentRequired = []struct{ name, why string }{
	{"DATABASE_URL", "the services would use a local Postgres"},
	{"NATS_URL", "the services would use a local NATS"},
	{"STRIPE_WEBHOOK_SECRET", "ingress cannot verify a single webhook"},
	{"STATUS_API_TOKENS", "every gRPC call would be refused"},
	{"STRIPE_LIVEMODE", "ingress would take live and test events alike"},
	{"PUBLIC_WEBHOOK_URL", "nothing can check the route Stripe posts to"},
}

// placeholder matches the values example files and tutorials ship with.
var placeholder = regexp.MustCompile(`(?i)replace[_-]?me|change[_-]?me|your[_-](key|secret|token|password)|<[a-z_ -]+>|\bexample\.(com|org|net)\b|\.\.\.|x{6,}|\btodo\b`)

// DOCTOR_SERVICES narrows the services whose settings are parsed (a k8s
// Job may carry only some of them); the default is all four.
func (d *Doctor) checkConfig(context.Context) ([]Check, error) {
	only := map[string]bool{}
	for _, s := range d.env.List("DOCTOR_SERVICES") {
		only[s] = true
	}
	var out []Check
	for _, s := range serviceConfigs {
		if len(only) > 0 && !only[s.name] {
			continue
		}
		name := "config/" + s.name
		if err := s.parse(d.getenv); err != nil {
			out = append(out, fail(name, oneLine(err.Error()), "set the settings named, as the README's configuration table describes"))
			continue
		}
		out = append(out, pass(name, "every setting parses as the service reads it"))
	}
	var missing []string
	for _, r := range deploymentRequired {
		if d.env.Lookup(r.name) == "" {
			missing = append(missing, fmt.Sprintf("%s (%s)", r.name, r.why))
		}
	}
	if len(missing) > 0 {
		out = append(out, fail("config/required", "not set: "+strings.Join(missing, "; "), "set each in the deployment's environment (compose .env, k8s config and secrets)"))
	} else {
		out = append(out, pass("config/required", "every setting a deployment must give is set"))
	}
	var held []string
	for name, value := range d.environ() {
		if placeholder.MatchString(value) {
			held = append(held, name)
		}
	}
	sort.Strings(held)
	if len(held) > 0 {
		out = append(out, fail("config/placeholders", "still an example value: "+strings.Join(held, ", "),
			"replace each with the real value (deploy/.env.example ships placeholders only)"))
	} else {
		out = append(out, pass("config/placeholders", "no setting holds an example value"))
	}
	return out, nil
}

// environ is the environment's settings by name: only names of the shape
// the services read (upper case), so a shell's own variables stay out.
func (d *Doctor) environ() map[string]string {
	out := map[string]string{}
	for _, kv := range d.Environ() {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !settingName.MatchString(name) || ignoredEnv[name] {
			continue
		}
		out[name] = value
	}
	return out
}

var settingName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// ignoredEnv are a process's own variables, never a service setting.
var ignoredEnv = map[string]bool{"PATH": true, "HOME": true, "PWD": true, "OLDPWD": true, "SHELL": true, "TERM": true, "USER": true, "HOSTNAME": true, "LS_COLORS": true, "_": true}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
