package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

// kustomizeVersion is the one `make k8s` and CI render with.
const kustomizeVersion = "v5.8.2"

// repoRoot is the repository root, two levels above this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	return root
}

// overlays lists k8s/overlays/* that hold a kustomization.
func overlays(t testing.TB) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(repoRoot(t), "k8s", "overlays", "*", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range dirs {
		names = append(names, filepath.Base(filepath.Dir(d)))
	}
	sort.Strings(names)
	if len(names) < 2 {
		t.Fatalf("expected at least the dev and prod overlays, found %v", names)
	}
	return names
}

// document is one object of a rendered overlay.
type document struct {
	Overlay string
	Index   int
	JSON    []byte
	Meta    typeMeta
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

func (d document) String() string {
	return fmt.Sprintf("%s: %s/%s %s (document %d)", d.Overlay, d.Meta.APIVersion, d.Meta.Kind, d.Meta.Metadata.Name, d.Index)
}

var (
	renderOnce sync.Once
	rendered   map[string][]byte
	renderErr  error
)

// renderedOverlays returns each overlay's rendered YAML: from the files
// scripts/k8s-validate.sh wrote (LR_K8S_RENDERED) or from kustomize itself.
func renderedOverlays(t testing.TB) map[string][]byte {
	t.Helper()
	root := repoRoot(t)
	names := overlays(t)
	renderOnce.Do(func() {
		rendered = map[string][]byte{}
		if dir := os.Getenv("LR_K8S_RENDERED"); dir != "" {
			for _, n := range names {
				b, err := os.ReadFile(filepath.Join(dir, n+".yaml"))
				if err != nil {
					renderErr = fmt.Errorf("LR_K8S_RENDERED=%s lacks overlay %s: %w", dir, n, err)
					return
				}
				rendered[n] = b
			}
			return
		}
		bin, err := findKustomize()
		if err != nil {
			renderErr = err
			return
		}
		for _, n := range names {
			var out, stderr bytes.Buffer
			cmd := exec.Command(bin, "build", filepath.Join(root, "k8s", "overlays", n))
			cmd.Stdout, cmd.Stderr = &out, &stderr
			if err := cmd.Run(); err != nil {
				renderErr = fmt.Errorf("kustomize build k8s/overlays/%s: %v\n%s", n, err, stderr.String())
				return
			}
			rendered[n] = out.Bytes()
		}
	})
	if renderErr != nil {
		t.Fatalf("%v\n(run scripts/k8s-validate.sh, which installs kustomize %s and renders every overlay)", renderErr, kustomizeVersion)
	}
	return rendered
}

// findKustomize looks on PATH and in GOPATH/bin and insists on the pinned
// version, so a test pass means what `make k8s` renders is valid.
func findKustomize() (string, error) {
	var candidates []string
	if p := os.Getenv("KUSTOMIZE"); p != "" {
		candidates = append(candidates, p)
	}
	if root, err := filepath.Abs(filepath.Join("..", "..", "bin", "kustomize")); err == nil {
		candidates = append(candidates, root)
	}
	if p, err := exec.LookPath("kustomize"); err == nil {
		candidates = append(candidates, p)
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			candidates = append(candidates, filepath.Join(dir, "bin", "kustomize"))
		}
	}
	var problems []string
	for _, c := range candidates {
		if _, err := os.Stat(c); err != nil {
			continue
		}
		out, err := exec.Command(c, "version").Output()
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", c, err))
			continue
		}
		if v := strings.TrimSpace(string(out)); v != kustomizeVersion {
			problems = append(problems, fmt.Sprintf("%s is %s, want %s", c, v, kustomizeVersion))
			continue
		}
		return c, nil
	}
	if len(problems) == 0 {
		return "", errors.New("kustomize not found in bin/, on PATH or in GOPATH/bin, and LR_K8S_RENDERED is not set")
	}
	return "", fmt.Errorf("no usable kustomize: %s", strings.Join(problems, "; "))
}

// documents splits every rendered overlay into its objects.
func documents(t testing.TB) []document {
	t.Helper()
	var docs []document
	all := renderedOverlays(t)
	for _, name := range overlays(t) {
		parts, err := splitYAML(all[name])
		if err != nil {
			t.Fatalf("overlay %s: %v", name, err)
		}
		if len(parts) == 0 {
			t.Fatalf("overlay %s rendered no objects", name)
		}
		for i, p := range parts {
			// Strict: a duplicated key in the YAML is an error, not a last-one-wins.
			j, err := yaml.YAMLToJSONStrict(p)
			if err != nil {
				t.Fatalf("overlay %s document %d: %v", name, i, err)
			}
			d := document{Overlay: name, Index: i, JSON: j}
			if err := jsonUnmarshalLoose(j, &d.Meta); err != nil {
				t.Fatalf("overlay %s document %d: %v", name, i, err)
			}
			docs = append(docs, d)
		}
	}
	return docs
}

// splitYAML splits a multi-document stream on lines that are exactly "---".
func splitYAML(b []byte) ([][]byte, error) {
	var out [][]byte
	var cur bytes.Buffer
	flush := func() {
		if s := bytes.TrimSpace(cur.Bytes()); len(s) > 0 {
			out = append(out, append([]byte(nil), cur.Bytes()...))
		}
		cur.Reset()
	}
	r := bytes.NewReader(b)
	for {
		line, err := readLine(r)
		if len(line) > 0 || err == nil {
			if strings.TrimRight(string(line), "\r\n") == "---" {
				flush()
			} else {
				cur.Write(line)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	flush()
	return out, nil
}

func readLine(r *bytes.Reader) ([]byte, error) {
	var line []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			return line, err
		}
		line = append(line, c)
		if c == '\n' {
			return line, nil
		}
	}
}
