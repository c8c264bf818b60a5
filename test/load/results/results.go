// Package results writes test/load/RESULTS.md, which several benchmarks
// share: loadbench's report is the body, and each other benchmark owns one
// section, kept between markers, so that a run of one rewrites only its
// own part and keeps the others' figures.
package results

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

var sectionRE = regexp.MustCompile(`(?s)<!-- section:([a-z0-9-]+) -->\n.*?<!-- /section:([a-z0-9-]+) -->\n?`)

func begin(name string) string { return "<!-- section:" + name + " -->\n" }
func end(name string) string   { return "<!-- /section:" + name + " -->\n" }

// sections returns the marked sections of md, in order, and md without them.
func sections(md string) (kept []string, rest string) {
	rest = sectionRE.ReplaceAllStringFunc(md, func(s string) string {
		kept = append(kept, strings.TrimRight(s, "\n")+"\n")
		return ""
	})
	return kept, rest
}

func read(path string) (string, error) {
	b, err := os.ReadFile(path) // #nosec G304 -- the report the operator named (-out), read to keep its other sections
	if os.IsNotExist(err) {
		return "", nil
	}
	return string(b), err
}

// WriteBody replaces everything of path outside the marked sections with
// body, and keeps the sections after it.
func WriteBody(path, body string) error {
	old, err := read(path)
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	kept, _ := sections(old)
	out := strings.TrimRight(body, "\n") + "\n"
	for _, s := range kept {
		out += "\n" + s
	}
	return os.WriteFile(path, []byte(out), 0o644) // #nosec G306 -- the report is a document for people to read and commit
}

// WriteSection replaces the section called name in path with body, or
// appends it; the rest of the file is kept.
func WriteSection(path, name, body string) error {
	old, err := read(path)
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	block := begin(name) + strings.TrimRight(body, "\n") + "\n" + end(name)
	replaced := false
	out := sectionRE.ReplaceAllStringFunc(old, func(s string) string {
		m := sectionRE.FindStringSubmatch(s)
		if m[1] != name {
			return s
		}
		replaced = true
		return block
	})
	if !replaced {
		out = strings.TrimRight(out, "\n") + "\n\n" + block
	}
	return os.WriteFile(path, []byte(out), 0o644) // #nosec G306 -- the report is a document for people to read and commit
}
