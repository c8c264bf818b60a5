package service

import (
	"runtime/debug"

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
