package deploy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"
)

// kinds is every apiVersion/kind an overlay may render, with the type it must
// decode into. Anything else fails: no kind is skipped.
var kinds = map[string]func() any{
	"v1/Namespace":                            func() any { return &corev1.Namespace{} },
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"v1/PersistentVolumeClaim":                func() any { return &corev1.PersistentVolumeClaim{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                     func() any { return &appsv1.StatefulSet{} },
	"batch/v1/Job":                            func() any { return &batchv1.Job{} },
	"batch/v1/CronJob":                        func() any { return &batchv1.CronJob{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &ServiceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &PrometheusRule{} },
}

func jsonUnmarshalLoose(b []byte, v any) error { return json.Unmarshal(b, v) }

// decodeStrict decodes one object into its API type: unknown fields,
// duplicate fields and case-mismatched fields are errors, as they are for
// the API server's strict field validation.
func decodeStrict(d document) (any, error) {
	key := d.Meta.APIVersion + "/" + d.Meta.Kind
	if d.Meta.Kind == "Secret" {
		return nil, fmt.Errorf("%s: Secrets are never rendered from the repository; reference them by name", d)
	}
	if file, ok := crdKinds[key]; ok {
		return decodeByCRD(d, file)
	}
	newObj, ok := kinds[key]
	if !ok {
		return nil, fmt.Errorf("%s: kind %s is not known to the validator; add its API type to kinds", d, key)
	}
	obj := newObj()
	strictErrs, err := kjson.UnmarshalStrict(d.JSON, obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d, err)
	}
	if len(strictErrs) > 0 {
		msgs := make([]string, len(strictErrs))
		for i, e := range strictErrs {
			msgs[i] = e.Error()
		}
		return nil, fmt.Errorf("%s: %s", d, strings.Join(msgs, "; "))
	}
	return obj, nil
}

// decoded is every object of every overlay, decoded.
type decoded struct {
	doc document
	obj any
}

var (
	decodeOnce sync.Once
	decodedAll []decoded
	decodeErrs []error
)

// decodeAll decodes every rendered object once; every test that reads the
// objects fails while any of them does not decode.
func decodeAll(t *testing.T) []decoded {
	t.Helper()
	docs := documents(t)
	decodeOnce.Do(func() {
		for _, d := range docs {
			obj, err := decodeStrict(d)
			if err != nil {
				decodeErrs = append(decodeErrs, err)
				continue
			}
			decodedAll = append(decodedAll, decoded{doc: d, obj: obj})
		}
	})
	for _, err := range decodeErrs {
		t.Error(err)
	}
	if len(decodeErrs) > 0 {
		t.FailNow()
	}
	return decodedAll
}

// inOverlay returns the objects of one overlay.
func inOverlay(t *testing.T, overlay string) []decoded {
	t.Helper()
	var out []decoded
	for _, d := range decodeAll(t) {
		if d.doc.Overlay == overlay {
			out = append(out, d)
		}
	}
	return out
}

func TestK8sEveryObjectDecodesStrictly(t *testing.T) {
	all := decodeAll(t)
	perOverlay := map[string]map[string]int{}
	for _, d := range all {
		m := perOverlay[d.doc.Overlay]
		if m == nil {
			m = map[string]int{}
			perOverlay[d.doc.Overlay] = m
		}
		m[d.doc.Meta.Kind]++
	}
	for overlay, counts := range perOverlay {
		n := 0
		for _, c := range counts {
			n += c
		}
		t.Logf("%s: %d objects %v", overlay, n, counts)
	}
	// The inventory: each overlay must carry these kinds.
	for _, overlay := range overlays(t) {
		for _, kind := range []string{"Namespace", "Deployment", "Service", "ServiceAccount", "ConfigMap",
			"PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"} {
			if perOverlay[overlay][kind] == 0 {
				t.Errorf("%s renders no %s", overlay, kind)
			}
		}
	}
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule", "ScaledObject"} {
		if perOverlay["prod"][kind] == 0 {
			t.Errorf("prod renders no %s", kind)
		}
	}
}

// The strict decoder must really reject what the API server would: this
// guards the validator itself against silently accepting anything.
func TestK8sStrictDecoderRejects(t *testing.T) {
	cases := map[string]string{
		"unknown field":      `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"replica":2}}`,
		"wrong case":         `{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"},"spec":{"Ports":[]}}`,
		"duplicate field":    `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{},"data":{}}`,
		"unknown kind":       `{"apiVersion":"v1","kind":"Pod2","metadata":{"name":"x"}}`,
		"secret":             `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"},"stringData":{"k":"v"}}`,
		"bad quantity":       `{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"x"},"spec":{"resources":{"requests":{"storage":"lots"}}}}`,
		"crd unknown field":  `{"apiVersion":"monitoring.coreos.com/v1","kind":"ServiceMonitor","metadata":{"name":"x"},"spec":{"selector":{},"endpoint":[]}}`,
		"rule unknown field": `{"apiVersion":"monitoring.coreos.com/v1","kind":"PrometheusRule","metadata":{"name":"x"},"spec":{"groups":[{"name":"g","rules":[{"alert":"A","expr":"up","severity":"x"}]}]}}`,
		"wrong api version":  `{"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler","metadata":{"name":"x"}}`,
		"keda unknown field": `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"x"},"spec":{"scaleTargetRef":{"name":"d"},"triggers":[{"type":"cpu","metadata":{}}],"minReplica":1}}`,
		"keda no triggers":   `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"x"},"spec":{"scaleTargetRef":{"name":"d"},"triggers":[]}}`,
		"keda wrong type":    `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"x"},"spec":{"scaleTargetRef":{"name":"d"},"maxReplicaCount":"9","triggers":[{"type":"cpu","metadata":{}}]}}`,
		"keda metadata int":  `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"x"},"spec":{"scaleTargetRef":{"name":"d"},"triggers":[{"type":"nats-jetstream","metadata":{"lagThreshold":100}}]}}`,
		"keda negative":      `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"x"},"spec":{"scaleTargetRef":{"name":"d"},"minReplicaCount":-1,"triggers":[{"type":"cpu","metadata":{}}]}}`,
		"keda bad meta":      `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"x","label":{}},"spec":{"scaleTargetRef":{"name":"d"},"triggers":[{"type":"cpu","metadata":{}}]}}`,
		"keda version":       `{"apiVersion":"keda.sh/v1beta9","kind":"ScaledObject","metadata":{"name":"x"},"spec":{"scaleTargetRef":{"name":"d"},"triggers":[{"type":"cpu","metadata":{}}]}}`,
	}
	for name, j := range cases {
		t.Run(name, func(t *testing.T) {
			d := document{Overlay: "test", JSON: []byte(j)}
			if err := json.Unmarshal(d.JSON, &d.Meta); err != nil {
				t.Fatal(err)
			}
			if _, err := decodeStrict(d); err == nil {
				t.Fatalf("accepted %s", j)
			}
		})
	}
	for _, j := range []string{
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"A":"b"}}`,
		`{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"x"},"spec":{"scaleTargetRef":{"name":"d"},"minReplicaCount":2,"triggers":[{"type":"nats-jetstream","metadata":{"lagThreshold":"100"}}]}}`,
	} {
		ok := document{Overlay: "test", JSON: []byte(j)}
		_ = json.Unmarshal(ok.JSON, &ok.Meta)
		if _, err := decodeStrict(ok); err != nil {
			t.Fatalf("rejected a valid object: %v", err)
		}
	}
}

// Names, labels and namespaces are what the API server checks first.
func TestK8sMetadataIsValid(t *testing.T) {
	for _, overlay := range overlays(t) {
		var namespace string
		for _, d := range decodeAll(t) {
			if d.doc.Overlay == overlay && d.doc.Meta.Kind == "Namespace" {
				namespace = d.doc.Meta.Metadata.Name
			}
		}
		if namespace == "" {
			t.Errorf("%s: no Namespace object", overlay)
			continue
		}
		seen := map[string]bool{}
		for _, d := range decodeAll(t) {
			if d.doc.Overlay != overlay {
				continue
			}
			meta := objectMeta(t, d)
			id := d.doc.Meta.APIVersion + "/" + d.doc.Meta.Kind + "/" + meta.Name
			if seen[id] {
				t.Errorf("%s: rendered twice", d.doc)
			}
			seen[id] = true
			for _, msg := range apivalidation.NameIsDNSSubdomain(meta.Name, false) {
				t.Errorf("%s: name: %s", d.doc, msg)
			}
			if errs := metav1validation.ValidateLabels(meta.Labels, field.NewPath("metadata", "labels")); len(errs) > 0 {
				t.Errorf("%s: %v", d.doc, errs.ToAggregate())
			}
			if d.doc.Meta.Kind == "Namespace" {
				continue
			}
			if meta.Namespace != namespace {
				t.Errorf("%s: namespace %q, want the overlay's %q", d.doc, meta.Namespace, namespace)
			}
		}
	}
}

// durationRE is the Prometheus Operator's Duration pattern.
var durationRE = regexp.MustCompile(`^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`)

// The CRD schemas carry a few constraints beyond field names.
func TestK8sMonitoringObjectsFollowTheirSchema(t *testing.T) {
	for _, d := range decodeAll(t) {
		switch o := d.obj.(type) {
		case *ServiceMonitor:
			if len(o.Spec.Endpoints) == 0 {
				t.Errorf("%s: no endpoints", d.doc)
			}
			for _, ep := range o.Spec.Endpoints {
				if ep.Port == "" && ep.TargetPort == nil {
					t.Errorf("%s: endpoint names neither port nor targetPort", d.doc)
				}
				for _, v := range []string{ep.Interval, ep.ScrapeTimeout} {
					if v != "" && !durationRE.MatchString(v) {
						t.Errorf("%s: %q is not a Prometheus duration", d.doc, v)
					}
				}
				if ep.Scheme != "" && ep.Scheme != "http" && ep.Scheme != "https" {
					t.Errorf("%s: scheme %q", d.doc, ep.Scheme)
				}
			}
			if _, err := metav1.LabelSelectorAsSelector(&o.Spec.Selector); err != nil {
				t.Errorf("%s: selector: %v", d.doc, err)
			}
		case *PrometheusRule:
			names := map[string]bool{}
			for _, g := range o.Spec.Groups {
				if g.Name == "" || names[g.Name] {
					t.Errorf("%s: group name %q empty or repeated", d.doc, g.Name)
				}
				names[g.Name] = true
				if g.Interval != nil && !durationRE.MatchString(*g.Interval) {
					t.Errorf("%s: group %s interval %q", d.doc, g.Name, *g.Interval)
				}
				if len(g.Rules) == 0 {
					t.Errorf("%s: group %s has no rules", d.doc, g.Name)
				}
				for _, r := range g.Rules {
					if (r.Record == "") == (r.Alert == "") {
						t.Errorf("%s: group %s: a rule needs exactly one of record and alert (%q/%q)", d.doc, g.Name, r.Record, r.Alert)
					}
					if strings.TrimSpace(r.Expr.String()) == "" {
						t.Errorf("%s: rule %s%s has no expr", d.doc, r.Record, r.Alert)
					}
					if r.For != nil && !durationRE.MatchString(*r.For) {
						t.Errorf("%s: rule %s for %q", d.doc, r.Alert, *r.For)
					}
					if r.Record != "" && (r.For != nil || len(r.Annotations) > 0) {
						t.Errorf("%s: recording rule %s carries alert-only fields", d.doc, r.Record)
					}
				}
			}
		}
	}
}

func objectMeta(t *testing.T, d decoded) metav1.ObjectMeta {
	t.Helper()
	type hasMeta interface{ GetObjectMeta() metav1.Object }
	if m, ok := d.obj.(hasMeta); ok {
		o := m.GetObjectMeta()
		return metav1.ObjectMeta{Name: o.GetName(), Namespace: o.GetNamespace(), Labels: o.GetLabels()}
	}
	t.Fatalf("%s: no object metadata", d.doc)
	return metav1.ObjectMeta{}
}
