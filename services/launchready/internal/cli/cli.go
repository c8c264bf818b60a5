// Package cli is what the launchready subcommands share in reading their
// command lines: one flag set per subcommand that prints its usage, flags
// accepted after the arguments as operators type them, and listen addresses
// turned into ones a client can dial.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
)

// FlagSet returns the flag set of the subcommand name; on -h or a usage
// error it prints usage and then the flags to stderr.
func FlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args into fs and returns the arguments that are not flags.
// Flags may follow them ("status cus_123 --json"), which the flag package
// alone stops at; after "--" every argument is taken as it is. When ok is
// false the command should exit with code: 0 after -h, 2 on bad usage
// (fs has printed why).
func Parse(fs *flag.FlagSet, args []string) (rest []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, false
			}
			return nil, 2, false
		}
		left := fs.Args()
		if len(left) == 0 {
			return rest, 0, true
		}
		if left[0] == "--" {
			return append(rest, left[1:]...), 0, true
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
}

// ParseFlagsOnly parses args into fs for a command that takes flags and
// nothing else: an argument that is not a flag prints the usage. When ok is
// false the command should exit with code, as after Parse.
func ParseFlagsOnly(fs *flag.FlagSet, args []string) (code int, ok bool) {
	rest, code, ok := Parse(fs, args)
	if ok && len(rest) != 0 {
		fs.Usage()
		return 2, false
	}
	return code, ok
}

// Dialable turns a listen address (":9090", "0.0.0.0:8080") into one a
// client on this machine can dial, as a user would type it.
func Dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
