package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dockerInstructions returns the Dockerfile's instructions with line
// continuations joined and comments dropped.
func dockerInstructions(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, strings.Join(strings.Fields(cur.String()), " "))
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The Dockerfile builds what the issue asks for, the way
// scripts/deploy-build-check.sh proves it builds.
func TestDockerfileBuildsStaticServiceOnDistroless(t *testing.T) {
	ins := dockerInstructions(t)
	joined := strings.Join(ins, "\n")
	var froms []string
	for _, in := range ins {
		if strings.HasPrefix(in, "FROM ") {
			froms = append(froms, in)
		}
	}
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "FROM golang:") || !strings.HasSuffix(froms[0], " AS build") {
		t.Fatalf("want two stages, a golang build stage then the runtime: %v", froms)
	}
	if froms[1] != "FROM gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("runtime stage %q, want distroless static nonroot", froms[1])
	}
	for _, want := range []string{
		"ARG SERVICE",
		"CGO_ENABLED=0",
		"GOWORK=off",
		"COPY proto/ proto/",
		"COPY pkg/ pkg/",
		"COPY services/ services/",
		"COPY test/testkit/go.* test/testkit/",
		`cd services/${SERVICE} && go build -trimpath -ldflags "-s -w" -o /out/service ./cmd/${SERVICE}`,
		"USER nonroot:nonroot",
		"EXPOSE ${PORTS}",
		`ENTRYPOINT ["/app/service"]`,
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("deploy/Dockerfile lacks %q", want)
		}
	}
	// The runtime stage must not fall back to root after USER.
	last := ""
	for _, in := range ins {
		if strings.HasPrefix(in, "USER ") {
			last = in
		}
	}
	if last != "USER nonroot:nonroot" {
		t.Errorf("last USER is %q", last)
	}
	m := regexp.MustCompile(`ARG GO_VERSION=(\d+\.\d+)\.\d+`).FindStringSubmatch(joined)
	if m == nil {
		t.Fatal("deploy/Dockerfile does not pin GO_VERSION")
	}
	gowork, err := os.ReadFile(filepath.Join(repoRoot(t), "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^go ` + regexp.QuoteMeta(m[1]) + `(\.\d+)?$`).Match(gowork) {
		t.Errorf("image Go %s is not the workspace's Go (go.work)", m[1])
	}

	script, err := os.ReadFile(filepath.Join(repoRoot(t), "scripts", "deploy-build-check.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "GOWORK=off", `go build -trimpath -ldflags "-s -w"`, "copy_tree proto", "copy_tree pkg", `copy_tree "services/$svc"`, "test/testkit/go.{mod,sum}"} {
		if !strings.Contains(string(script), want) {
			t.Errorf("scripts/deploy-build-check.sh lacks %q: it no longer builds the way the Dockerfile does", want)
		}
	}
}

// The image copies proto/, pkg/, the services/ tree (the launchready CLI's
// module needs every service's) and test/testkit's module files (every
// module's tests use it), so every replace in a service's go.mod must point
// inside those, and the shared modules must be replaced by their relative
// paths. A module may name another service's module for its tests (the
// console's run the real services), but its binary must not import another
// service: that is checked on the binary's dependencies.
func TestServiceModulesBuildFromTheirOwnDirectory(t *testing.T) {
	root := repoRoot(t)
	for _, s := range services {
		t.Run(s.Name, func(t *testing.T) {
			dir := filepath.Join(root, "services", s.Name)
			b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			if err != nil {
				t.Fatal(err)
			}
			replaces := map[string]string{}
			inBlock := false
			for _, line := range strings.Split(string(b), "\n") {
				line = strings.TrimSpace(line)
				switch {
				case line == "replace (":
					inBlock = true
					continue
				case inBlock && line == ")":
					inBlock = false
					continue
				case strings.HasPrefix(line, "replace "):
					line = strings.TrimPrefix(line, "replace ")
				case !inBlock:
					continue
				}
				from, to, ok := strings.Cut(line, "=>")
				if !ok {
					continue
				}
				replaces[strings.Fields(from)[0]] = strings.Fields(to)[0]
			}
			for mod, want := range map[string]string{
				"github.com/launchready/launchready/pkg":   "../../pkg",
				"github.com/launchready/launchready/proto": "../../proto",
			} {
				if replaces[mod] != want {
					t.Errorf("replace %s => %q, want %s", mod, replaces[mod], want)
				}
			}
			for mod, to := range replaces {
				if !strings.HasPrefix(to, ".") {
					continue
				}
				abs := filepath.Join(dir, to)
				inside := false
				for _, copied := range []string{"proto", "pkg", "services", filepath.Join("test", "testkit")} {
					if rel, err := filepath.Rel(filepath.Join(root, copied), abs); err == nil && !strings.HasPrefix(rel, "..") {
						inside = true
					}
				}
				if !inside {
					t.Errorf("replace %s => %s points outside what deploy/Dockerfile copies", mod, to)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "go.sum")); err != nil {
				t.Errorf("no go.sum: a GOWORK=off build cannot verify its modules: %v", err)
			}
			cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "./cmd/"+s.Name)
			cmd.Dir = dir
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list -deps ./cmd/%s: %v", s.Name, err)
			}
			own := "github.com/launchready/launchready/services/" + s.Name
			for _, pkg := range strings.Fields(string(out)) {
				if strings.HasPrefix(pkg, "github.com/launchready/launchready/services/") && pkg != own && !strings.HasPrefix(pkg, own+"/") {
					t.Errorf("the %s binary imports %s: no service imports another", s.Name, pkg)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "cmd", s.Name, "main.go")); err != nil {
				t.Errorf("no cmd/%s/main.go for the Dockerfile to build: %v", s.Name, err)
			}
		})
	}
}
