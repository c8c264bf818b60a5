package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/launchready/launchready/pkg/natsauth"
)

// natsChartValues is the part of the official NATS chart's values schema
// (nats-io/k8s helm/charts/nats, 1.x and later layout) that
// k8s/overlays/prod/nats/values.yaml sets. Decoding is strict, so a misspelt
// or misplaced key (which helm would silently ignore) fails here.
type natsChartValues struct {
	Config struct {
		Cluster struct {
			Enabled  bool `json:"enabled"`
			Replicas int  `json:"replicas"`
		} `json:"cluster"`
		JetStream struct {
			Enabled     bool `json:"enabled"`
			MemoryStore struct {
				Enabled bool `json:"enabled"`
			} `json:"memoryStore"`
			FileStore struct {
				Enabled bool   `json:"enabled"`
				Dir     string `json:"dir"`
				PVC     struct {
					Enabled          bool    `json:"enabled"`
					Size             string  `json:"size"`
					StorageClassName *string `json:"storageClassName,omitempty"`
				} `json:"pvc"`
			} `json:"fileStore"`
			Merge map[string]any `json:"merge"`
		} `json:"jetstream"`
		Monitor struct {
			Enabled bool `json:"enabled"`
			Port    int  `json:"port"`
		} `json:"monitor"`
	} `json:"config"`
	Container struct {
		Env   map[string]string `json:"env"`
		Merge struct {
			Resources corev1.ResourceRequirements `json:"resources"`
		} `json:"merge"`
	} `json:"container"`
	PodTemplate struct {
		TopologySpreadConstraints map[string]struct {
			MaxSkew           int    `json:"maxSkew"`
			WhenUnsatisfiable string `json:"whenUnsatisfiable"`
		} `json:"topologySpreadConstraints"`
	} `json:"podTemplate"`
	PodDisruptionBudget struct {
		Enabled bool `json:"enabled"`
	} `json:"podDisruptionBudget"`
	PromExporter struct {
		Enabled    bool `json:"enabled"`
		PodMonitor struct {
			Enabled bool `json:"enabled"`
		} `json:"podMonitor"`
	} `json:"promExporter"`
	NatsBox struct {
		Enabled bool `json:"enabled"`
	} `json:"natsBox"`
}

// configValue finds KEY=value in a rendered ConfigMap of an overlay.
func configValue(t *testing.T, overlay, configMapPrefix, key string) string {
	t.Helper()
	for _, d := range inOverlay(t, overlay) {
		if cm, ok := d.obj.(*corev1.ConfigMap); ok && strings.HasPrefix(cm.Name, configMapPrefix) {
			if v, ok := cm.Data[key]; ok {
				return v
			}
		}
	}
	t.Fatalf("%s: no ConfigMap %s* sets %s", overlay, configMapPrefix, key)
	return ""
}

// Prod's durability settings hang together: a three-node JetStream cluster
// with a file store on persistent volumes and sync_interval always, streams
// replicated three ways, and clients pointed at the release the documented
// install command creates.
func TestProdNATSClusterValues(t *testing.T) {
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "k8s", "overlays", "prod", "nats", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v natsChartValues
	if err := yaml.UnmarshalStrict(raw, &v); err != nil {
		t.Fatalf("k8s/overlays/prod/nats/values.yaml does not match the chart values this repository knows: %v", err)
	}
	if !v.Config.Cluster.Enabled || v.Config.Cluster.Replicas != 3 {
		t.Errorf("cluster enabled=%v replicas=%d, want a 3-node cluster", v.Config.Cluster.Enabled, v.Config.Cluster.Replicas)
	}
	js := v.Config.JetStream
	if !js.Enabled || !js.FileStore.Enabled || !js.FileStore.PVC.Enabled || js.FileStore.PVC.Size == "" {
		t.Errorf("JetStream file store on a PVC not enabled: %+v", js)
	}
	if js.Merge["sync_interval"] != "always" {
		t.Errorf("prod sync_interval %v, want always", js.Merge["sync_interval"])
	}

	install := regexp.MustCompile(`helm upgrade --install (\S+) nats/nats --version (\d+\.\d+\.\d+) \\\s*#\s+--namespace (\S+)`).FindStringSubmatch(string(raw))
	if install == nil {
		t.Fatal("values.yaml does not carry the pinned `helm upgrade --install ... --version X.Y.Z --namespace N` command")
	}
	release, namespace := install[1], install[3]
	wantURL := "nats://" + release + "." + namespace + ".svc.cluster.local:4222"
	if got := configValue(t, "prod", "launchready-common", "NATS_URL"); got != wantURL {
		t.Errorf("prod NATS_URL %q, want the Helm release's client Service %q", got, wantURL)
	}
	replicas, err := strconv.Atoi(configValue(t, "prod", "launchready-common", "NATS_STREAM_REPLICAS"))
	if err != nil || replicas != v.Config.Cluster.Replicas {
		t.Errorf("prod NATS_STREAM_REPLICAS %d, want one per node (%d)", replicas, v.Config.Cluster.Replicas)
	}
	if namespace != "nats" {
		t.Errorf("release namespace %q: the base NetworkPolicies allow NATS in namespace nats", namespace)
	}
}

// Dev runs one NATS node: streams cannot have more replicas than servers,
// and its sync_interval is written out because it is the trade-off.
func TestDevNATSSingleNode(t *testing.T) {
	if got := configValue(t, "dev", "launchready-common", "NATS_STREAM_REPLICAS"); got != "1" {
		t.Errorf("dev NATS_STREAM_REPLICAS %q, want 1 on a single node", got)
	}
	var conf string
	for _, d := range inOverlay(t, "dev") {
		if cm, ok := d.obj.(*corev1.ConfigMap); ok && strings.HasPrefix(cm.Name, "nats-config") {
			conf = cm.Data["nats.conf"]
		}
	}
	if !regexp.MustCompile(`(?m)^\s*sync_interval:\s*\S+`).MatchString(conf) {
		t.Errorf("dev nats.conf does not set sync_interval:\n%s", conf)
	}
	if !strings.Contains(conf, "store_dir: /data") {
		t.Errorf("dev nats.conf does not keep the store on /data")
	}
}

// The NATS server the project pins parses the dev server config and the
// prod JetStream setting, so neither fails only when a pod starts.
func TestNATSServerAcceptsConfigs(t *testing.T) {
	var files map[string]string
	for _, d := range inOverlay(t, "dev") {
		if cm, ok := d.obj.(*corev1.ConfigMap); ok && strings.HasPrefix(cm.Name, "nats-config") {
			files = cm.Data
		}
	}
	if files["nats.conf"] == "" {
		t.Fatal("dev renders no nats.conf")
	}
	// The ConfigMap is mounted as a directory: nats.conf includes the
	// files beside it.
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("POD_NAME", "nats-0")
	for _, user := range natsauth.Names() {
		t.Setenv(natsauth.PasswordVar(user), "pw-"+user)
	}
	path := filepath.Join(dir, "nats.conf")
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("dev nats.conf: %v", err)
	}
	if !opts.JetStream || opts.StoreDir != "/data" || opts.ServerName != "nats-0" || opts.HTTPPort != 8222 {
		t.Errorf("dev nats.conf: jetstream=%v store=%q name=%q http=%d", opts.JetStream, opts.StoreDir, opts.ServerName, opts.HTTPPort)
	}
	if opts.SyncAlways || opts.SyncInterval != 2*time.Minute {
		t.Errorf("dev nats.conf: sync_interval %v (always=%v), want the 2m default written out", opts.SyncInterval, opts.SyncAlways)
	}
	if len(opts.Users) != len(natsauth.Names()) || opts.NoAuthUser != "" {
		t.Errorf("dev nats.conf: %d users (no_auth_user %q), want every user of pkg/natsauth and no anonymous access", len(opts.Users), opts.NoAuthUser)
	}

	// What the chart renders from the prod values' jetstream.merge.
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "k8s", "overlays", "prod", "nats", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v natsChartValues
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	prod := fmt.Sprintf("jetstream {\n  store_dir: %s\n  sync_interval: %v\n}\n", v.Config.JetStream.FileStore.Dir, v.Config.JetStream.Merge["sync_interval"])
	path = filepath.Join(dir, "prod.conf")
	if err := os.WriteFile(path, []byte(prod), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err = server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("prod jetstream block %q: %v", prod, err)
	}
	if !opts.SyncAlways {
		t.Errorf("prod jetstream block %q does not make the server fsync every write", prod)
	}
}
