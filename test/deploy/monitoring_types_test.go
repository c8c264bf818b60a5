package deploy

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The Prometheus Operator's monitoring.coreos.com/v1 kinds the prod overlay
// uses, transcribed from the operator's CRD schemas (ServiceMonitor and
// PrometheusRule, v1) rather than imported: the operator's API module pulls
// controller-runtime into the workspace, which would move pinned shared
// dependencies. Field names and JSON tags follow the CRD exactly.
//
// Fields the manifests do not use yet (TLS, authorization, OAuth2, ...) are
// left out on purpose: a manifest that starts using one fails strict decoding
// loudly, and the field is then added here from the schema. Nothing is
// accepted without being checked.

// ServiceMonitor is monitoring.coreos.com/v1 ServiceMonitor.
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ServiceMonitorSpec `json:"spec"`
}

// ServiceMonitorSpec is the CRD's spec.
type ServiceMonitorSpec struct {
	JobLabel                       string               `json:"jobLabel,omitempty"`
	TargetLabels                   []string             `json:"targetLabels,omitempty"`
	PodTargetLabels                []string             `json:"podTargetLabels,omitempty"`
	Endpoints                      []Endpoint           `json:"endpoints,omitempty"`
	Selector                       metav1.LabelSelector `json:"selector"`
	SelectorMechanism              *string              `json:"selectorMechanism,omitempty"`
	NamespaceSelector              NamespaceSelector    `json:"namespaceSelector,omitempty"`
	SampleLimit                    *uint64              `json:"sampleLimit,omitempty"`
	ScrapeProtocols                []string             `json:"scrapeProtocols,omitempty"`
	FallbackScrapeProtocol         *string              `json:"fallbackScrapeProtocol,omitempty"`
	TargetLimit                    *uint64              `json:"targetLimit,omitempty"`
	LabelLimit                     *uint64              `json:"labelLimit,omitempty"`
	LabelNameLengthLimit           *uint64              `json:"labelNameLengthLimit,omitempty"`
	LabelValueLengthLimit          *uint64              `json:"labelValueLengthLimit,omitempty"`
	ScrapeClassicHistograms        *bool                `json:"scrapeClassicHistograms,omitempty"`
	NativeHistogramBucketLimit     *uint64              `json:"nativeHistogramBucketLimit,omitempty"`
	ConvertClassicHistogramsToNHCB *bool                `json:"convertClassicHistogramsToNHCB,omitempty"`
	KeepDroppedTargets             *uint64              `json:"keepDroppedTargets,omitempty"`
	AttachMetadata                 *AttachMetadata      `json:"attachMetadata,omitempty"`
	ScrapeClassName                *string              `json:"scrapeClass,omitempty"`
	BodySizeLimit                  *string              `json:"bodySizeLimit,omitempty"`
}

// NamespaceSelector picks the namespaces a ServiceMonitor looks in.
type NamespaceSelector struct {
	Any        bool     `json:"any,omitempty"`
	MatchNames []string `json:"matchNames,omitempty"`
}

// AttachMetadata adds node metadata to the discovered targets.
type AttachMetadata struct {
	Node *bool `json:"node,omitempty"`
}

// Endpoint is one scrape endpoint of a ServiceMonitor.
type Endpoint struct {
	Port                     string                         `json:"port,omitempty"`
	TargetPort               *intstr.IntOrString            `json:"targetPort,omitempty"`
	Path                     string                         `json:"path,omitempty"`
	Scheme                   string                         `json:"scheme,omitempty"`
	Params                   map[string][]string            `json:"params,omitempty"`
	Interval                 string                         `json:"interval,omitempty"`
	ScrapeTimeout            string                         `json:"scrapeTimeout,omitempty"`
	HonorLabels              bool                           `json:"honorLabels,omitempty"`
	HonorTimestamps          *bool                          `json:"honorTimestamps,omitempty"`
	TrackTimestampsStaleness *bool                          `json:"trackTimestampsStaleness,omitempty"`
	MetricRelabelConfigs     []RelabelConfig                `json:"metricRelabelings,omitempty"`
	RelabelConfigs           []RelabelConfig                `json:"relabelings,omitempty"`
	FollowRedirects          *bool                          `json:"followRedirects,omitempty"`
	EnableHTTP2              *bool                          `json:"enableHttp2,omitempty"`
	FilterRunning            *bool                          `json:"filterRunning,omitempty"`
	ProxyURL                 *string                        `json:"proxyUrl,omitempty"`
	NoProxy                  *string                        `json:"noProxy,omitempty"`
	ProxyFromEnvironment     *bool                          `json:"proxyFromEnvironment,omitempty"`
	ProxyConnectHeader       map[string][]secretKeySelector `json:"proxyConnectHeader,omitempty"`
}

type secretKeySelector struct {
	Name     string `json:"name,omitempty"`
	Key      string `json:"key"`
	Optional *bool  `json:"optional,omitempty"`
}

// RelabelConfig is a Prometheus relabelling step.
type RelabelConfig struct {
	SourceLabels []string `json:"sourceLabels,omitempty"`
	Separator    *string  `json:"separator,omitempty"`
	TargetLabel  string   `json:"targetLabel,omitempty"`
	Regex        string   `json:"regex,omitempty"`
	Modulus      uint64   `json:"modulus,omitempty"`
	Replacement  *string  `json:"replacement,omitempty"`
	Action       string   `json:"action,omitempty"`
}

// PrometheusRule is monitoring.coreos.com/v1 PrometheusRule.
type PrometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PrometheusRuleSpec `json:"spec"`
}

// PrometheusRuleSpec is the CRD's spec.
type PrometheusRuleSpec struct {
	Groups []RuleGroup `json:"groups,omitempty"`
}

// RuleGroup is a Prometheus rule group.
type RuleGroup struct {
	Name                    string            `json:"name"`
	Labels                  map[string]string `json:"labels,omitempty"`
	Interval                *string           `json:"interval,omitempty"`
	QueryOffset             *string           `json:"query_offset,omitempty"`
	Rules                   []Rule            `json:"rules"`
	PartialResponseStrategy string            `json:"partial_response_strategy,omitempty"`
	Limit                   *int              `json:"limit,omitempty"`
}

// Rule is a recording or an alerting rule.
type Rule struct {
	Record        string             `json:"record,omitempty"`
	Alert         string             `json:"alert,omitempty"`
	Expr          intstr.IntOrString `json:"expr"`
	For           *string            `json:"for,omitempty"`
	KeepFiringFor *string            `json:"keep_firing_for,omitempty"`
	Labels        map[string]string  `json:"labels,omitempty"`
	Annotations   map[string]string  `json:"annotations,omitempty"`
}
