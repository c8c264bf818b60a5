// Package browser starts Debian's chromium for chromedp tests and keeps
// their screenshots: one headless browser per test, closed at its end,
// and a directory of artifacts that outlives the test run.
package browser

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/launchready/launchready/test/testkit"
)

// Chromium finds Debian's chromium: CHROMIUM_PATH, else chromium on PATH.
// There is no skip: the browser tests fail loudly where it is missing.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM_PATH"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is required for the browser tests and was not found (apt-get install -y chromium, or set CHROMIUM_PATH)")
	return ""
}

// Start runs one headless chromium for the test, within timeout, and
// returns the context of its first tab. More tabs are chromedp.NewContext
// of it.
func Start(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	// Not t.TempDir: chromium's helper processes may still write to the
	// profile for a moment after the browser is gone, and TempDir fails
	// the test when its removal does.
	profile, err := os.MkdirTemp("", "chromium-profile-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Chromium(t)),
		chromedp.Headless, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(profile),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox.
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		if !testkit.Poll(10*time.Second, 100*time.Millisecond, func() bool { return os.RemoveAll(profile) == nil }) {
			t.Logf("chromium profile %s left behind", profile)
		}
	})
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// Artifacts is the directory a test keeps its screenshots in: $env when
// set, else .artifacts/<sub> next to the test's package (git-ignored). It
// is logged, so a run says where to look.
func Artifacts(t testing.TB, env, sub string) string {
	t.Helper()
	dir := os.Getenv(env)
	if dir == "" {
		dir = filepath.Join(".artifacts", sub)
	}
	// #nosec G703 -- the directory is the test runner's own setting.
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// Screenshot saves the viewport as dir/<name>.png, and says so on failure.
func Screenshot(t testing.TB, ctx context.Context, dir, name string) string {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.CaptureScreenshot(&png)); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	file := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "-").Replace(name)+".png")
	if err := os.WriteFile(file, png, 0o600); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	return file
}
