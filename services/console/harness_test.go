package console_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/services/console"
	chromium "github.com/launchready/launchready/test/testkit/browser"
)

// running is a console started by startConsole.
type running struct {
	url   string // http://127.0.0.1:port
	dbURL string
	nats  *natstest.Server
}

// startConsole runs the whole service, as `launchready dev` does, on a
// database of its own and an embedded NATS server with production's users.
func startConsole(t *testing.T, extra map[string]string) *running {
	t.Helper()
	return startConsoleOn(t, pgtest.NewDatabase(t), natstest.Start(t), extra)
}

// startConsoleOn runs the console on database db and NATS server ns, which
// other services of the test may share.
func startConsoleOn(t *testing.T, db string, ns *natstest.Server, extra map[string]string) *running {
	t.Helper()
	env := ns.Env(natsauth.Console)
	maps.Copy(env, map[string]string{"DATABASE_URL": db, "CONSOLE_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"})
	maps.Copy(env, extra)
	cfg, err := console.ConfigFromEnv(config.Map(env))
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan map[string]string, 1)
	cfg.Logger, cfg.Ready = logging.Discard(), func(a map[string]string) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- console.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("console stopped with %v", err)
		}
	})
	select {
	case a := <-ready:
		return &running{url: "http://" + a["console"], dbURL: db, nats: ns}
	case err := <-done:
		t.Fatalf("console did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("console did not start within 60s")
	}
	return nil
}

// addStaff adds a local account with a password.
func (r *running) addStaff(t *testing.T, email, role, password string) {
	t.Helper()
	if _, err := console.AddStaff(t.Context(), r.dbURL, console.NewStaff{Email: email, Role: role, Password: password, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
}

// browser is one headless chromium for a test, closed at its end: the
// start-up every browser test in the repository shares.
func browser(t *testing.T) context.Context {
	t.Helper()
	return chromium.Start(t, 90*time.Second)
}

// artifacts is where screenshots are kept (git-ignored).
func artifacts(t *testing.T) string {
	dir := os.Getenv("CONSOLE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(".artifacts", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves the page as <test>-<name>.png.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	file := filepath.Join(artifacts(t), strings.ReplaceAll(t.Name(), "/", "_")+"-"+name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if abs, err := filepath.Abs(file); err == nil {
		file = abs
	}
	t.Logf("screenshot %s: %s", name, file)
}

// run runs actions, and on failure keeps a screenshot of where it stopped.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action) {
	t.Helper()
	if err := chromedp.Run(ctx, actions...); err != nil {
		screenshot(t, ctx, "failed-"+strings.ReplaceAll(what, " ", "-"))
		t.Fatalf("%s: %v", what, err)
	}
}

// signIn opens page, which sends the browser to the sign-in form, and
// submits it.
func signIn(page, email, password string) chromedp.Action {
	return chromedp.Tasks{
		chromedp.Navigate(page),
		chromedp.WaitVisible("#login-form"),
		chromedp.SendKeys("#email", email),
		chromedp.SendKeys("#password", password),
		chromedp.Click("#sign-in"),
	}
}
