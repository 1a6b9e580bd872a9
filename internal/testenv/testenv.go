// Package testenv decides what a test does when a real part it needs (root,
// a kernel feature, a runtime, a built binary) is missing: outside CI it is
// skipped with a message that names what is missing and how to get it; in CI
// (CI=true) it fails, because CI must run everything.
package testenv

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips tb, or fails it in CI, when anything is missing. Each entry
// names one missing prerequisite and, where it helps, how to get it.
func Missing(tb testing.TB, missing ...string) {
	tb.Helper()
	if len(missing) == 0 {
		return
	}
	msg := "missing prerequisite: " + strings.Join(missing, "; ")
	if InCI() {
		tb.Fatal(msg + " (CI=true: not skipping)")
	}
	tb.Skip(msg)
}

// ModuleRoot returns the module's root directory: the first directory with a
// go.mod from the test's working directory (its package's) up.
func ModuleRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

// ErrPortInUse marks a server start that failed because a port was taken
// between FreePorts and the server's bind: OnFreePorts then tries again on
// other ports.
var ErrPortInUse = errors.New("port already in use")

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago. Another process may take one before the caller's server binds
// it: start servers through OnFreePorts.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// OnFreePorts calls start with n ports from FreePorts and, as long as
// start's error wraps ErrPortInUse, again with new ports, up to attempts
// calls in all. It returns start's last error (nil once a start worked).
func OnFreePorts(tb testing.TB, n, attempts int, start func(ports []int) error) error {
	tb.Helper()
	var err error
	for attempt := 1; attempt <= attempts; attempt++ {
		var ports []int
		if ports, err = FreePorts(n); err != nil {
			return fmt.Errorf("free ports: %w", err)
		}
		if err = start(ports); err == nil || !errors.Is(err, ErrPortInUse) {
			return err
		}
		tb.Logf("attempt %d on ports %v: %v; retrying on other ports", attempt, ports, err)
	}
	return err
}

// AddrInUse reports whether a server's output says that its bind failed
// because the address was taken (EADDRINUSE, as Go, nginx, redis and
// Python print it).
func AddrInUse(output string) bool {
	return strings.Contains(strings.ToLower(output), "address already in use")
}

// PortOwners returns the processes that hold a listening TCP socket on
// port (any local address, IPv4 or IPv6), from /proc/net/tcp{,6} and the
// processes' descriptors: a server that came up on a port can be told from
// another process that took the port first.
func PortOwners(port int) ([]int, error) {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return nil, nil
	}
	var pids []int
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && inodes[target] {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			if !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	slices.Sort(pids)
	return pids, nil
}
