package service

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/launchready/launchready/pkg/config"
)

// memoryLimitShare is the part of the container's memory limit the Go
// runtime aims to stay under. The rest is for what the runtime does not
// count (thread stacks, cgo, the binary's pages) and for the moment between
// a surge and the collection it triggers; past the container limit the
// kernel kills the process without a word.
const memoryLimitShare = 0.9

// unlimitedV1 is where cgroup v1 starts to mean "no limit": it reports the
// largest page-aligned int64 instead of a word.
const unlimitedV1 = 1 << 62

// SetMemoryLimit sets the Go memory limit to 90 % of the container's memory
// limit, read from the cgroup (v2 memory.max, or v1 memory.limit_in_bytes),
// unless GOMEMLIMIT is set, which the runtime has applied already. Without
// a limit it does nothing. It returns the limit it set, 0 if none.
func SetMemoryLimit(getenv config.Getenv, log *slog.Logger) int64 {
	return setMemoryLimit(getenv, "/sys/fs/cgroup", "/proc/self/cgroup", log)
}

func setMemoryLimit(getenv config.Getenv, cgroupRoot, selfCgroup string, log *slog.Logger) int64 {
	if strings.TrimSpace(getenv("GOMEMLIMIT")) != "" {
		return 0
	}
	limit, ok := cgroupMemoryLimit(cgroupRoot, selfCgroup)
	if !ok {
		return 0
	}
	goLimit := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(goLimit)
	log.Info("memory limit from the container", "container_limit_bytes", limit, "gomemlimit_bytes", goLimit)
	return goLimit
}

// cgroupMemoryLimit returns the tightest memory limit on the process's
// cgroup and its ancestors. selfCgroup is /proc/self/cgroup, which names
// the cgroup: "0::/path" on v2, "N:memory:/path" on v1. Inside a container
// the path may not exist under root (the container sees its own cgroup as
// the root), so every ancestor up to root is read and the smallest limit
// wins.
func cgroupMemoryLimit(root, selfCgroup string) (int64, bool) {
	v2, v1 := "/", "/"
	if data, err := os.ReadFile(selfCgroup); err == nil { // #nosec G304 -- /proc/self/cgroup, or a test's copy of it
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			f := strings.SplitN(sc.Text(), ":", 3)
			if len(f) != 3 {
				continue
			}
			switch {
			case f[0] == "0" && f[1] == "":
				v2 = f[2]
			case contains(strings.Split(f[1], ","), "memory"):
				v1 = f[2]
			}
		}
	}
	if limit, ok := tightest(root, v2, "memory.max"); ok {
		return limit, true
	}
	return tightest(filepath.Join(root, "memory"), v1, "memory.limit_in_bytes")
}

func tightest(root, cgroup, file string) (int64, bool) {
	var limit int64
	found := false
	for p := path.Clean("/" + cgroup); ; p = path.Dir(p) {
		b, err := os.ReadFile(filepath.Join(root, p, file)) // #nosec G304 G703 -- a file under the cgroup filesystem named by the kernel
		if err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && n < unlimitedV1 && (!found || n < limit) {
				limit, found = n, true
			}
		}
		if p == "/" {
			return limit, found
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
