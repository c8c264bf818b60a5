package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"
)

// The prod overlay carries copies of deploy/observability's files (kustomize
// cannot read outside an overlay); they must stay identical to the source.
func TestProdObservabilityMatchesSource(t *testing.T) {
	root := repoRoot(t)
	read := func(rel string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hint := " (run scripts/deploy-sync-observability.sh)"

	var src struct {
		Groups []any `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(read("deploy/observability/prometheus-rules.yaml"), &src); err != nil {
		t.Fatalf("deploy/observability/prometheus-rules.yaml: %v", err)
	}
	if len(src.Groups) == 0 {
		t.Fatal("deploy/observability/prometheus-rules.yaml has no rule groups")
	}
	var rule struct {
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(read("k8s/overlays/prod/prometheusrule.yaml"), &rule); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(src.Groups, rule.Spec.Groups) {
		a, _ := json.Marshal(src.Groups)
		b, _ := json.Marshal(rule.Spec.Groups)
		t.Errorf("PrometheusRule groups differ from deploy/observability/prometheus-rules.yaml%s\nsource: %.300s\nprod:   %.300s", hint, a, b)
	}

	collector := read("deploy/observability/otel-collector.yaml")
	copied := read("k8s/overlays/prod/otel-collector-config.yaml")
	if !bytes.HasSuffix(copied, collector) {
		t.Errorf("k8s/overlays/prod/otel-collector-config.yaml differs from deploy/observability/otel-collector.yaml%s", hint)
	}
}

// The rendered PrometheusRule carries every alert of the source file.
func TestProdPrometheusRuleRendered(t *testing.T) {
	var alerts int
	for _, d := range inOverlay(t, "prod") {
		if r, ok := d.obj.(*PrometheusRule); ok {
			for _, g := range r.Spec.Groups {
				for _, rule := range g.Rules {
					if rule.Alert != "" {
						alerts++
					}
				}
			}
		}
	}
	if alerts == 0 {
		t.Fatal("prod renders no alerting rules")
	}
}
