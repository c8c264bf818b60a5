package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/services/provision"
)

// Every NATS server configuration in the repository is the one generated
// from pkg/natsauth's model: compose's, the dev overlay's and the prod Helm
// values cannot drift from the permissions the tests prove.
func TestNATSAuthConfigsAreGenerated(t *testing.T) {
	for path, want := range natsauth.GeneratedFiles() {
		got, err := os.ReadFile(filepath.Join(repoRoot(t), path))
		if err != nil {
			t.Errorf("%s: %v (run go generate ./pkg/natsauth)", path, err)
			continue
		}
		if string(got) != want {
			t.Errorf("%s differs from pkg/natsauth's model: run go generate ./pkg/natsauth", path)
		}
	}
}

// secretRefs are the Secrets a container reads, by variable.
func secretRefs(c corev1.Container) map[string]*corev1.SecretKeySelector {
	out := map[string]*corev1.SecretKeySelector{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			out[e.Name] = e.ValueFrom.SecretKeyRef
		}
	}
	return out
}

// Each service connects to NATS as its own user, with the password from
// its own Secret, never inline and never another's; the provisioning Job
// as admin from its own Secret; and the NATS server alone holds every
// user's password, from the Secret nats-auth.
func TestK8sNATSCredentials(t *testing.T) {
	for _, overlay := range overlays(t) {
		o := objectsOf(t, overlay)
		for _, w := range o.Workloads {
			for _, c := range w.Template.Spec.Containers {
				for name, ref := range secretRefs(c) {
					own := w.Name + "-secrets"
					if w.Name == "nats" {
						own = natsauth.SecretName
					}
					if ref.Name != own {
						t.Errorf("%s/%s %s reads %s from Secret %s; each workload reads only its own (%s)", overlay, w.Kind, w.Name, name, ref.Name, own)
					}
				}
				for _, e := range c.Env {
					if e.Name == "NATS_USER" && e.Value != w.Name && !(w.Name == "provision" && e.Value == natsauth.Admin) && !(w.Name == "doctor" && e.Value == natsauth.Reader) {
						t.Errorf("%s/%s: NATS_USER %q is another client's user", overlay, w.Name, e.Value)
					}
				}
			}
		}
		for _, s := range services {
			c := containerNamed(o.Deployments[s.Name].Spec.Template.Spec, s.Name)
			ref := secretRefs(*c)["NATS_PASSWORD"]
			if ref == nil || isTrue(ref.Optional) {
				t.Errorf("%s/%s: NATS_PASSWORD is not a required key of its own Secret: %+v", overlay, s.Name, ref)
			}
		}

		job := o.Jobs["provision"]
		if job == nil {
			t.Fatalf("%s: no provisioning Job", overlay)
		}
		c := containerNamed(job.Spec.Template.Spec, "provision")
		if c == nil || !strings.HasSuffix(strings.Split(c.Image, ":")[0], "launchready/provision") {
			t.Fatalf("%s: the Job does not run the provision image: %+v", overlay, c)
		}
		if ref := secretRefs(*c)["NATS_PASSWORD"]; ref == nil || ref.Name != "provision-secrets" {
			t.Errorf("%s: the Job's NATS_PASSWORD: %+v", overlay, ref)
		}
		env := map[string]string{}
		for _, e := range c.Env {
			switch {
			case e.ValueFrom == nil:
				env[e.Name] = e.Value
			case e.ValueFrom.SecretKeyRef != nil:
				env[e.Name] = secretSample(t, e.ValueFrom.SecretKeyRef.Key)
			case e.ValueFrom.ConfigMapKeyRef != nil:
				cm := o.ConfigMaps[e.ValueFrom.ConfigMapKeyRef.Name]
				v, ok := cm.Data[e.ValueFrom.ConfigMapKeyRef.Key]
				if !ok {
					t.Errorf("%s: the Job reads %s, which ConfigMap %s lacks", overlay, e.ValueFrom.ConfigMapKeyRef.Key, cm.Name)
				}
				env[e.Name] = v
			}
		}
		checkProvisionEnv(t, overlay+" Job", env)
		if env["NATS_USER"] != natsauth.Admin {
			t.Errorf("%s: the Job connects as %q, want admin", overlay, env["NATS_USER"])
		}
		if job.Spec.TTLSecondsAfterFinished == nil || job.Spec.BackoffLimit == nil {
			t.Errorf("%s: the Job needs ttlSecondsAfterFinished (so the next apply runs it again) and a backoffLimit", overlay)
		}
	}

	// The dev overlay runs its own NATS: every password from nats-auth.
	o := objectsOf(t, "dev")
	nats := containerNamed(o.Workloads["nats"].Template.Spec, "nats")
	refs := secretRefs(*nats)
	for _, user := range natsauth.Names() {
		v := natsauth.PasswordVar(user)
		if ref := refs[v]; ref == nil || ref.Name != natsauth.SecretName || isTrue(ref.Optional) {
			t.Errorf("dev nats: %s is not a required key of Secret %s: %+v", v, natsauth.SecretName, ref)
		}
	}
}

// checkProvisionEnv runs the provisioning step's own configuration code on
// env: it must accept it and read every variable set.
func checkProvisionEnv(t *testing.T, where string, env map[string]string) {
	t.Helper()
	read := map[string]bool{}
	if _, err := provision.ConfigFromEnv(func(k string) string {
		read[k] = true
		return env[k]
	}); err != nil {
		t.Errorf("%s: provision rejects its environment: %v", where, err)
	}
	for k := range env {
		if !read[k] && k != "LOG_LEVEL" && !runtimeVars[k] {
			t.Errorf("%s sets %s, which provision never reads", where, k)
		}
	}
	for _, k := range []string{"NATS_URL", "NATS_PASSWORD", "NATS_STREAM_REPLICAS", "NATS_DUPLICATE_WINDOW", "NATS_MAX_AGE"} {
		if _, ok := env[k]; !ok {
			t.Errorf("%s does not set %s: the streams would get defaults the services do not use", where, k)
		}
	}
}

// The Job reaches NATS and nothing else.
func TestK8sProvisionNetwork(t *testing.T) {
	for _, overlay := range overlays(t) {
		o := objectsOf(t, overlay)
		w := o.Workloads["provision"]
		job := peer{Namespace: o.Namespace, PodLabels: w.Template.Labels, Pod: &w.Template.Spec}
		nats := peer{Namespace: "nats", PodLabels: map[string]string{"app.kubernetes.io/name": "nats"}}
		if n, ok := o.Workloads["nats"]; ok {
			nats = peer{Namespace: o.Namespace, PodLabels: n.Template.Labels, Pod: &n.Template.Spec}
		}
		tcp := corev1.ProtocolTCP
		for _, f := range []struct {
			dst  peer
			port int32
			want bool
		}{
			{nats, 4222, true},
			{peer{IP: "198.51.100.7"}, 443, false},
			{peer{IP: "10.12.0.5"}, 5432, false},
		} {
			if got := allows(t, o.NetPols, o.Namespace, job, f.dst, tcp, f.port); got != f.want {
				t.Errorf("%s: provision -> %s:%d allowed=%v, want %v", overlay, f.dst, f.port, got, f.want)
			}
		}
	}
}

// Compose runs the same configuration: the server reads the generated
// auth.conf and every password; each service gets its own; the services
// start after the one-off provisioning has succeeded.
func TestComposeNATSAuth(t *testing.T) {
	p := loadCompose(t)
	root := repoRoot(t)
	nats := p.Services["nats"]
	if !strings.Contains(" "+strings.Join(nats.Command, " ")+" ", " --config /etc/nats/auth.conf ") {
		t.Errorf("nats command %v does not read /etc/nats/auth.conf", nats.Command)
	}
	mounted := false
	for _, v := range nats.Volumes {
		if v.Target == "/etc/nats/auth.conf" && v.Source == filepath.Join(root, "deploy", "nats", "auth.conf") && v.ReadOnly {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("nats does not mount deploy/nats/auth.conf read-only: %+v", nats.Volumes)
	}
	// The example's placeholders are distinct per user: a value equal to a
	// user's placeholder came from that user's variable.
	example := readEnvExample(t)
	interpolates := func(service, variable, from string) bool {
		v := p.Services[service].Environment[variable]
		return v != nil && example[from] != "" && *v == example[from]
	}
	for _, user := range natsauth.Names() {
		if v := natsauth.PasswordVar(user); !interpolates("nats", v, v) {
			t.Errorf("compose nats does not take %s from deploy/.env", v)
		}
	}
	for _, s := range services {
		if !interpolates(s.Name, "NATS_PASSWORD", natsauth.PasswordVar(s.Name)) {
			t.Errorf("compose %s: NATS_PASSWORD is not its own user's %s", s.Name, natsauth.PasswordVar(s.Name))
		}
		if dep, ok := p.Services[s.Name].DependsOn["provision"]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("compose %s does not wait for provisioning to succeed", s.Name)
		}
	}
	prov := p.Services["provision"]
	if dep, ok := prov.DependsOn["nats"]; !ok || dep.Condition != types.ServiceConditionHealthy {
		t.Error("compose provision does not wait for a healthy nats")
	}
	if arg := prov.Build.Args["SERVICE"]; arg == nil || *arg != "provision" || !prov.ReadOnly {
		t.Errorf("compose provision: build SERVICE %v read_only %v", arg, prov.ReadOnly)
	}
	if !interpolates("provision", "NATS_PASSWORD", natsauth.PasswordVar(natsauth.Admin)) {
		t.Error("compose provision does not use the admin's password")
	}
	env := map[string]string{}
	for k, v := range prov.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	checkProvisionEnv(t, "compose provision", env)
	if env["NATS_USER"] != natsauth.Admin {
		t.Errorf("compose provision connects as %q", env["NATS_USER"])
	}
}

// The prod Helm values add the generated authorization block, and the
// server the chart renders from them accepts it: the block, written as the
// chart writes config.merge (JSON, "<< $VAR >>" unquoted), gives exactly the
// model's users, and every password comes from the Secret nats-auth.
func TestProdNATSAuthValues(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "k8s", "overlays", "prod", "nats")
	values, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`--values k8s/overlays/prod/nats/values\.yaml \\\s*#\s+--values k8s/overlays/prod/nats/auth-values\.yaml`).Match(values) {
		t.Error("the install command in values.yaml does not add auth-values.yaml")
	}
	raw, err := os.ReadFile(filepath.Join(dir, "auth-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Config struct {
			Merge map[string]any `json:"merge"`
		} `json:"config"`
		Container struct {
			Env map[string]struct {
				ValueFrom corev1.EnvVarSource `json:"valueFrom"`
			} `json:"env"`
		} `json:"container"`
	}
	if err := yaml.UnmarshalStrict(raw, &v); err != nil {
		t.Fatalf("auth-values.yaml: %v", err)
	}
	for _, user := range natsauth.Names() {
		name := natsauth.PasswordVar(user)
		ref := v.Container.Env[name].ValueFrom.SecretKeyRef
		if ref == nil || ref.Name != natsauth.SecretName || ref.Key != name {
			t.Errorf("container.env %s: %+v, want Secret %s key %s", name, ref, natsauth.SecretName, name)
		}
	}
	if len(v.Container.Env) != len(natsauth.Names()) || len(v.Config.Merge) != 1 {
		t.Errorf("auth-values.yaml sets more than the authorization block and its passwords")
	}

	// As the chart's toPrettyRawJson: no HTML escaping of < and >.
	var merged strings.Builder
	enc := json.NewEncoder(&merged)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v.Config.Merge); err != nil {
		t.Fatal(err)
	}
	conf := regexp.MustCompile(`"<<\s+(.*)\s+>>"`).ReplaceAllString(merged.String(), "${1}")
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var logins []natsauth.Login
	for _, user := range natsauth.Names() {
		pw := "pw-" + user
		t.Setenv(natsauth.PasswordVar(user), pw)
		logins = append(logins, natsauth.Login{User: user, Password: pw})
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("the configuration the chart renders from auth-values.yaml: %v\n%s", err, conf)
	}
	want, _, err := natsauth.ServerUsers(logins)
	if err != nil {
		t.Fatal(err)
	}
	if got, exp := describeUsers(opts.Users), describeUsers(want); got != exp {
		t.Errorf("prod users:\n%s\nwant the model's:\n%s", got, exp)
	}
}

func describeUsers(users []*server.User) string {
	var lines []string
	for _, u := range users {
		lines = append(lines, fmt.Sprintf("%s %s pub=%v sub=%v", u.Username, u.Password, u.Permissions.Publish.Allow, u.Permissions.Subscribe.Allow))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// The env drift check knows NATS_PASSWORD as a secret, and a compose
// password placeholder is never a real one.
func TestNATSPasswordsAreSecrets(t *testing.T) {
	if !secretish.MatchString("NATS_PASSWORD") {
		t.Fatal("NATS_PASSWORD is not treated as a secret")
	}
	for k, v := range readEnvExample(t) {
		if strings.HasPrefix(k, "NATS_PASSWORD_") && !strings.Contains(v, "replace_me") {
			t.Errorf(".env.example %s is not a placeholder", k)
		}
	}
}
