package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// KEDA's custom resources are validated against the CRD schemas KEDA
// itself ships, read from its Go module (github.com/kedacore/keda/v2, which
// carries config/crd/bases) through the module proxy: the validator knows
// exactly what the installed operator's API server would accept, with no
// transcription in between. scripts/k8s-validate.sh downloads the module
// and passes its CRD directory in LR_KEDA_CRDS; without it, the test
// downloads the same version itself.
const kedaModule = "github.com/kedacore/keda/v2@v2.20.2"

// crdKinds are the kinds validated by a CRD schema rather than a Go type:
// apiVersion/kind → the CRD file in KEDA's config/crd/bases.
var crdKinds = map[string]string{
	"keda.sh/v1alpha1/ScaledObject": "keda.sh_scaledobjects.yaml",
}

// celChecked are the x-kubernetes-validations rules of those CRDs, by
// message, each checked in Go by kedaRules; a rule not listed fails the
// validation, so a new KEDA version cannot slip a rule past it.
var celChecked = map[string]bool{
	"minReplicaCount must be less than or equal to maxReplicaCount": true,
}

var (
	crdOnce    sync.Once
	crdDir     string
	crdDirErr  error
	crdSchemas sync.Map // file → *crdSchema or error
)

func kedaCRDDir() (string, error) {
	crdOnce.Do(func() {
		if dir := os.Getenv("LR_KEDA_CRDS"); dir != "" {
			crdDir = dir
			return
		}
		tmp, err := os.MkdirTemp("", "keda-download")
		if err != nil {
			crdDirErr = err
			return
		}
		defer os.RemoveAll(tmp)
		cmd := exec.Command("go", "mod", "download", "-json", kedaModule)
		cmd.Dir = tmp
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			crdDirErr = fmt.Errorf("go mod download %s: %v\n%s", kedaModule, err, out.String())
			return
		}
		var info struct{ Dir, Error string }
		if err := json.Unmarshal(out.Bytes(), &info); err != nil || info.Dir == "" {
			crdDirErr = fmt.Errorf("go mod download %s: no module directory (%v): %s", kedaModule, err, out.String())
			return
		}
		crdDir = filepath.Join(info.Dir, "config", "crd", "bases")
	})
	return crdDir, crdDirErr
}

// crdSchema is one version's openAPIV3Schema.
type crdSchema struct {
	version string
	root    map[string]any
}

func loadCRD(file, version string) (*crdSchema, error) {
	key := file + "@" + version
	if v, ok := crdSchemas.Load(key); ok {
		if err, isErr := v.(error); isErr {
			return nil, err
		}
		return v.(*crdSchema), nil
	}
	s, err := readCRD(file, version)
	if err != nil {
		crdSchemas.Store(key, err)
		return nil, err
	}
	crdSchemas.Store(key, s)
	return s, nil
}

func readCRD(file, version string) (*crdSchema, error) {
	dir, err := kedaCRDDir()
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return nil, fmt.Errorf("KEDA CRD: %w", err)
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string `json:"name"`
				Served bool   `json:"served"`
				Schema struct {
					OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		return nil, fmt.Errorf("KEDA CRD %s: %w", file, err)
	}
	for _, v := range crd.Spec.Versions {
		if v.Name == version && v.Served {
			return &crdSchema{version: version, root: v.Schema.OpenAPIV3Schema}, nil
		}
	}
	return nil, fmt.Errorf("KEDA CRD %s serves no version %s", file, version)
}

// decodeByCRD validates a custom resource against its CRD's schema as the
// API server would with strict field validation: unknown fields, wrong
// types, missing required fields, values outside an enum or a format's
// range are errors. metadata is decoded strictly as an ObjectMeta.
func decodeByCRD(d document, file string) (any, error) {
	version := d.Meta.APIVersion[strings.LastIndex(d.Meta.APIVersion, "/")+1:]
	s, err := loadCRD(file, version)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d, err)
	}
	var obj map[string]any
	if err := json.Unmarshal(d.JSON, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", d, err)
	}
	var om metav1.ObjectMeta
	if meta, ok := obj["metadata"]; ok {
		b, _ := json.Marshal(meta)
		strictErrs, err := kjson.UnmarshalStrict(b, &om)
		if err == nil && len(strictErrs) > 0 {
			err = strictErrs[0]
		}
		if err != nil {
			return nil, fmt.Errorf("%s: metadata: %w", d, err)
		}
	}
	var errs []string
	validateSchema(s.root, obj, "", &errs, true)
	if len(errs) > 0 {
		sort.Strings(errs)
		return nil, fmt.Errorf("%s: %s", d, strings.Join(errs, "; "))
	}
	return &crdObject{ObjectMeta: om, Content: obj}, nil
}

// crdObject is a custom resource that passed its CRD's schema: its
// metadata, and the whole object as decoded JSON.
type crdObject struct {
	metav1.ObjectMeta
	Content map[string]any
}

// schemaKeywords are the OpenAPI keywords validateSchema understands; a
// schema using any other fails, rather than being half-checked.
var schemaKeywords = map[string]bool{
	"type": true, "description": true, "properties": true, "required": true, "additionalProperties": true,
	"items": true, "enum": true, "format": true, "pattern": true, "minLength": true, "minItems": true,
	"anyOf": true, "x-kubernetes-int-or-string": true, "x-kubernetes-preserve-unknown-fields": true,
	"x-kubernetes-list-type": true, "x-kubernetes-validations": true, "default": true, "minimum": true, "maximum": true,
}

func validateSchema(schema map[string]any, v any, path string, errs *[]string, root bool) {
	fail := func(format string, args ...any) {
		p := path
		if p == "" {
			p = "."
		}
		*errs = append(*errs, p+": "+fmt.Sprintf(format, args...))
	}
	for k := range schema {
		if !schemaKeywords[k] {
			fail("the validator does not know the schema keyword %q", k)
		}
	}
	if rules, ok := schema["x-kubernetes-validations"].([]any); ok {
		for _, r := range rules {
			msg, _ := r.(map[string]any)["message"].(string)
			if !celChecked[msg] {
				fail("CEL rule %q is not checked by the validator", msg)
			}
		}
	}
	if alts, ok := schema["anyOf"].([]any); ok && schema["x-kubernetes-int-or-string"] != true {
		fail("anyOf outside int-or-string is not supported: %v", alts)
	}
	if schema["x-kubernetes-int-or-string"] == true {
		switch x := v.(type) {
		case string:
			if p, ok := schema["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(x) {
				fail("%q does not match %s", x, p)
			}
		case float64:
			if x != math.Trunc(x) {
				fail("%v is not an integer", x)
			}
		default:
			fail("want an integer or a string, got %T", v)
		}
		return
	}
	if enum, ok := schema["enum"].([]any); ok && !slices.Contains(enum, v) {
		fail("%v is not one of %v", v, enum)
	}
	switch schema["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			fail("want an object, got %T", v)
			return
		}
		for _, r := range asStrings(schema["required"]) {
			if _, ok := m[r]; !ok {
				fail("required field %q missing", r)
			}
		}
		props, _ := schema["properties"].(map[string]any)
		addl, hasAddl := schema["additionalProperties"].(map[string]any)
		preserve := schema["x-kubernetes-preserve-unknown-fields"] == true
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sub := path + "." + k
			if root && (k == "apiVersion" || k == "kind" || k == "metadata") {
				continue // checked by the caller
			}
			if ps, ok := props[k].(map[string]any); ok {
				validateSchema(ps, m[k], sub, errs, false)
				continue
			}
			if hasAddl {
				validateSchema(addl, m[k], sub, errs, false)
				continue
			}
			if !preserve {
				*errs = append(*errs, sub+": unknown field")
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			fail("want an array, got %T", v)
			return
		}
		if n, ok := schema["minItems"].(float64); ok && float64(len(a)) < n {
			fail("%d items, want at least %v", len(a), n)
		}
		if items, ok := schema["items"].(map[string]any); ok {
			for i, x := range a {
				validateSchema(items, x, fmt.Sprintf("%s[%d]", path, i), errs, false)
			}
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			fail("want a string, got %T", v)
			return
		}
		if n, ok := schema["minLength"].(float64); ok && float64(len(s)) < n {
			fail("%q is shorter than %v", s, n)
		}
		if p, ok := schema["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(s) {
			fail("%q does not match %s", s, p)
		}
	case "integer":
		f, ok := v.(float64)
		if !ok || f != math.Trunc(f) {
			fail("want an integer, got %v", v)
			return
		}
		if schema["format"] == "int32" && (f < math.MinInt32 || f > math.MaxInt32) {
			fail("%v is outside int32", f)
		}
		if lo, ok := schema["minimum"].(float64); ok && f < lo {
			fail("%v is below the minimum %v", f, lo)
		}
		if hi, ok := schema["maximum"].(float64); ok && f > hi {
			fail("%v is above the maximum %v", f, hi)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			fail("want a boolean, got %T", v)
		}
	case "number":
		if _, ok := v.(float64); !ok {
			fail("want a number, got %T", v)
		}
	case nil:
		if schema["x-kubernetes-preserve-unknown-fields"] != true {
			fail("schema without a type")
		}
	default:
		fail("the validator does not know the type %v", schema["type"])
	}
}

func asStrings(v any) []string {
	a, _ := v.([]any)
	out := make([]string, 0, len(a))
	for _, x := range a {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
