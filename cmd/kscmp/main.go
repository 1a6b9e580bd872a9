// Command kscmp learns which system calls workloads make, recommends minimal
// KubeArmorSeccompPolicy files, merges them into seccomp profiles and
// installs those profiles. This package only wires the CLI (flags, options,
// exit codes); the work is done in the packages of each stage: discover,
// api/report, recommend, api, merge, deploy and its agent, webhook and host
// (docs/architecture.md).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], streams{in: os.Stdin, out: os.Stdout, err: os.Stderr})
	stop()
	os.Exit(code)
}
