package display

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// DefaultLocale is the catalogue every other one falls back to, word by word.
const DefaultLocale = "en"

//go:embed locales/*.json
var builtIn embed.FS

// Kinds are the cases a Display can be, in the order the README lists them.
var Kinds = []string{
	"none", "trialing", "trial_ending", "active", "canceled_at_period_end", "canceled",
	"past_due_retry", "past_due", "unpaid", "paused", "incomplete", "refunded", "dispute_open", "unknown",
}

// Actions are the labels a catalogue must name, by DisplayAction.
var Actions = []string{"update_payment_method", "resubscribe", "contact_support", "manage_plan"}

// placeholders each text may use; anything else in braces is a typo that
// would reach a customer, so a catalogue with one is refused.
var placeholders = map[string]bool{"{date}": true, "{amount}": true, "{in_days}": true, "{keeps}": true}

var braces = regexp.MustCompile(`\{[^{}]*\}`)

// texts are the words of one case. The _plain forms are used when the
// date or the amount the main form names is not known.
type texts struct {
	Headline      string `json:"headline"`
	Detail        string `json:"detail"`
	HeadlinePlain string `json:"headline_plain"`
	DetailPlain   string `json:"detail_plain"`
}

type plural struct {
	Zero  string `json:"zero"`
	One   string `json:"one"`
	Other string `json:"other"`
}

type format struct {
	// Date is a pattern of {day}, {month} (a name from Months) and {year}.
	Date    string   `json:"date"`
	Months  []string `json:"months"`
	Decimal string   `json:"decimal"`
	Group   string   `json:"group"`
	// Money is a pattern of {symbol} and {amount}.
	Money  string `json:"money"`
	InDays plural `json:"in_days"`
}

// Catalogue is the words of one locale. Files are JSON of this shape; a
// file may name only some words, the rest come from the locale it
// overrides or from DefaultLocale.
type Catalogue struct {
	Locale      string            `json:"-"`
	Format      format            `json:"format"`
	ActionLabel map[string]string `json:"actions"`
	Unreachable struct {
		Headline string `json:"headline"`
		Detail   string `json:"detail"`
	} `json:"unreachable"`
	// LinkInvalid is what the status page says to an expired or tampered
	// link, with no data.
	LinkInvalid struct {
		Headline string `json:"headline"`
		Detail   string `json:"detail"`
	} `json:"link_invalid"`
	Retry string `json:"retry"`
	Keeps struct {
		Access  string `json:"access"`
		Nothing string `json:"nothing"`
	} `json:"keeps"`
	Cases map[string]texts `json:"cases"`
}

// Catalogues holds every locale's catalogue.
type Catalogues struct {
	byLocale map[string]*Catalogue
}

// Load reads the built-in catalogues and then, when dir is not empty, every
// <locale>.json in dir: a file for a built-in locale overrides its words,
// any other adds a locale. Missing words fall back to DefaultLocale.
// Every problem (bad JSON, an unknown case or action, a placeholder a text
// may not use, a month list that is not twelve long) is reported at once.
func Load(dir string) (*Catalogues, error) {
	raw := map[string][][]byte{}
	read := func(fsys fs.FS, root string) error {
		names, err := fs.Glob(fsys, filepath.Join(root, "*.json"))
		if err != nil {
			return err
		}
		for _, n := range names {
			b, err := fs.ReadFile(fsys, n)
			if err != nil {
				return err
			}
			loc := normalise(strings.TrimSuffix(filepath.Base(n), ".json"))
			raw[loc] = append(raw[loc], b)
		}
		return nil
	}
	if err := read(builtIn, "locales"); err != nil {
		return nil, fmt.Errorf("display catalogues: %w", err)
	}
	if dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("DISPLAY_LOCALES_DIR %s: not a readable directory", dir)
		}
		if err := read(os.DirFS(dir), "."); err != nil {
			return nil, fmt.Errorf("DISPLAY_LOCALES_DIR %s: %w", dir, err)
		}
	}
	var errs []error
	base := &Catalogue{}
	for _, b := range raw[DefaultLocale] {
		if err := decodeOver(base, b); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", DefaultLocale, err))
		}
	}
	cs := &Catalogues{byLocale: map[string]*Catalogue{}}
	locales := make([]string, 0, len(raw))
	for loc := range raw {
		locales = append(locales, loc)
	}
	sort.Strings(locales)
	for _, loc := range locales {
		c := base.clone()
		if loc != DefaultLocale {
			for _, b := range raw[loc] {
				if err := decodeOver(c, b); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", loc, err))
				}
			}
		}
		c.Locale = loc
		if err := c.check(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", loc, err))
		}
		cs.byLocale[loc] = c
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("display catalogues: %w", err)
	}
	return cs, nil
}

// decodeOver decodes b onto c: words b names replace c's, the rest stay.
func decodeOver(c *Catalogue, b []byte) error {
	var over Catalogue
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&over); err != nil {
		return err
	}
	f, o := &c.Format, over.Format
	setIf(&f.Date, o.Date)
	setIf(&f.Decimal, o.Decimal)
	setIf(&f.Group, o.Group)
	setIf(&f.Money, o.Money)
	setIf(&f.InDays.Zero, o.InDays.Zero)
	setIf(&f.InDays.One, o.InDays.One)
	setIf(&f.InDays.Other, o.InDays.Other)
	if len(o.Months) > 0 {
		f.Months = o.Months
	}
	if c.ActionLabel == nil {
		c.ActionLabel = map[string]string{}
	}
	for k, v := range over.ActionLabel {
		if !contains(Actions, k) {
			return fmt.Errorf("unknown action %q", k)
		}
		c.ActionLabel[k] = v
	}
	setIf(&c.Unreachable.Headline, over.Unreachable.Headline)
	setIf(&c.Unreachable.Detail, over.Unreachable.Detail)
	setIf(&c.LinkInvalid.Headline, over.LinkInvalid.Headline)
	setIf(&c.LinkInvalid.Detail, over.LinkInvalid.Detail)
	setIf(&c.Retry, over.Retry)
	setIf(&c.Keeps.Access, over.Keeps.Access)
	setIf(&c.Keeps.Nothing, over.Keeps.Nothing)
	if c.Cases == nil {
		c.Cases = map[string]texts{}
	}
	for k, v := range over.Cases {
		if !contains(Kinds, k) {
			return fmt.Errorf("unknown case %q", k)
		}
		t := c.Cases[k]
		setIf(&t.Headline, v.Headline)
		setIf(&t.Detail, v.Detail)
		setIf(&t.HeadlinePlain, v.HeadlinePlain)
		setIf(&t.DetailPlain, v.DetailPlain)
		c.Cases[k] = t
	}
	return nil
}

func setIf(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (c *Catalogue) clone() *Catalogue {
	out := *c
	out.Format.Months = append([]string(nil), c.Format.Months...)
	out.ActionLabel = map[string]string{}
	for k, v := range c.ActionLabel {
		out.ActionLabel[k] = v
	}
	out.Cases = map[string]texts{}
	for k, v := range c.Cases {
		out.Cases[k] = v
	}
	return &out
}

// check refuses a catalogue a customer would see holes or typos in.
func (c *Catalogue) check() error {
	var errs []error
	if len(c.Format.Months) != 12 {
		errs = append(errs, fmt.Errorf("format.months: want 12 names, have %d", len(c.Format.Months)))
	}
	for _, k := range Kinds {
		t := c.Cases[k]
		if t.Headline == "" || t.Detail == "" {
			errs = append(errs, fmt.Errorf("case %s: headline and detail are required", k))
		}
		for _, s := range []string{t.Headline, t.Detail, t.HeadlinePlain, t.DetailPlain} {
			for _, p := range braces.FindAllString(s, -1) {
				if !placeholders[p] {
					errs = append(errs, fmt.Errorf("case %s: unknown placeholder %s", k, p))
				}
			}
		}
	}
	for _, a := range Actions {
		if c.ActionLabel[a] == "" {
			errs = append(errs, fmt.Errorf("action %s: label required", a))
		}
	}
	if c.Unreachable.Headline == "" || c.Unreachable.Detail == "" || c.Retry == "" || c.LinkInvalid.Headline == "" || c.LinkInvalid.Detail == "" {
		errs = append(errs, errors.New("unreachable, link_invalid and retry: words required"))
	}
	return errors.Join(errs...)
}

// Locales lists the locales served, sorted.
func (cs *Catalogues) Locales() []string {
	out := make([]string, 0, len(cs.byLocale))
	for l := range cs.byLocale {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// For returns the catalogue closest to a BCP 47 tag: the whole tag
// ("de-at"), then its language ("de"), then DefaultLocale.
func (cs *Catalogues) For(tag string) *Catalogue {
	t := normalise(tag)
	for t != "" {
		if c, ok := cs.byLocale[t]; ok {
			return c
		}
		i := strings.LastIndexByte(t, '-')
		if i < 0 {
			break
		}
		t = t[:i]
	}
	return cs.byLocale[DefaultLocale]
}

// normalise lower-cases a tag and writes "_" as "-" ("de_AT" → "de-at").
func normalise(tag string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(tag), "_", "-"))
}
