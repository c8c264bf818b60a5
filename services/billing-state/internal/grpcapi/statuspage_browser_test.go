package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/logging"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/display"
	"github.com/launchready/launchready/services/billing-state/internal/portal"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/services/billing-state/internal/statuspage"
	"github.com/launchready/launchready/test/testkit/browser"
	"github.com/launchready/launchready/test/testkit/journey"
)

// phone is a screen the status page must work on.
type phone struct {
	name          string
	width, height int64
}

// phones are two iPhone and two Android sizes, in CSS pixels.
var phones = []phone{
	{"iphone-se", 375, 667}, {"iphone-14", 390, 844},
	{"android-small", 360, 800}, {"android-large", 412, 915},
}

// pageReport is what pageCheckJS measures on the page as the browser laid
// it out.
type pageReport struct {
	Lang         string  `json:"lang"`
	InnerWidth   float64 `json:"innerWidth"`
	ScrollWidth  float64 `json:"scrollWidth"`
	RootFontPx   float64 `json:"rootFontPx"`
	Dark         bool    `json:"dark"`
	Headline     string  `json:"headline"`
	HeadlineIn   bool    `json:"headlineIn"`
	Tone         string  `json:"tone"`
	Action       string  `json:"action"`
	ActionIn     bool    `json:"actionIn"`
	TextElements int     `json:"textElements"`
	// LowContrast lists each text element under 4.5:1, with its ratio.
	LowContrast []string `json:"lowContrast"`
}

// pageCheckJS measures the page: horizontal overflow, whether the
// headline and the action button lie inside the viewport, and the WCAG
// contrast ratio of every rendered element with text of its own against
// its effective background (its own and its ancestors' background colours
// composited over the first opaque one).
const pageCheckJS = `(() => {
  const vw = window.innerWidth, vh = window.innerHeight;
  const inView = (el) => {
    if (!el || el.getClientRects().length === 0) return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0 && r.right <= vw && r.bottom <= vh;
  };
  const rgba = (s) => {
    const m = /^rgba?\(([^)]+)\)$/.exec(s.trim());
    if (!m) throw new Error("unparsed colour " + s);
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    if (layers.length === 0 || layers[layers.length - 1][3] < 1) throw new Error("no opaque background behind " + el.tagName);
    let bg = layers.pop();
    while (layers.length) bg = over(layers.pop(), bg);
    return bg;
  };
  const lum = (c) => {
    const lin = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
  };
  const low = [];
  let count = 0;
  for (const el of document.body.querySelectorAll("*")) {
    const own = Array.from(el.childNodes).some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim() !== "");
    const cs = getComputedStyle(el);
    if (!own || el.getClientRects().length === 0 || cs.visibility !== "visible") continue;
    count++;
    const bg = background(el);
    const fg = over(rgba(cs.color), bg);
    const l1 = lum(fg), l2 = lum(bg);
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    if (ratio < 4.5) low.push((el.id || el.tagName) + " " + ratio.toFixed(2) + ":1 (" + cs.color + " on " + bg.slice(0, 3).join(",") + ")");
  }
  const action = document.getElementById("action");
  const actionShown = action && action.getClientRects().length > 0;
  return {
    lang: document.documentElement.lang,
    innerWidth: vw,
    scrollWidth: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
    rootFontPx: parseFloat(getComputedStyle(document.documentElement).fontSize),
    dark: window.matchMedia("(prefers-color-scheme: dark)").matches,
    headline: document.getElementById("headline").textContent,
    headlineIn: inView(document.getElementById("headline")),
    tone: document.querySelector("main.card").getAttribute("data-tone"),
    action: actionShown ? action.getAttribute("data-action") : "",
    actionIn: actionShown ? inView(action) : false,
    textElements: count,
    lowContrast: low,
  };
})()`

// portalAt opens every portal session at one URL.
type portalAt string

func (u portalAt) CreatePortalSession(context.Context, string, string) (string, error) {
	return string(u), nil
}

// statusPageOver serves the status page over bd's store, with viewer's
// clock, as billing-state serves it on STATUS_PAGE_ADDR, with a billing
// portal that PORTAL_RETURN_URLS lets lead back to the page.
func statusPageOver(t *testing.T, bd *bundle, viewer *display.Viewer) (*httptest.Server, *statuspage.Signer) {
	t.Helper()
	secrets, err := statuspage.ParseSecrets(strings.Repeat("s", statuspage.MinSecretBytes))
	if err != nil {
		t.Fatal(err)
	}
	signer := statuspage.NewSigner(secrets, time.Hour, nil)
	const pageURL = "https://status.launchready.test"
	returnURLs, err := portal.ParseReturnURLs(pageURL + "/s/")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	h := statuspage.Handler(statuspage.Options{Signer: signer, Viewer: viewer, Changes: bd.watchConn, Logger: logging.Discard(),
		Portal: portalAt("https://billing.stripe.test/p/session"), ReturnURLs: returnURLs, PageURL: pageURL,
		Status: func(ctx context.Context, id string) (*billingv1.CustomerStatus, error) {
			st, err := bd.store.Status(ctx, id)
			if errors.Is(err, state.ErrNotFound) {
				return nil, statuspage.ErrNotFound
			}
			return st, err
		}}, stop)
	srv := httptest.NewServer(h)
	t.Cleanup(func() { close(stop); srv.CloseClientConnections(); srv.Close() })
	return srv, signer
}

// TestStatusPageOnPhones renders every display state, each reached by real
// fixture events applied to the store, in chromium at two iPhone and two
// Android sizes, at 100% and 200% text size and in light and dark mode.
// 200% text is the browser's default font size doubled (Page.setFontSizes,
// as a user's font-size setting does), which the page's rem sizes follow.
// Every state is rendered in English at each size, text size and scheme,
// and in German on the two smallest phones at 200%.
// On each: no horizontal scrolling, the headline and the action button
// inside the viewport, every text at 4.5:1 contrast or more, and a lang on
// the html. A screenshot of each is kept; STATUS_PAGE_DOCS, when set, also
// gets the 390x844 light 100% English ones named by kind, for the README.
func TestStatusPageOnPhones(t *testing.T) {
	bd := setup(t, setupOptions{policy: canonical.Policy{PastDueEntitled: true}})
	cats, err := display.Load("")
	if err != nil {
		t.Fatal(err)
	}
	viewer := &display.Viewer{Catalogues: cats, Facts: bd.store.DisplayFacts, Now: bd.clock.now}
	srv, signer := statusPageOver(t, bd, viewer)
	dir := browser.Artifacts(t, "STATUS_PAGE_ARTIFACTS", "statuspage")
	docs := os.Getenv("STATUS_PAGE_DOCS")

	cases := displayCases()
	ids := make([]string, len(cases))
	for i, tc := range cases {
		ids[i] = "cus_page" + string(rune('a'+i))
		b := journey.New(t, ids[i], displayBase)
		for _, ev := range tc.events(b) {
			if _, err := bd.store.ApplyEvent(context.Background(), ev, state.ApplyOptions{}); err != nil {
				t.Fatalf("%s: apply %s: %v", tc.name, ev.GetType(), err)
			}
		}
		if tc.prepare != nil {
			tc.prepare(t, bd, b)
		}
	}

	// One browser and one tab: the emulated screen, text size and colour
	// scheme change under the open page, which lays itself out again.
	ctx := browser.Start(t, 2*time.Minute)
	if err := chromedp.Run(ctx, network.Enable()); err != nil {
		t.Fatal(err)
	}
	renders, shots := 0, 0
	var now emulated
	start := time.Now()
	seen := map[words]bool{}
	for i, tc := range cases {
		// Cases that show the same words and action are one state here.
		key := words{tc.en.headline, tc.en.detail + "\x00" + display.ActionName(tc.action)}
		if seen[key] {
			continue
		}
		seen[key] = true
		bd.clock.set(displayBase.Add(tc.now))
		token, _ := signer.Sign(ids[i], 0)
		r, n := renderState(t, ctx, &now, tc, srv.URL+"/s/"+token, dir, docs)
		renders, shots = renders+r, shots+n
		if t.Failed() {
			break
		}
	}
	t.Logf("%d renders of %d states checked, %d screenshots, in %s", renders, len(seen), shots, time.Since(start).Round(time.Millisecond))
}

// renderState renders a state in English on every phone at 100% and 200%
// text in light and dark, and in German at 200% on the two smaller phones
// (the longer words on the tightest screens). It keeps a screenshot of each
// English light render and of every failing one, and returns how many it
// rendered and kept.
func renderState(t *testing.T, tab context.Context, now *emulated, tc displayCase, url, dir, docs string) (renders, shots int) {
	t.Helper()
	for _, loc := range []struct {
		tag string
		w   words
	}{{"en", tc.en}, {"de", tc.de}} {
		if err := chromedp.Run(tab,
			network.SetExtraHTTPHeaders(network.Headers{"Accept-Language": loc.tag}),
			chromedp.Navigate(url),
			chromedp.WaitVisible("#headline", chromedp.ByID),
		); err != nil {
			t.Errorf("%s (%s): open the page: %v", tc.name, loc.tag, err)
			return
		}
		for _, ph := range phones {
			for _, scale := range []int64{1, 2} {
				if loc.tag != "en" && (scale == 1 || ph.height > 800) {
					continue
				}
				for _, scheme := range []string{"light", "dark"} {
					name := fmt.Sprintf("%s-%s-%dx%d-text%d-%s", slug(tc.name), loc.tag, ph.width, ph.height, scale*100, scheme)
					var r pageReport
					if err := chromedp.Run(tab, now.to(emulated{ph, scale, scheme}), chromedp.Evaluate(pageCheckJS, &r)); err != nil {
						browser.Screenshot(t, tab, dir, name+"-failed")
						t.Errorf("%s: %v", name, err)
						return
					}
					renders++
					if checkRender(t, name, tc, loc.tag, loc.w, ph, scale, scheme, r) && (loc.tag != "en" || scheme != "light") {
						continue
					}
					file := browser.Screenshot(t, tab, dir, name)
					shots++
					if docs != "" && loc.tag == "en" && ph.width == 390 && scale == 1 {
						copyFile(t, file, filepath.Join(docs, slug(tc.name)+".png"))
					}
				}
			}
		}
	}
	return
}

// emulated is the screen, text size and colour scheme a tab emulates; they
// outlast a navigation.
type emulated struct {
	ph     phone
	scale  int64
	scheme string
}

// to emulates want, sending only what differs from e, which it then is.
func (e *emulated) to(want emulated) chromedp.Tasks {
	var do chromedp.Tasks
	if e.ph != want.ph {
		do = append(do, emulation.SetDeviceMetricsOverride(want.ph.width, want.ph.height, 1, true))
	}
	if e.scale != want.scale {
		do = append(do, page.SetFontSizes(&page.FontSizes{Standard: 16 * want.scale, Fixed: 13 * want.scale}))
	}
	if e.scheme != want.scheme {
		do = append(do, emulation.SetEmulatedMedia().WithFeatures([]*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: want.scheme}}))
	}
	*e = want
	return do
}

// checkRender holds one render to the rules of the page, and reports
// whether it kept them.
func checkRender(t *testing.T, name string, tc displayCase, lang string, w words, ph phone, scale int64, scheme string, r pageReport) bool {
	t.Helper()
	ok := true
	fail := func(format string, args ...any) {
		t.Helper()
		ok = false
		t.Errorf(name+": "+format, args...)
	}
	if r.InnerWidth != float64(ph.width) || r.RootFontPx != float64(16*scale) || r.Dark != (scheme == "dark") {
		fail("the emulation did not take: width %v, root font %vpx, dark %v", r.InnerWidth, r.RootFontPx, r.Dark)
	}
	if r.Lang != lang {
		fail("html lang %q, want %q", r.Lang, lang)
	}
	if r.Headline != w.headline || r.Tone != display.ToneName(tc.tone) {
		fail("headline %q tone %q, want %q %q", r.Headline, r.Tone, w.headline, display.ToneName(tc.tone))
	}
	if r.ScrollWidth > r.InnerWidth {
		fail("scrolls horizontally: %v wide in %v", r.ScrollWidth, r.InnerWidth)
	}
	if !r.HeadlineIn {
		fail("the headline is not inside the viewport")
	}
	// The page's button leads to the billing portal; the detail says what
	// to do for the other actions.
	want := ""
	if statuspage.PortalServes(tc.action) {
		want = display.ActionName(tc.action)
	}
	if r.Action != want {
		fail("action %q, want %q", r.Action, want)
	}
	if want != "" && !r.ActionIn {
		fail("the action button is not inside the viewport")
	}
	if r.TextElements < 2 {
		fail("only %d text elements measured", r.TextElements)
	}
	for _, l := range r.LowContrast {
		fail("contrast under 4.5:1: %s", l)
	}
	return ok
}

func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}
