package service

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
)

// fakeCgroup writes files under a temporary root: path -> content.
func fakeCgroup(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCgroupMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
		ok    bool
	}{
		{"v2 inside the container's own namespace", map[string]string{
			"proc/self/cgroup":      "0::/\n",
			"cgroup/memory.max":     "268435456\n",
			"cgroup/cpu.max":        "100000 100000\n",
			"cgroup/memory.current": "1000\n",
		}, 256 << 20, true},
		{"v2 unlimited", map[string]string{
			"proc/self/cgroup":  "0::/\n",
			"cgroup/memory.max": "max\n",
		}, 0, false},
		{"v2 nested: the tightest ancestor wins", map[string]string{
			"proc/self/cgroup":                       "0::/kubepods/pod1/ctr\n",
			"cgroup/kubepods/memory.max":             "max\n",
			"cgroup/kubepods/pod1/memory.max":        "201326592\n",
			"cgroup/kubepods/pod1/ctr/memory.max":    "402653184\n",
			"cgroup/kubepods/pod1/ctr/memory.events": "oom 0\n",
		}, 192 << 20, true},
		{"v2 path not visible: the root's limit", map[string]string{
			"proc/self/cgroup":  "0::/docker/abc\n",
			"cgroup/memory.max": "134217728\n",
		}, 128 << 20, true},
		{"v1 with other controllers", map[string]string{
			"proc/self/cgroup": "12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n0::/\n",
			"cgroup/memory/docker/abc/memory.limit_in_bytes": "536870912\n",
		}, 512 << 20, true},
		{"v1 unlimited", map[string]string{
			"proc/self/cgroup":                    "11:memory:/\n",
			"cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}, 0, false},
		{"nothing readable", map[string]string{}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeCgroup(t, tc.files)
			got, ok := cgroupMemoryLimit(filepath.Join(root, "cgroup"), filepath.Join(root, "proc/self/cgroup"))
			if got != tc.want || ok != tc.ok {
				t.Fatalf("limit %d %v, want %d %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestSetMemoryLimitUsesNinetyPercentUnlessGOMEMLIMIT(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	root := fakeCgroup(t, map[string]string{"proc/self/cgroup": "0::/\n", "cgroup/memory.max": "1000000000\n"})
	cg, self := filepath.Join(root, "cgroup"), filepath.Join(root, "proc/self/cgroup")

	if got := setMemoryLimit(config.Map(map[string]string{"GOMEMLIMIT": "200MiB"}), cg, self, logging.Discard()); got != 0 || debug.SetMemoryLimit(-1) != before {
		t.Fatalf("with GOMEMLIMIT set: set %d, runtime limit %d; want it left alone", got, debug.SetMemoryLimit(-1))
	}
	if got := setMemoryLimit(config.Map(nil), cg, self, logging.Discard()); got != 900000000 || debug.SetMemoryLimit(-1) != 900000000 {
		t.Fatalf("set %d, runtime limit %d; want 900000000", got, debug.SetMemoryLimit(-1))
	}
}
