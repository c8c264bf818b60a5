// Command genconfig writes the NATS server configurations generated from
// pkg/natsauth's model into the repository whose root is its argument.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/launchready/launchready/pkg/natsauth"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: genconfig REPOSITORY_ROOT")
		os.Exit(2)
	}
	files := natsauth.GeneratedFiles()
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(os.Args[1], p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil { // #nosec G301 G703 -- go generate names the output directory; the files are committed config, readable like any other
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := os.WriteFile(full, []byte(files[p]), 0o644); err != nil { // #nosec G306 G703 -- go generate names the output directory; the files are committed config, readable like any other
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("wrote", p)
	}
}
