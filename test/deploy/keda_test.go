package deploy

import (
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"testing"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// scaledObject is the part of a keda.sh/v1alpha1 ScaledObject the policy
// reads; the schema check (decodeByCRD) has already validated all of it.
type scaledObject struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		Triggers        []struct {
			Type     string            `json:"type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// consumerDurables are the durables each consumer service pulls from.
var consumerDurables = map[string][]string{
	"billing-state":  {"billing-state"},
	"crm-sync":       {"crm-sync"},
	"support-notify": {"support-notify", "support-notify-alerts"},
}

func scaledObjects(t *testing.T, overlay string) []scaledObject {
	t.Helper()
	var out []scaledObject
	for _, d := range inOverlay(t, overlay) {
		if d.doc.Meta.Kind != "ScaledObject" {
			continue
		}
		var so scaledObject
		if err := json.Unmarshal(d.doc.JSON, &so); err != nil {
			t.Fatalf("%s: %v", d.doc, err)
		}
		out = append(out, so)
	}
	return out
}

// kedaRules checks what the CRD states as CEL rules (celChecked).
func kedaRules(t *testing.T, so scaledObject) {
	t.Helper()
	maxR := int32(100) // KEDA's default
	if so.Spec.MaxReplicaCount != nil {
		maxR = *so.Spec.MaxReplicaCount
	}
	if so.Spec.MinReplicaCount != nil && *so.Spec.MinReplicaCount > maxR {
		t.Errorf("ScaledObject %s: minReplicaCount must be less than or equal to maxReplicaCount", so.Metadata.Name)
	}
}

// TestProdConsumersScaleOnJetStreamLag: every consumer Deployment of the
// prod overlay has one ScaledObject on the JetStream lag of each of its
// durables, with bounds that fit its PodDisruptionBudget (a voluntary
// disruption always leaves two replicas) and the Deployment's own replica
// count, and no other autoscaler competes for it.
func TestProdConsumersScaleOnJetStreamLag(t *testing.T) {
	o := objectsOf(t, "prod")
	sos := scaledObjects(t, "prod")
	byTarget := map[string][]scaledObject{}
	for _, so := range sos {
		kedaRules(t, so)
		ref := so.Spec.ScaleTargetRef
		if (ref.Kind != "" && ref.Kind != "Deployment") || (ref.APIVersion != "" && ref.APIVersion != "apps/v1") {
			t.Errorf("ScaledObject %s targets %s %s; want a Deployment", so.Metadata.Name, ref.APIVersion, ref.Kind)
		}
		if o.Deployments[ref.Name] == nil {
			t.Errorf("ScaledObject %s targets Deployment %q, which the overlay does not have", so.Metadata.Name, ref.Name)
		}
		byTarget[ref.Name] = append(byTarget[ref.Name], so)
	}
	for name, durables := range consumerDurables {
		got := byTarget[name]
		if len(got) != 1 {
			t.Errorf("%s: %d ScaledObjects, want 1", name, len(got))
			continue
		}
		so := got[0]
		if hpaFor(o, name) != nil {
			t.Errorf("%s: a HorizontalPodAutoscaler beside its ScaledObject; KEDA makes its own and two would fight", name)
		}
		var consumers []string
		for _, tr := range so.Spec.Triggers {
			if tr.Type != "nats-jetstream" {
				t.Errorf("%s: trigger %s; want nats-jetstream", name, tr.Type)
				continue
			}
			m := tr.Metadata
			if m["stream"] != "BILLING_EVENTS" || m["natsServerMonitoringEndpoint"] == "" || m["account"] == "" {
				t.Errorf("%s: trigger metadata %v lacks the stream, the monitoring endpoint or the account", name, m)
			}
			if n, err := strconv.Atoi(m["lagThreshold"]); err != nil || n < 1 {
				t.Errorf("%s: lagThreshold %q; want a positive number", name, m["lagThreshold"])
			}
			consumers = append(consumers, m["consumer"])
		}
		sort.Strings(consumers)
		want := slices.Clone(durables)
		sort.Strings(want)
		if !slices.Equal(consumers, want) {
			t.Errorf("%s: scales on durables %v, want %v", name, consumers, want)
		}

		if so.Spec.MinReplicaCount == nil || so.Spec.MaxReplicaCount == nil {
			t.Errorf("%s: minReplicaCount and maxReplicaCount must both be set", name)
			continue
		}
		minR, maxR := *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount
		dep := o.Deployments[name]
		pdb := pdbFor(t, o, dep.Spec.Template.Labels)
		if pdb == nil {
			t.Errorf("%s: no PodDisruptionBudget", name)
			continue
		}
		if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() < 1 {
			t.Errorf("%s: PodDisruptionBudget without a numeric maxUnavailable", name)
			continue
		}
		if left := int(minR) - pdb.Spec.MaxUnavailable.IntValue(); left < 2 {
			t.Errorf("%s: minReplicaCount %d with the PDB's maxUnavailable %d leaves %d replica(s) during a drain; want 2",
				name, minR, pdb.Spec.MaxUnavailable.IntValue(), left)
		}
		if dep.Spec.Replicas != nil && (*dep.Spec.Replicas < minR || *dep.Spec.Replicas > maxR) {
			t.Errorf("%s: the Deployment starts at %d replicas, outside the ScaledObject's %d..%d", name, *dep.Spec.Replicas, minR, maxR)
		}
	}
	if len(sos) != len(consumerDurables) {
		t.Errorf("%d ScaledObjects in prod, want one per consumer (%d)", len(sos), len(consumerDurables))
	}
}

func pdbFor(t *testing.T, o overlayObjects, podLabels map[string]string) *policyv1.PodDisruptionBudget {
	t.Helper()
	for _, p := range o.PDBs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			t.Fatalf("PDB %s: %v", p.Name, err)
		}
		if sel.Matches(labels.Set(podLabels)) {
			return p
		}
	}
	return nil
}
