package service

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Build names the code a process runs: the VCS revision Go stamped into
// the binary ("unknown" when it was built outside a checkout), whether the
// tree had uncommitted changes, and the Go version.
type Build struct {
	Revision  string
	Modified  bool
	GoVersion string
}

// CurrentBuild reads the running binary's build information.
func CurrentBuild() Build {
	b := Build{Revision: "unknown", GoVersion: "unknown"}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.GoVersion = info.GoVersion
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// registerBuildInfo exports lr_build_info{service,revision,modified,go_version}
// = 1, so that a deploy that left replicas on different builds shows, and
// the time the process started beside it (process_start_time_seconds).
func registerBuildInfo(reg prometheus.Registerer, service string) {
	b := CurrentBuild()
	modified := "false"
	if b.Modified {
		modified = "true"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "lr_build_info",
		Help: "The build this process runs; always 1.",
		ConstLabels: prometheus.Labels{"service": service, "revision": b.Revision,
			"modified": modified, "go_version": b.GoVersion},
	})
	g.Set(1)
	// A second supervisor on the same registry (tests) registers it again.
	_ = reg.Register(g)
}

// RunningBuild is what a process's ops listener says it runs: its
// lr_build_info labels and when it started (process_start_time_seconds).
type RunningBuild struct {
	Service  string
	Revision string
	Modified bool
	Started  time.Time
}

var (
	buildInfoLine = regexp.MustCompile(`^lr_build_info\{([^}]*)\}`)
	buildLabel    = regexp.MustCompile(`(\w+)="([^"]*)"`)
	startLine     = regexp.MustCompile(`^process_start_time_seconds(?:\{[^}]*\})? ([0-9.e+]+)`)
)

// ScrapeBuild reads the running build from metricsURL, an ops listener's
// /metrics page (the launchready doctor's and the console's way to see what
// each replica runs).
func ScrapeBuild(ctx context.Context, hc *http.Client, metricsURL string) (RunningBuild, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return RunningBuild{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return RunningBuild{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return RunningBuild{}, fmt.Errorf("GET %s: %d", metricsURL, resp.StatusCode)
	}
	var b RunningBuild
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := buildInfoLine.FindStringSubmatch(line); m != nil && !found {
			for _, l := range buildLabel.FindAllStringSubmatch(m[1], -1) {
				switch l[1] {
				case "service":
					b.Service = l[2]
				case "revision":
					b.Revision = l[2]
				case "modified":
					b.Modified = l[2] == "true"
				}
			}
			found = b.Service != "" && b.Revision != ""
		}
		if m := startLine.FindStringSubmatch(line); m != nil {
			if secs, err := strconv.ParseFloat(m[1], 64); err == nil {
				b.Started = time.Unix(0, int64(secs*float64(time.Second))).UTC()
			}
		}
	}
	if !found {
		return RunningBuild{}, fmt.Errorf("GET %s: no lr_build_info: an older build, or not a Launch Ready ops listener", metricsURL)
	}
	return b, nil
}
