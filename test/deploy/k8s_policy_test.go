package deploy

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// service is one of the Launch Ready services as deployed.
type service struct {
	Name        string
	HTTPPort    int32 // /healthz, /readyz, /metrics
	WebhookPort int32 // the public port, ingress only
	GRPCPort    int32
	ConsolePort int32 // the staff console's port, console only
	StatusPort  int32 // the hosted status page's port, billing-state only
	Consumer    bool
}

var services = []service{
	{Name: "ingress", HTTPPort: 8084, WebhookPort: 8080},
	{Name: "billing-state", HTTPPort: 8081, GRPCPort: 9090, StatusPort: 8095, Consumer: true},
	{Name: "crm-sync", HTTPPort: 8082, Consumer: true},
	{Name: "support-notify", HTTPPort: 8083, Consumer: true},
	{Name: "console", HTTPPort: 8085, ConsolePort: 8090},
}

// secretish names values that must only ever come from a Secret.
var secretish = regexp.MustCompile(`SECRET|TOKEN|PASSWORD|API_KEY|DATABASE_URL|WEBHOOK_URL`)

// isSecretish: a vendor's webhook URL (Slack, the CRM) is a credential in
// itself; PUBLIC_WEBHOOK_URL, the address Stripe posts to, is public by
// definition.
func isSecretish(name string) bool {
	return secretish.MatchString(name) && name != "PUBLIC_WEBHOOK_URL"
}

// workload is a pod template with where it came from.
type workload struct {
	Kind, Name string
	Template   corev1.PodTemplateSpec
	Selector   *metav1.LabelSelector
}

type overlayObjects struct {
	Name            string
	Namespace       string
	Workloads       map[string]workload // by name
	Deployments     map[string]*appsv1.Deployment
	Jobs            map[string]*batchv1.Job
	Services        map[string]*corev1.Service
	ServiceAccounts map[string]*corev1.ServiceAccount
	ConfigMaps      map[string]*corev1.ConfigMap
	PDBs            []*policyv1.PodDisruptionBudget
	HPAs            []*autoscalingv2.HorizontalPodAutoscaler
	NetPols         []*networkingv1.NetworkPolicy
}

func objectsOf(t *testing.T, overlay string) overlayObjects {
	t.Helper()
	o := overlayObjects{
		Name:            overlay,
		Workloads:       map[string]workload{},
		Deployments:     map[string]*appsv1.Deployment{},
		Jobs:            map[string]*batchv1.Job{},
		Services:        map[string]*corev1.Service{},
		ServiceAccounts: map[string]*corev1.ServiceAccount{},
		ConfigMaps:      map[string]*corev1.ConfigMap{},
	}
	for _, d := range inOverlay(t, overlay) {
		switch v := d.obj.(type) {
		case *corev1.Namespace:
			o.Namespace = v.Name
		case *appsv1.Deployment:
			o.Deployments[v.Name] = v
			o.Workloads[v.Name] = workload{Kind: "Deployment", Name: v.Name, Template: v.Spec.Template, Selector: v.Spec.Selector}
		case *appsv1.StatefulSet:
			o.Workloads[v.Name] = workload{Kind: "StatefulSet", Name: v.Name, Template: v.Spec.Template, Selector: v.Spec.Selector}
		case *batchv1.Job:
			// A Job's pods carry no selector of their own: they are matched
			// by their labels, as the policies match them.
			o.Jobs[v.Name] = v
			o.Workloads[v.Name] = workload{Kind: "Job", Name: v.Name, Template: v.Spec.Template,
				Selector: &metav1.LabelSelector{MatchLabels: v.Spec.Template.Labels}}
		case *batchv1.CronJob:
			// Its Jobs' pods are matched by their labels, like a Job's.
			tmpl := v.Spec.JobTemplate.Spec.Template
			o.Workloads[v.Name] = workload{Kind: "CronJob", Name: v.Name, Template: tmpl,
				Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels}}
		case *corev1.Service:
			o.Services[v.Name] = v
		case *corev1.ServiceAccount:
			o.ServiceAccounts[v.Name] = v
		case *corev1.ConfigMap:
			o.ConfigMaps[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			o.PDBs = append(o.PDBs, v)
		case *autoscalingv2.HorizontalPodAutoscaler:
			o.HPAs = append(o.HPAs, v)
		case *networkingv1.NetworkPolicy:
			o.NetPols = append(o.NetPols, v)
		}
	}
	if o.Namespace == "" {
		t.Fatalf("%s: no Namespace", overlay)
	}
	return o
}

func containerNamed(pod corev1.PodSpec, name string) *corev1.Container {
	for i := range pod.Containers {
		if pod.Containers[i].Name == name {
			return &pod.Containers[i]
		}
	}
	return nil
}

func TestK8sServiceDeployments(t *testing.T) {
	for _, overlay := range overlays(t) {
		o := objectsOf(t, overlay)
		for _, s := range services {
			t.Run(overlay+"/"+s.Name, func(t *testing.T) {
				dep := o.Deployments[s.Name]
				if dep == nil {
					t.Fatalf("no Deployment %s", s.Name)
				}
				pod := dep.Spec.Template.Spec
				c := containerNamed(pod, s.Name)
				if c == nil {
					t.Fatalf("Deployment %s has no container %s", s.Name, s.Name)
				}
				repo, tag, ok := strings.Cut(c.Image, ":")
				if !ok || !strings.HasSuffix(repo, "launchready/"+s.Name) || tag == "" {
					t.Errorf("image %q is not launchready/%s:<tag>", c.Image, s.Name)
				}
				if overlay == "prod" && (tag == "latest" || tag == "dev") {
					t.Errorf("prod image %q must be pinned to a release", c.Image)
				}
				wantPorts := map[string]int32{"http": s.HTTPPort}
				if s.GRPCPort != 0 {
					wantPorts["grpc"] = s.GRPCPort
				}
				if s.WebhookPort != 0 {
					wantPorts["webhook"] = s.WebhookPort
				}
				if s.ConsolePort != 0 {
					wantPorts["console"] = s.ConsolePort
				}
				if s.StatusPort != 0 {
					wantPorts["status-page"] = s.StatusPort
				}
				got := map[string]int32{}
				for _, p := range c.Ports {
					got[p.Name] = p.ContainerPort
				}
				if fmt.Sprint(got) != fmt.Sprint(wantPorts) {
					t.Errorf("container ports %v, want %v", got, wantPorts)
				}
				checkProbe(t, "liveness", c.LivenessProbe, "/healthz")
				checkProbe(t, "readiness", c.ReadinessProbe, "/readyz")
				sa := o.ServiceAccounts[pod.ServiceAccountName]
				if pod.ServiceAccountName != s.Name || sa == nil {
					t.Errorf("serviceAccountName %q: want its own ServiceAccount %s", pod.ServiceAccountName, s.Name)
				} else if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
					t.Errorf("ServiceAccount %s mounts its token", s.Name)
				}
				svc := o.Services[s.Name]
				if svc == nil {
					t.Fatalf("no Service %s", s.Name)
				}
				if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(dep.Spec.Template.Labels)) || len(svc.Spec.Selector) == 0 {
					t.Errorf("Service %s selector %v does not select the pods %v", s.Name, svc.Spec.Selector, dep.Spec.Template.Labels)
				}
				for _, sp := range svc.Spec.Ports {
					if want, ok := wantPorts[sp.Name]; !ok || sp.Port != want || sp.TargetPort.String() != sp.Name {
						t.Errorf("Service %s port %s %d -> %s, want %d -> the container's %s", s.Name, sp.Name, sp.Port, sp.TargetPort.String(), want, sp.Name)
					}
				}
				if len(svc.Spec.Ports) != len(wantPorts) {
					t.Errorf("Service %s exposes %d ports, want %d", s.Name, len(svc.Spec.Ports), len(wantPorts))
				}
				pdbs := 0
				for _, pdb := range o.PDBs {
					sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
					if err != nil {
						t.Fatalf("PodDisruptionBudget %s: %v", pdb.Name, err)
					}
					if sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
						pdbs++
						if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
							t.Errorf("PodDisruptionBudget %s sets no budget", pdb.Name)
						}
					}
				}
				if pdbs != 1 {
					t.Errorf("%d PodDisruptionBudgets cover %s, want 1", pdbs, s.Name)
				}
				replicas := int32(1)
				if dep.Spec.Replicas != nil {
					replicas = *dep.Spec.Replicas
				}
				if s.Name == "ingress" {
					hpa := hpaFor(o, "ingress")
					if hpa == nil {
						t.Fatal("no HorizontalPodAutoscaler for ingress")
					}
					if dep.Spec.Replicas != nil {
						t.Errorf("ingress Deployment sets replicas; the HPA owns them")
					}
					if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 1 || hpa.Spec.MaxReplicas < *hpa.Spec.MinReplicas {
						t.Errorf("ingress HPA bounds %v..%d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
					}
					if overlay == "prod" && *hpa.Spec.MinReplicas < 2 {
						t.Errorf("prod ingress may scale to %d replica", *hpa.Spec.MinReplicas)
					}
					if len(hpa.Spec.Metrics) == 0 {
						t.Error("ingress HPA has no metric")
					}
				} else if overlay == "prod" && replicas < 2 {
					t.Errorf("prod runs %d replica of %s", replicas, s.Name)
				}
			})
		}
	}
}

func hpaFor(o overlayObjects, deployment string) *autoscalingv2.HorizontalPodAutoscaler {
	for _, h := range o.HPAs {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.APIVersion == "apps/v1" && h.Spec.ScaleTargetRef.Name == deployment {
			return h
		}
	}
	return nil
}

func checkProbe(t *testing.T, kind string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("no HTTP %s probe", kind)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "http" {
		t.Errorf("%s probe GET %s on %s, want %s on the http port", kind, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
	}
}

// Every pod in every overlay, ours or a dependency's, runs locked down.
func TestK8sPodSecurity(t *testing.T) {
	for _, overlay := range overlays(t) {
		o := objectsOf(t, overlay)
		if len(o.Workloads) == 0 {
			t.Fatalf("%s: no workloads", overlay)
		}
		for _, w := range o.Workloads {
			name := overlay + "/" + w.Kind + "/" + w.Name
			pod := w.Template.Spec
			psc := pod.SecurityContext
			if psc == nil {
				psc = &corev1.PodSecurityContext{}
			}
			if pod.HostNetwork || pod.HostPID || pod.HostIPC {
				t.Errorf("%s shares a host namespace", name)
			}
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Errorf("%s mounts a service account token", name)
			}
			sel, err := metav1.LabelSelectorAsSelector(w.Selector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.Template.Labels)) {
				t.Errorf("%s: selector %v does not select its own pods %v", name, w.Selector, w.Template.Labels)
			}
			for _, c := range append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...) {
				cname := name + "/" + c.Name
				csc := c.SecurityContext
				if csc == nil {
					t.Errorf("%s: no securityContext", cname)
					continue
				}
				if !isTrue(csc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
					t.Errorf("%s may run as root", cname)
				}
				if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
					t.Errorf("%s allows privilege escalation", cname)
				}
				if isTrue(csc.Privileged) {
					t.Errorf("%s is privileged", cname)
				}
				if !isTrue(csc.ReadOnlyRootFilesystem) {
					t.Errorf("%s has a writable root filesystem", cname)
				}
				if csc.Capabilities == nil || len(csc.Capabilities.Add) > 0 || len(csc.Capabilities.Drop) != 1 || csc.Capabilities.Drop[0] != "ALL" {
					t.Errorf("%s does not drop ALL capabilities (or adds some)", cname)
				}
				seccomp := psc.SeccompProfile
				if csc.SeccompProfile != nil {
					seccomp = csc.SeccompProfile
				}
				if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("%s: seccomp profile is not RuntimeDefault", cname)
				}
				for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					if _, ok := c.Resources.Requests[r]; !ok {
						t.Errorf("%s: no %s request", cname, r)
					}
				}
				if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
					t.Errorf("%s: no memory limit", cname)
				}
				// A Job's (or CronJob's) container runs to completion: nothing to probe.
				if w.Kind != "Job" && w.Kind != "CronJob" && (c.LivenessProbe == nil || c.ReadinessProbe == nil) {
					t.Errorf("%s: needs liveness and readiness probes", cname)
				}
				if !strings.Contains(c.Image, ":") || strings.HasSuffix(c.Image, ":latest") && overlay == "prod" {
					t.Errorf("%s: image %q is not pinned", cname, c.Image)
				}
			}
		}
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

// Every name a pod refers to exists in the same overlay, every Secret key
// the services read is documented for operators, and no secret value is set
// inline.
func TestK8sReferencesResolve(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatalf("README.md documents the Secrets to create: %v", err)
	}
	for _, overlay := range overlays(t) {
		o := objectsOf(t, overlay)
		for _, w := range o.Workloads {
			name := overlay + "/" + w.Kind + "/" + w.Name
			pod := w.Template.Spec
			if pod.ServiceAccountName != "" && o.ServiceAccounts[pod.ServiceAccountName] == nil {
				t.Errorf("%s: ServiceAccount %s does not exist", name, pod.ServiceAccountName)
			}
			for _, v := range pod.Volumes {
				if v.ConfigMap != nil && o.ConfigMaps[v.ConfigMap.Name] == nil {
					t.Errorf("%s: volume %s: ConfigMap %s does not exist", name, v.Name, v.ConfigMap.Name)
				}
				if v.Secret != nil {
					t.Errorf("%s: volume %s mounts a Secret; services take credentials as env", name, v.Name)
				}
			}
			for _, c := range pod.Containers {
				for _, ef := range c.EnvFrom {
					if ef.ConfigMapRef != nil && o.ConfigMaps[ef.ConfigMapRef.Name] == nil {
						t.Errorf("%s/%s: envFrom ConfigMap %s does not exist", name, c.Name, ef.ConfigMapRef.Name)
					}
					if ef.SecretRef != nil {
						t.Errorf("%s/%s: envFrom a whole Secret hides which variables are set; use secretKeyRef per key", name, c.Name)
					}
				}
				for _, e := range c.Env {
					switch {
					case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
						ref := e.ValueFrom.SecretKeyRef
						if ref.Key != e.Name {
							t.Errorf("%s/%s: %s reads Secret key %s; keep key and variable names equal", name, c.Name, e.Name, ref.Key)
						}
						if !strings.Contains(string(doc), "`"+ref.Name+"`") || !strings.Contains(string(doc), ref.Key) {
							t.Errorf("%s/%s: Secret %s key %s is not documented in README.md (Operating, Secrets)", name, c.Name, ref.Name, ref.Key)
						}
					case e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil:
						cm := o.ConfigMaps[e.ValueFrom.ConfigMapKeyRef.Name]
						if cm == nil {
							t.Errorf("%s/%s: ConfigMap %s does not exist", name, c.Name, e.ValueFrom.ConfigMapKeyRef.Name)
						}
					case e.ValueFrom == nil && isSecretish(e.Name):
						t.Errorf("%s/%s: %s is set inline; secrets come from secretKeyRef only", name, c.Name, e.Name)
					}
				}
			}
		}
		for name, cm := range o.ConfigMaps {
			for k := range cm.Data {
				if isSecretish(k) {
					t.Errorf("%s: ConfigMap %s holds %s; secrets belong in a Secret", overlay, name, k)
				}
			}
		}
		for _, pdb := range o.PDBs {
			sel, _ := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			n := 0
			for _, w := range o.Workloads {
				if sel.Matches(labels.Set(w.Template.Labels)) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s: PodDisruptionBudget %s covers %d workloads, want 1", overlay, pdb.Name, n)
			}
		}
		for _, svc := range o.Services {
			var matched []workload
			for _, w := range o.Workloads {
				if len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.Template.Labels)) {
					matched = append(matched, w)
				}
			}
			if len(matched) != 1 {
				t.Errorf("%s: Service %s selects %d workloads, want 1", overlay, svc.Name, len(matched))
				continue
			}
			for _, sp := range svc.Spec.Ports {
				if sp.TargetPort.Type == 1 && findPort(matched[0].Template.Spec, sp.TargetPort.StrVal) == 0 {
					t.Errorf("%s: Service %s targets port %q that %s does not declare", overlay, svc.Name, sp.TargetPort.StrVal, matched[0].Name)
				}
			}
		}
		for _, h := range o.HPAs {
			if o.Deployments[h.Spec.ScaleTargetRef.Name] == nil {
				t.Errorf("%s: HPA %s targets missing %s", overlay, h.Name, h.Spec.ScaleTargetRef.Name)
			}
		}
	}
}

func findPort(pod corev1.PodSpec, name string) int32 {
	for _, c := range pod.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return p.ContainerPort
			}
		}
	}
	return 0
}

// peer is one end of a connection: a pod (namespace and labels) or an
// address outside the cluster.
type peer struct {
	Namespace string
	PodLabels map[string]string
	IP        string
	Pod       *corev1.PodSpec // the pod's spec, to resolve named ports
}

func (p peer) String() string {
	if p.IP != "" {
		return p.IP
	}
	return fmt.Sprintf("%s/%v", p.Namespace, p.PodLabels)
}

func nsLabels(ns string) labels.Set { return labels.Set{"kubernetes.io/metadata.name": ns} }

// allows evaluates the NetworkPolicies of namespace ns the way the
// Kubernetes NetworkPolicy semantics define them: a pod selected by no
// policy of a direction is open in that direction; a selected pod accepts
// only what some rule of a selecting policy allows.
func allows(t *testing.T, pols []*networkingv1.NetworkPolicy, ns string, src, dst peer, proto corev1.Protocol, port int32) bool {
	t.Helper()
	egressOK := true
	if src.IP == "" && src.Namespace == ns {
		egressOK = directionAllows(t, pols, networkingv1.PolicyTypeEgress, ns, src, dst, proto, port)
	}
	ingressOK := true
	if dst.IP == "" && dst.Namespace == ns {
		ingressOK = directionAllows(t, pols, networkingv1.PolicyTypeIngress, ns, dst, src, proto, port)
	}
	return egressOK && ingressOK
}

// directionAllows: subject is the pod the policies select; other is the far end.
func directionAllows(t *testing.T, pols []*networkingv1.NetworkPolicy, dir networkingv1.PolicyType, ns string, subject, other peer, proto corev1.Protocol, port int32) bool {
	t.Helper()
	selected := false
	for _, p := range pols {
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			t.Fatalf("NetworkPolicy %s: %v", p.Name, err)
		}
		if !sel.Matches(labels.Set(subject.PodLabels)) || !hasPolicyType(p, dir) {
			continue
		}
		selected = true
		if dir == networkingv1.PolicyTypeIngress {
			for _, r := range p.Spec.Ingress {
				if portsMatch(r.Ports, proto, port, subject) && peersMatch(t, r.From, ns, other) {
					return true
				}
			}
		} else {
			for _, r := range p.Spec.Egress {
				if portsMatch(r.Ports, proto, port, other) && peersMatch(t, r.To, ns, other) {
					return true
				}
			}
		}
	}
	return !selected
}

func hasPolicyType(p *networkingv1.NetworkPolicy, dir networkingv1.PolicyType) bool {
	if len(p.Spec.PolicyTypes) == 0 {
		return dir == networkingv1.PolicyTypeIngress || len(p.Spec.Egress) > 0
	}
	for _, pt := range p.Spec.PolicyTypes {
		if pt == dir {
			return true
		}
	}
	return false
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, proto corev1.Protocol, port int32, target peer) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		pp := corev1.ProtocolTCP
		if p.Protocol != nil {
			pp = *p.Protocol
		}
		if pp != proto {
			continue
		}
		if p.Port == nil {
			return true
		}
		want := p.Port.IntVal
		if p.Port.Type == 1 {
			if target.Pod == nil {
				continue
			}
			want = findPort(*target.Pod, p.Port.StrVal)
		}
		if p.EndPort != nil && port >= want && port <= *p.EndPort || want == port {
			return true
		}
	}
	return false
}

func peersMatch(t *testing.T, peers []networkingv1.NetworkPolicyPeer, ns string, other peer) bool {
	t.Helper()
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		switch {
		case p.IPBlock != nil:
			if other.IP == "" {
				continue
			}
			addr := netip.MustParseAddr(other.IP)
			if !netip.MustParsePrefix(p.IPBlock.CIDR).Contains(addr) {
				continue
			}
			excluded := false
			for _, e := range p.IPBlock.Except {
				if netip.MustParsePrefix(e).Contains(addr) {
					excluded = true
				}
			}
			if !excluded {
				return true
			}
		case other.IP != "":
			continue
		default:
			nsOK := other.Namespace == ns
			if p.NamespaceSelector != nil {
				sel, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
				if err != nil {
					t.Fatal(err)
				}
				nsOK = sel.Matches(nsLabels(other.Namespace))
			}
			podOK := true
			if p.PodSelector != nil {
				sel, err := metav1.LabelSelectorAsSelector(p.PodSelector)
				if err != nil {
					t.Fatal(err)
				}
				podOK = sel.Matches(labels.Set(other.PodLabels))
			}
			if nsOK && podOK {
				return true
			}
		}
	}
	return false
}

// The network claims, checked against the rendered policies:
// only ingress takes outside traffic, billing-state's gRPC port is open only
// to the mobile backend's namespace, and the services reach what they need
// (DNS, NATS, OTLP, Postgres, vendors over HTTPS) and nothing else.
func TestK8sNetworkPolicies(t *testing.T) {
	for _, overlay := range overlays(t) {
		o := objectsOf(t, overlay)
		ns := o.Namespace
		pod := func(name string) peer {
			w, ok := o.Workloads[name]
			if !ok {
				t.Fatalf("%s: no workload %s", overlay, name)
			}
			return peer{Namespace: ns, PodLabels: w.Template.Labels, Pod: &w.Template.Spec}
		}
		outside := peer{IP: "203.0.113.10"}
		vendor := peer{IP: "198.51.100.7"}
		private := peer{IP: "10.12.0.5"}
		metadata := peer{IP: "169.254.169.254"}
		mobile := peer{Namespace: "mobile-backend", PodLabels: map[string]string{"app": "api"}}
		monitoring := peer{Namespace: "monitoring", PodLabels: map[string]string{"app.kubernetes.io/name": "prometheus"}}
		stranger := peer{Namespace: "other-team", PodLabels: map[string]string{"app": "x"}}
		dns := peer{Namespace: "kube-system", PodLabels: map[string]string{"k8s-app": "kube-dns"}}
		nats := peer{Namespace: "nats", PodLabels: map[string]string{"app.kubernetes.io/name": "nats"}}
		if _, ok := o.Workloads["nats"]; ok {
			nats = pod("nats")
		}
		otlp := peer{Namespace: ns, PodLabels: map[string]string{"app.kubernetes.io/name": "otel-collector"}}
		for _, name := range []string{"otel-collector", "jaeger"} {
			if _, ok := o.Workloads[name]; ok {
				otlp = pod(name)
			}
		}
		db := private // a managed database, or the dev pod
		if _, ok := o.Workloads["postgres"]; ok {
			db = pod("postgres")
		}
		tcp := corev1.ProtocolTCP

		type flow struct {
			src, dst peer
			proto    corev1.Protocol
			port     int32
			want     bool
			what     string
		}
		flows := []flow{
			{outside, pod("ingress"), tcp, 8080, true, "Stripe to ingress"},
			{stranger, pod("ingress"), tcp, 8080, true, "anyone to the webhook port"},
			{outside, pod("billing-state"), tcp, 9090, false, "outside to billing-state gRPC"},
			{stranger, pod("billing-state"), tcp, 9090, false, "another namespace to billing-state gRPC"},
			{pod("ingress"), pod("billing-state"), tcp, 9090, false, "ingress to billing-state gRPC"},
			{mobile, pod("billing-state"), tcp, 9090, true, "mobile backend to billing-state gRPC"},
			{mobile, pod("billing-state"), tcp, 8081, false, "mobile backend to billing-state ops port"},
			{pod("ingress"), pod("crm-sync"), tcp, 8082, false, "ingress to crm-sync"},
			{pod("ingress"), vendor, tcp, 443, false, "ingress to the internet"},
			{pod("ingress"), db, tcp, 5432, false, "ingress to Postgres"},
		}
		for _, s := range services {
			src := pod(s.Name)
			flows = append(flows,
				flow{src, dns, corev1.ProtocolUDP, 53, true, s.Name + " to DNS"},
				flow{src, nats, tcp, 4222, true, s.Name + " to NATS"},
				flow{src, otlp, tcp, 4317, true, s.Name + " to OTLP"},
				flow{src, metadata, tcp, 80, false, s.Name + " to the metadata endpoint"},
				flow{src, private, tcp, 443, false, s.Name + " to a private address"},
				flow{src, stranger, tcp, 8080, false, s.Name + " to another namespace"},
			)
			flows = append(flows,
				flow{outside, src, tcp, s.HTTPPort, false, "outside to " + s.Name + " ops port"},
				flow{stranger, src, tcp, s.HTTPPort, false, "another namespace to " + s.Name + " ops port"},
				flow{monitoring, src, tcp, s.HTTPPort, true, "Prometheus to " + s.Name},
			)
			if s.Consumer {
				flows = append(flows,
					flow{src, db, tcp, 5432, true, s.Name + " to Postgres"},
					flow{src, vendor, tcp, 443, true, s.Name + " to vendor APIs"},
				)
			}
		}
		// Prod's console reads Jaeger's query service and Prometheus'
		// HTTP API in their own namespaces (CONSOLE_JAEGER_URL and
		// CONSOLE_PROMETHEUS_URL); no other service reaches either.
		jaegerQuery := peer{Namespace: "observability", PodLabels: map[string]string{"app.kubernetes.io/name": "jaeger"}}
		prometheus := peer{Namespace: "monitoring", PodLabels: map[string]string{"app.kubernetes.io/name": "prometheus"}}
		prod := overlay == "prod"
		flows = append(flows,
			flow{pod("console"), jaegerQuery, tcp, 16686, prod, "console to Jaeger's query service"},
			flow{pod("console"), prometheus, tcp, 9090, prod, "console to Prometheus' HTTP API"},
			flow{pod("ingress"), jaegerQuery, tcp, 16686, false, "ingress to Jaeger's query service"},
			flow{pod("billing-state"), prometheus, tcp, 9090, false, "billing-state to Prometheus' HTTP API"},
		)
		for _, f := range flows {
			if got := allows(t, o.NetPols, ns, f.src, f.dst, f.proto, f.port); got != f.want {
				t.Errorf("%s: %s (%s -> %s %s/%d): allowed=%v, want %v", overlay, f.what, f.src, f.dst, f.proto, f.port, got, f.want)
			}
		}
	}
}
