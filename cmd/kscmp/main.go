// Command kscmp learns which system calls workloads make, recommends minimal
// KubeArmorSeccompPolicy files, merges them into seccomp profiles and
// installs those profiles. This package only wires the CLI (flags, options,
// exit codes); the work is done in the packages of each stage: discover,
// api/report, recommend, api, merge, deploy and its agent, webhook and host
// (docs/architecture.md).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// signalGrace is how long a command has to finish after SIGINT or SIGTERM
// cancelled its context (discover writes its report then, the agent stops
// its watches) before kscmp ends without it.
const signalGrace = 10 * time.Second

// longerGrace, when set (nanoseconds), replaces the grace of a command that
// needs more after a signal: discover --cluster stops its recorders, then
// collects and deletes them.
var longerGrace atomic.Int64

func main() {
	code := runUntilSignalled(os.Stderr, signalGrace, func(ctx context.Context) int {
		return run(ctx, os.Args[1:], streams{in: os.Stdin, out: os.Stdout, err: os.Stderr})
	})
	os.Exit(code)
}

// runUntilSignalled runs fn with a context that SIGINT and SIGTERM cancel,
// and returns its exit code. A signal always ends the process, also when fn
// is blocked where a context cannot reach it (an open of a FIFO, a hung
// file system): a second signal, or grace after the first, returns
// 128+signal without waiting for fn (main then exits, which ends fn).
func runUntilSignalled(stderr io.Writer, grace time.Duration, fn func(context.Context) int) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan int, 1)
	go func() { done <- fn(ctx) }()
	var (
		first   os.Signal
		timeout <-chan time.Time
	)
	for {
		select {
		case code := <-done:
			return code
		case s := <-sigs:
			if first != nil {
				fmt.Fprintf(stderr, "kscmp: %v again: ended before the command finished\n", s)
				return signalCode(s)
			}
			if g := time.Duration(longerGrace.Load()); g > grace {
				grace = g
			}
			first, timeout = s, time.After(grace)
			cancel()
		case <-timeout:
			fmt.Fprintf(stderr, "kscmp: %v: the command did not finish within %v; ended\n", first, grace)
			return signalCode(first)
		}
	}
}

// signalCode is the exit code of a process ended by s, as a shell reports
// it: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
func signalCode(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 128
}
