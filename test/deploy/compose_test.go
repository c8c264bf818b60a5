package deploy

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"
)

// loadCompose loads deploy/docker-compose.yml the way `make up` does
// (--env-file deploy/.env), with the documented example standing in for
// deploy/.env, and validates it against the Compose specification schema.
// Nothing from the machine's own environment leaks in.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	deploy := filepath.Join(repoRoot(t), "deploy")
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(deploy, "docker-compose.yml")},
		cli.WithWorkingDirectory(deploy),
		cli.WithEnvFiles(filepath.Join(deploy, ".env.example")),
		cli.WithDotEnv,
		cli.WithConsistency(true),
		// The one-off tools (doctor) are in the tools profile.
		cli.WithProfiles([]string{"tools"}),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("deploy/docker-compose.yml with deploy/.env.example: %v", err)
	}
	return p
}

// readEnvExample returns deploy/.env.example as ordered key/value pairs.
func readEnvExample(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "deploy", ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf(".env.example: %q is not KEY=value", line)
		}
		if _, dup := out[k]; dup {
			t.Fatalf(".env.example sets %s twice", k)
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestComposeServices(t *testing.T) {
	p := loadCompose(t)
	root := repoRoot(t)
	want := []string{"billing-state", "console", "crm-sync", "doctor", "ingress", "jaeger", "nats", "otel-collector", "postgres", "provision", "support-notify"}
	got := p.ServiceNames()
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("compose services %v, want %v", got, want)
	}

	pg := p.Services["postgres"]
	if !strings.HasPrefix(pg.Image, "postgres:16") {
		t.Errorf("postgres image %q, want postgres:16", pg.Image)
	}
	if pg.HealthCheck == nil || !strings.Contains(strings.Join(pg.HealthCheck.Test, " "), "pg_isready") {
		t.Errorf("postgres healthcheck %v does not use pg_isready", pg.HealthCheck)
	}

	nats := p.Services["nats"]
	m := regexp.MustCompile(`^nats:2\.(\d+)\.\d+`).FindStringSubmatch(nats.Image)
	if m == nil {
		t.Errorf("nats image %q is not a pinned nats:2.x.y", nats.Image)
	} else if minor, _ := strconv.Atoi(m[1]); minor < 11 {
		t.Errorf("nats image %q: JetStream settings here need 2.11 or newer", nats.Image)
	}
	cmd := " " + strings.Join(nats.Command, " ") + " "
	if !strings.Contains(cmd, " --jetstream ") && !strings.Contains(cmd, " -js ") {
		t.Errorf("nats command %v does not enable JetStream", nats.Command)
	}
	if !strings.Contains(cmd, " --store_dir /data ") && !strings.Contains(cmd, " -sd /data ") {
		t.Errorf("nats command %v does not keep the store in /data", nats.Command)
	}
	storeOnVolume := false
	for _, v := range nats.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Target == "/data" && p.Volumes[v.Source].Name != "" {
			storeOnVolume = true
		}
	}
	if !storeOnVolume {
		t.Errorf("nats /data is not a named volume: %+v", nats.Volumes)
	}
	if nats.HealthCheck == nil || !strings.Contains(strings.Join(nats.HealthCheck.Test, " "), "/healthz?js-enabled-only=true") {
		t.Errorf("nats healthcheck does not ask the JetStream health endpoint: %v", nats.HealthCheck)
	}

	if !regexp.MustCompile(`^jaegertracing/jaeger:2\.\d+\.\d+$`).MatchString(p.Services["jaeger"].Image) {
		t.Errorf("jaeger image %q is not a pinned Jaeger v2", p.Services["jaeger"].Image)
	}

	collector := p.Services["otel-collector"]
	mounted := false
	for _, v := range collector.Volumes {
		if v.Source == filepath.Join(root, "deploy", "observability", "otel-collector.yaml") {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("otel-collector does not run deploy/observability/otel-collector.yaml: %+v", collector.Volumes)
	}

	for _, s := range services {
		t.Run(s.Name, func(t *testing.T) {
			c := p.Services[s.Name]
			if c.Build == nil {
				t.Fatal("not built from the repository")
			}
			if c.Build.Context != root || c.Build.Dockerfile != "deploy/Dockerfile" {
				t.Errorf("build context %q dockerfile %q, want the repository root and deploy/Dockerfile", c.Build.Context, c.Build.Dockerfile)
			}
			if arg := c.Build.Args["SERVICE"]; arg == nil || *arg != s.Name {
				t.Errorf("build arg SERVICE = %v, want %s", arg, s.Name)
			}
			wantHC := []string{"CMD", "/app/healthcheck", "http://127.0.0.1:" + strconv.Itoa(int(s.HTTPPort)) + "/readyz"}
			if c.HealthCheck == nil || strings.Join(c.HealthCheck.Test, " ") != strings.Join(wantHC, " ") {
				t.Errorf("healthcheck %v, want %v", c.HealthCheck, wantHC)
			}
			if !c.ReadOnly || len(c.CapDrop) != 1 || c.CapDrop[0] != "ALL" {
				t.Errorf("read_only=%v cap_drop=%v: want a read-only root and no capabilities", c.ReadOnly, c.CapDrop)
			}
			if _, ok := c.DependsOn["nats"]; !ok {
				t.Error("does not wait for nats")
			}
			if s.Consumer {
				if dep, ok := c.DependsOn["postgres"]; !ok || dep.Condition != types.ServiceConditionHealthy {
					t.Error("does not wait for a healthy postgres")
				}
			}
			for _, port := range c.Ports {
				if port.HostIP != "127.0.0.1" {
					t.Errorf("port %d published on %q; publish on 127.0.0.1 only", port.Target, port.HostIP)
				}
			}
		})
	}
}

// Secrets reach compose only through deploy/.env: never a literal value in
// the compose file, and never a real-looking one in the example.
func TestComposeSecretsComeFromEnvFile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Environment map[string]any `json:"environment"`
		} `json:"services"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for name, svc := range doc.Services {
		for k, v := range svc.Environment {
			if !isSecretish(k) {
				continue
			}
			checked++
			if s, _ := v.(string); !strings.Contains(s, "${") {
				t.Errorf("compose %s sets %s inline; take it from deploy/.env", name, k)
			}
		}
	}
	if checked == 0 {
		t.Fatal("found no secret variables in compose; the check is not looking where they are")
	}
	for k, v := range readEnvExample(t) {
		if isSecretish(k) && v != "" && !strings.Contains(v, "replace_me") {
			t.Errorf(".env.example %s=%q: secrets there are empty or *replace_me placeholders", k, v)
		}
	}
}

// Every variable compose interpolates is documented in .env.example, and
// the example lists nothing compose ignores.
func TestComposeEnvExampleMatchesFile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$\{([A-Z0-9_]+)`).FindAllStringSubmatch(string(raw), -1) {
		used[m[1]] = true
	}
	example := readEnvExample(t)
	for k := range used {
		if _, ok := example[k]; !ok {
			t.Errorf("compose uses ${%s} but deploy/.env.example does not document it", k)
		}
	}
	for k := range example {
		if !used[k] {
			t.Errorf("deploy/.env.example sets %s, which compose never reads", k)
		}
	}
}

// The console's billing token is one of billing-state's STATUS_API_TOKENS,
// with the admin role its staff actions need: otherwise every customer page
// and action is refused with Unauthenticated or PermissionDenied.
func TestComposeConsoleTokenIsABillingStateToken(t *testing.T) {
	p := loadCompose(t)
	envOf := func(service, key string) string {
		t.Helper()
		s, ok := p.Services[service]
		if !ok {
			t.Fatalf("compose has no service %s", service)
		}
		v := s.Environment[key]
		if v == nil || *v == "" {
			t.Fatalf("compose %s: %s is not set", service, key)
		}
		return *v
	}
	token := envOf("console", "CONSOLE_BILLING_GRPC_TOKEN")
	tokens := envOf("billing-state", "STATUS_API_TOKENS")
	for _, entry := range strings.Split(tokens, ",") {
		// name=token:role[+role]; the token is between the first '=' and
		// the last ':'.
		_, rest, _ := strings.Cut(entry, "=")
		i := strings.LastIndex(rest, ":")
		if i < 0 || rest[:i] != token {
			continue
		}
		if roles := strings.Split(rest[i+1:], "+"); !slices.Contains(roles, "admin") {
			t.Errorf("the console's STATUS_API_TOKENS entry %q has roles %v; its staff actions need admin", strings.Split(entry, "=")[0], roles)
		}
		return
	}
	t.Errorf("CONSOLE_BILLING_GRPC_TOKEN is none of billing-state's STATUS_API_TOKENS (%d entries)", len(strings.Split(tokens, ",")))
}
