package deploy

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/launchready/launchready/pkg/config"
	lrservice "github.com/launchready/launchready/pkg/service"
	billingstate "github.com/launchready/launchready/services/billing-state"
	"github.com/launchready/launchready/services/console"
	crmsync "github.com/launchready/launchready/services/crm-sync"
	"github.com/launchready/launchready/services/ingress"
	supportnotify "github.com/launchready/launchready/services/support-notify"
)

// loaders run each service's own configuration code: the single place that
// decides which variables a service reads and which values it accepts.
var loaders = map[string]func(config.Getenv) error{
	"ingress":        func(g config.Getenv) error { _, err := ingress.ConfigFromEnv(g); return err },
	"billing-state":  func(g config.Getenv) error { _, err := billingstate.ConfigFromEnv(g); return err },
	"crm-sync":       func(g config.Getenv) error { _, err := crmsync.ConfigFromEnv(g); return err },
	"support-notify": func(g config.Getenv) error { _, err := supportnotify.ConfigFromEnv(g); return err },
	"console":        func(g config.Getenv) error { _, err := console.ConfigFromEnv(g); return err },
}

// runtimeVars are read by the Go runtime, not by a service's configuration;
// a deployment may set them for any service.
var runtimeVars = map[string]bool{"GOMAXPROCS": true, "GOMEMLIMIT": true, "GOGC": true, "GODEBUG": true, "TZ": true}

// deploymentCritical are variables with defaults that only fit a developer's
// machine (127.0.0.1, no tracing, no token): every deployment must set them,
// for each service that reads them. Without the CONSOLE_* ones the console
// starts, but shows no billing state and no service health.
var deploymentCritical = []string{"NATS_URL", "NATS_PASSWORD", "DATABASE_URL", "OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT", "LOG_LEVEL",
	"CONSOLE_BILLING_GRPC_ADDR", "CONSOLE_BILLING_GRPC_TOKEN", "CONSOLE_OPS_TARGETS"}

// providerVariants switch each optional integration on, so that variables a
// service reads only for one provider are recorded too.
func providerVariants(name string) []map[string]string {
	switch name {
	case "crm-sync":
		return []map[string]string{
			{"CRM_PROVIDER": "hubspot", "HUBSPOT_TOKEN": secretSample(nil, "HUBSPOT_TOKEN")},
			{"CRM_PROVIDER": "webhook", "CRM_WEBHOOK_URL": secretSample(nil, "CRM_WEBHOOK_URL"), "CRM_WEBHOOK_SECRET": secretSample(nil, "CRM_WEBHOOK_SECRET")},
		}
	case "support-notify":
		return []map[string]string{{
			"SUPPORT_PROVIDER": "zendesk", "ALERT_PROVIDER": "slack",
			"ZENDESK_SUBDOMAIN": secretSample(nil, "ZENDESK_SUBDOMAIN"), "ZENDESK_EMAIL": secretSample(nil, "ZENDESK_EMAIL"),
			"ZENDESK_API_TOKEN": secretSample(nil, "ZENDESK_API_TOKEN"), "SLACK_WEBHOOK_URL": secretSample(nil, "SLACK_WEBHOOK_URL"),
		}}
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// secretSample is a well-formed stand-in for a value that lives in a Secret,
// generated per run. An unknown key fails the test: add a sample for it.
func secretSample(t *testing.T, key string) string {
	switch key {
	case "STRIPE_WEBHOOK_SECRET":
		return "whsec_" + randomHex(16)
	case "DATABASE_URL":
		return "postgres://svc:" + randomHex(8) + "@db.invalid:5432/launchready?sslmode=require"
	case "STATUS_API_TOKENS":
		return "mobile=" + randomHex(16) + ":read,ops=" + randomHex(16) + ":read+admin"
	case "STRIPE_API_KEY":
		return "sk_test_" + randomHex(16)
	case "STATUS_LINK_SECRETS":
		return randomHex(20) + "," + randomHex(20)
	case "CONSOLE_BILLING_GRPC_TOKEN":
		return randomHex(24)
	case "HUBSPOT_TOKEN", "CRM_WEBHOOK_SECRET", "ZENDESK_API_TOKEN", "NATS_PASSWORD", "SMTP_PASSWORD", "TWILIO_AUTH_TOKEN":
		return randomHex(16)
	case "CRM_WEBHOOK_URL":
		return "https://crm.invalid/hooks/" + randomHex(4)
	case "SLACK_WEBHOOK_URL":
		return "https://hooks.slack.invalid/services/" + randomHex(8)
	case "ZENDESK_SUBDOMAIN":
		return "acme"
	case "ZENDESK_EMAIL":
		return "support@acme.invalid"
	}
	if t != nil {
		t.Fatalf("no sample value for Secret key %s: add one to secretSample", key)
	}
	panic("no sample for " + key)
}

// envReadsInSource finds os.Getenv("X") and os.LookupEnv("X") in a service's
// main and root package: variables read outside ConfigFromEnv, and, for a
// main that calls service.Main, those Main reads (LOG_LEVEL).
func envReadsInSource(t *testing.T, service string) map[string]bool {
	t.Helper()
	root := filepath.Join(repoRoot(t), "services", service)
	out := map[string]bool{}
	for _, dir := range []string{root, filepath.Join(root, "cmd", service)} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				pkg, ok := sel.X.(*ast.Ident)
				if ok && pkg.Name == "service" && sel.Sel.Name == "Main" {
					for _, v := range lrservice.Env {
						out[v] = true
					}
					return true
				}
				if !ok || pkg.Name != "os" || (sel.Sel.Name != "Getenv" && sel.Sel.Name != "LookupEnv") {
					return true
				}
				if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if v, err := strconv.Unquote(lit.Value); err == nil {
						out[v] = true
					}
				}
				return true
			})
		}
	}
	return out
}

// deployedEnv is what one deployment gives one service.
type deployedEnv struct {
	Where    string
	Values   map[string]string // every variable set, with the value it gets
	Optional map[string]bool   // set from an optional Secret key: may be absent
}

// reads records every variable a service's configuration code asks for,
// across the given environments and every provider variant.
func reads(t *testing.T, service string, envs []deployedEnv) map[string]bool {
	t.Helper()
	seen := envReadsInSource(t, service)
	record := func(env map[string]string) {
		_ = loaders[service](func(k string) string {
			seen[k] = true
			return env[k]
		})
	}
	for _, e := range envs {
		record(e.Values)
		for _, v := range providerVariants(service) {
			merged := map[string]string{}
			for k, val := range e.Values {
				merged[k] = val
			}
			for k, val := range v {
				merged[k] = val
			}
			record(merged)
		}
	}
	if len(seen) < 5 {
		t.Fatalf("%s: recorded only %v; the loader is not reading through getenv", service, seen)
	}
	return seen
}

// driftProblems compares one deployment's environment with what the service
// reads: every variable set must be read, and the service's configuration
// must accept the environment as deployed, with optional Secret keys present
// or absent.
func driftProblems(service string, read map[string]bool, env deployedEnv) []string {
	var problems []string
	var names []string
	for k := range env.Values {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !read[k] && !runtimeVars[k] {
			problems = append(problems, fmt.Sprintf("%s sets %s, which %s never reads (renamed or misspelt?)", env.Where, k, service))
		}
	}
	for _, k := range deploymentCritical {
		if read[k] {
			if _, ok := env.Values[k]; !ok {
				problems = append(problems, fmt.Sprintf("%s does not set %s for %s; its default only fits a developer machine", env.Where, k, service))
			} else if env.Optional[k] {
				problems = append(problems, fmt.Sprintf("%s takes %s for %s from an optional Secret key", env.Where, k, service))
			}
		}
	}
	withOptional := env.Values
	withoutOptional := map[string]string{}
	for k, v := range env.Values {
		if !env.Optional[k] {
			withoutOptional[k] = v
		}
	}
	for _, variant := range []struct {
		what string
		env  map[string]string
	}{{"as deployed", withOptional}, {"without its optional Secret keys", withoutOptional}} {
		if err := loaders[service](config.Map(variant.env)); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s rejects its environment %s: %v", env.Where, service, variant.what, err))
		}
	}
	return problems
}

// composeEnvs returns each service's environment under docker compose, with
// files the container sees mapped to the host files mounted there.
func composeEnvs(t *testing.T) map[string]deployedEnv {
	t.Helper()
	p := loadCompose(t)
	out := map[string]deployedEnv{}
	for _, s := range services {
		c, ok := p.Services[s.Name]
		if !ok {
			t.Fatalf("compose has no service %s", s.Name)
		}
		e := deployedEnv{Where: "deploy/docker-compose.yml", Values: map[string]string{}, Optional: map[string]bool{}}
		for k, v := range c.Environment {
			if v == nil {
				t.Errorf("compose %s: %s has no value", s.Name, k)
				continue
			}
			val := *v
			for _, vol := range c.Volumes {
				if vol.Target == val && vol.Source != "" {
					val = vol.Source
				}
			}
			e.Values[k] = val
		}
		out[s.Name] = e
	}
	return out
}

// k8sEnvs returns each service's environment in one rendered overlay.
// ConfigMap-mounted files the variables point at are written to dir.
func k8sEnvs(t *testing.T, overlay, dir string) map[string]deployedEnv {
	t.Helper()
	o := objectsOf(t, overlay)
	out := map[string]deployedEnv{}
	for _, s := range services {
		dep := o.Deployments[s.Name]
		if dep == nil {
			t.Fatalf("%s has no Deployment %s", overlay, s.Name)
		}
		c := containerNamed(dep.Spec.Template.Spec, s.Name)
		if c == nil {
			t.Fatalf("%s: Deployment %s has no container %s", overlay, s.Name, s.Name)
		}
		e := deployedEnv{Where: "k8s/overlays/" + overlay, Values: map[string]string{}, Optional: map[string]bool{}}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef == nil {
				t.Fatalf("%s %s: envFrom other than a ConfigMap", overlay, s.Name)
			}
			cm := o.ConfigMaps[ef.ConfigMapRef.Name]
			if cm == nil {
				t.Fatalf("%s %s: ConfigMap %s missing", overlay, s.Name, ef.ConfigMapRef.Name)
			}
			for k, v := range cm.Data {
				e.Values[ef.Prefix+k] = v
			}
		}
		for _, ev := range c.Env {
			switch {
			case ev.ValueFrom == nil:
				e.Values[ev.Name] = ev.Value
			case ev.ValueFrom.SecretKeyRef != nil:
				e.Values[ev.Name] = secretSample(t, ev.ValueFrom.SecretKeyRef.Key)
				e.Optional[ev.Name] = isTrue(ev.ValueFrom.SecretKeyRef.Optional)
			case ev.ValueFrom.ConfigMapKeyRef != nil:
				e.Values[ev.Name] = o.ConfigMaps[ev.ValueFrom.ConfigMapKeyRef.Name].Data[ev.ValueFrom.ConfigMapKeyRef.Key]
			default:
				e.Values[ev.Name] = "from-the-downward-api"
			}
		}
		for k, v := range e.Values {
			if host := mountedFile(t, o, dep, c, v, dir); host != "" {
				e.Values[k] = host
			}
		}
		// The overlay's Secret holds a key of the mode it runs in:
		// STRIPE_LIVEMODE refuses one of the other mode at start.
		if key, ok := strings.CutPrefix(e.Values["STRIPE_API_KEY"], "sk_test_"); ok && e.Values["STRIPE_LIVEMODE"] == "live" {
			e.Values["STRIPE_API_KEY"] = "sk_live_" + key
		}
		out[s.Name] = e
	}
	return out
}

// mountedFile returns a host copy of the ConfigMap file a container sees at
// path, or "" when path is not inside a ConfigMap volume.
func mountedFile(t *testing.T, o overlayObjects, dep *appsv1.Deployment, c *corev1.Container, path, dir string) string {
	t.Helper()
	if !strings.HasPrefix(path, "/") {
		return ""
	}
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range dep.Spec.Template.Spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			cm := o.ConfigMaps[v.ConfigMap.Name]
			data, ok := cm.Data[rel]
			if !ok {
				t.Errorf("%s: %s points at %s, but ConfigMap %s has no key %s", o.Name, dep.Name, path, cm.Name, rel)
				return ""
			}
			host := filepath.Join(dir, o.Name+"-"+dep.Name+"-"+rel)
			if err := os.WriteFile(host, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			return host
		}
	}
	return ""
}

// The variables compose and every overlay set are the ones the services
// read, and each service accepts its environment as deployed. A variable
// renamed in a service (or in a deployment file) fails here.
func TestEnvDrift(t *testing.T) {
	dir := t.TempDir()
	envs := map[string][]deployedEnv{}
	for name, e := range composeEnvs(t) {
		envs[name] = append(envs[name], e)
	}
	for _, overlay := range overlays(t) {
		for name, e := range k8sEnvs(t, overlay, dir) {
			envs[name] = append(envs[name], e)
		}
	}
	for _, s := range services {
		t.Run(s.Name, func(t *testing.T) {
			read := reads(t, s.Name, envs[s.Name])
			for _, e := range envs[s.Name] {
				for _, p := range driftProblems(s.Name, read, e) {
					t.Error(p)
				}
				t.Logf("%s: %d variables set", e.Where, len(e.Values))
			}
		})
	}
}

// The check itself must catch a rename on either side.
func TestEnvDriftDetectsRenames(t *testing.T) {
	compose := composeEnvs(t)["ingress"]
	read := reads(t, "ingress", []deployedEnv{compose})

	renamed := deployedEnv{Where: "renamed deployment", Values: map[string]string{}, Optional: map[string]bool{}}
	for k, v := range compose.Values {
		renamed.Values[k] = v
	}
	renamed.Values["STRIPE_WEBHOOK_SECRETS"] = renamed.Values["STRIPE_WEBHOOK_SECRET"]
	delete(renamed.Values, "STRIPE_WEBHOOK_SECRET")
	problems := strings.Join(driftProblems("ingress", read, renamed), "\n")
	if !strings.Contains(problems, "sets STRIPE_WEBHOOK_SECRETS, which ingress never reads") {
		t.Errorf("a variable the service does not read went unnoticed:\n%s", problems)
	}
	if !strings.Contains(problems, "rejects its environment") {
		t.Errorf("a required variable that is no longer set went unnoticed:\n%s", problems)
	}

	// A service that renamed NATS_URL: the deployment's NATS_URL is now unread.
	readRenamed := map[string]bool{}
	for k := range read {
		readRenamed[k] = k != "NATS_URL"
	}
	problems = strings.Join(driftProblems("ingress", readRenamed, compose), "\n")
	if !strings.Contains(problems, "sets NATS_URL, which ingress never reads") {
		t.Errorf("a variable the service stopped reading went unnoticed:\n%s", problems)
	}

	// A required key from an optional Secret reference.
	optional := deployedEnv{Where: "optional secret", Values: compose.Values, Optional: map[string]bool{"STRIPE_WEBHOOK_SECRET": true}}
	if p := strings.Join(driftProblems("ingress", read, optional), "\n"); !strings.Contains(p, "without its optional Secret keys") {
		t.Errorf("a required variable from an optional Secret key went unnoticed:\n%s", p)
	}
}
