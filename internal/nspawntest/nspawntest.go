// Package nspawntest boots a real systemd in a systemd-nspawn machine for
// tests, so that a test can prove what systemd really does with a unit or a
// drop-in (for example that a SystemCallFilter= drop-in is enforced).
//
// The machine boots a minimal Debian bookworm tree (systemd, systemd-sysv,
// dbus; about 100 MB) that hack/nspawn-tree.sh builds once with debootstrap
// and caches outside the repository (see Tree). Its root is an overlay with
// a tmpfs on top of the tree (--volatile=overlay): the machine may write
// anywhere, /etc/systemd/system included, and the tree stays unchanged.
// Booting and powering off takes about half a second.
//
// Typical use: results come back through a bound host directory, and the
// unit powers the machine off when it is done.
//
//	results := t.TempDir()
//	m, err := nspawntest.Start(ctx, t, nspawntest.Options{
//		Binds: []nspawntest.Bind{{Host: results, Guest: "/results"}},
//		Units: map[string]string{"probe.service": "[Unit]\nSuccessAction=poweroff\nFailureAction=poweroff\n" +
//			"[Service]\nType=oneshot\nExecStart=/bin/sh -c 'uname -r > /results/uname'\n"},
//		Wants: []string{"probe.service"},
//	})
//	if err != nil {
//		t.Fatal(err)
//	}
//	if err := m.Wait(ctx); err != nil { // powered off; the error holds the console's end
//		t.Fatal(err)
//	}
//
// A test that does things from the host while the machine runs (start a
// recorder, look at cgroups) waits for the boot to finish with Ready, then
// drives systemd in the machine with Command, which runs a program in the
// machine's namespaces (nsenter):
//
//	if err := m.Ready(ctx); err != nil { ... }          // systemd reached its default target
//	// ... host-side setup, e.g. a recorder for m.Cgroup()+"/system.slice/foo.service" ...
//	m.Command(ctx, "systemctl", "start", "foo.service").CombinedOutput()
//	os.WriteFile(m.Root()+"/etc/systemd/system/foo.service.d/50-kscmp.conf", dropIn, 0o644) // after MkdirAll
//	m.Command(ctx, "systemctl", "daemon-reload").Run()
//	m.Command(ctx, "systemctl", "restart", "foo.service").Run()
//
// A unit started at boot that must wait for the host waits in its ExecStart=
// for a gate file in a bound directory, which the host creates when it is
// ready (ExecStart=/bin/sh -c 'until [ -e /results/go ]; do sleep 0.05;
// done; exec ...'). Not in ExecStartPre=: a unit still starting holds up the
// end of the boot, and so Ready. WaitFile waits on the host for a file a
// unit writes.
//
// How the machine is set up (systemd 252, Debian bookworm, verified by this
// package's tests):
//
//   - systemd-nspawn runs with --boot --register=no --keep-unit
//     --volatile=overlay --console=read-only --notify-ready=yes
//     --link-journal=no: no systemd-machined or host systemd is needed.
//   - Options.Units are written to a host directory that is bound read-only
//     at UnitDir (/usr/local/lib/systemd/system, in systemd's unit path);
//     systemd loads them at boot, and drop-ins in
//     /etc/systemd/system/<unit>.d/ apply to them. Options.Wants become
//     systemd.wants=<unit> arguments after the directory: systemd-nspawn
//     passes them to systemd, which in a container takes its own arguments
//     as the kernel command line. The same way the journal is forwarded to
//     the console (systemd.journald.forward_to_console=1), so the console
//     log (LogPath, included in errors and logged when the test failed)
//     shows what the units print.
//   - systemd-nspawn reports the PID of the machine's PID 1 (Leader) and,
//     when systemd in the machine has booted, READY=1 (Ready) to an abstract
//     $NOTIFY_SOCKET.
//   - Every process in the machine, the units included, runs under
//     systemd-nspawn's own seccomp filter ("Seccomp: 2", "Seccomp_filters:
//     5" in /proc/PID/status). A unit's SystemCallFilter= stacks three more
//     filters on top (one per x86 ABI: x86-64, x86, x32), and systemd
//     enforces it: mkdir fails with EPERM under SystemCallFilter=~mkdir
//     mkdirat, SystemCallErrorNumber=EPERM applied as a drop-in with
//     daemon-reload and restart, and works again when the drop-in is removed.
//   - The hostname in the machine is the tree's, kscmp-nspawn; the machine
//     name (Name) is random. The tree has a machine-id (no first boot), and
//     its login prompt and timers are masked: nothing runs that the test did
//     not start besides systemd, journald, dbus and logind.
//
// Cgroups, as the host sees them: Start creates a cgroup of its own for each
// machine, <the test's cgroup>/kscmp-nspawn-<test pid>-<start time>-<random>,
// in the cgroup v2 hierarchy and, on a hybrid or legacy layout, in the v1
// name=systemd one, and starts systemd-nspawn in it. With --keep-unit,
// systemd-nspawn moves itself into "supervisor" below it and the machine into
// "payload", which systemd in the machine uses as its root cgroup (the
// machine has a cgroup namespace: its services see /system.slice/foo.service).
// So, with Cgroup() = /kscmp-nspawn-…/payload (the path in /proc/PID/cgroup,
// "0::" line):
//
//	machine's systemd (PID 1):  Cgroup()+"/init.scope"
//	a service foo.service:      Cgroup()+"/system.slice/foo.service"
//
// On this project's test VM (no systemd on the host, hybrid layout with
// cgroup v2 at /sys/fs/cgroup/unified, the test in the root cgroup) that is
// /sys/fs/cgroup/unified/kscmp-nspawn-…/payload/system.slice/foo.service;
// the same path exists in the name=systemd hierarchy. The other v1
// controllers are left alone: the machine stays in the test's cgroups there. A service shares the leader's mount namespace
// (/proc/<Leader>/ns/mnt) unless its unit gives it its own (PrivateTmp=,
// ProtectSystem=, ...).
//
// Clean-up: Close (also run by t.Cleanup) kills every process in the
// machine's cgroups (cgroup.kill, or SIGKILL to each) and removes them.
// When the test binary dies without its cleanups, systemd-nspawn gets
// SIGTERM (parent-death signal) and powers the machine off; the next Start
// removes cgroups whose owning test process is gone, and kills what is left
// in them.
//
// Everything needs root; Start and Tree skip the test otherwise (or fail it
// with CI=true, see internal/testenv). Machines may run in parallel.
package nspawntest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// DefaultTimeout is a machine's lifetime when Options.Timeout is zero:
// after it the machine is killed.
const DefaultTimeout = 2 * time.Minute

// UnitDir is where the units of Options.Units appear in the machine: a
// read-only directory in systemd's unit search path, below /etc, so that
// drop-ins in /etc/systemd/system/<unit>.d/ apply to them as they would to
// a unit installed by a package.
const UnitDir = "/usr/local/lib/systemd/system"

// treeScript is the script that builds the tree, relative to the repository.
const treeScript = "hack/nspawn-tree.sh"

// treeBuildTimeout bounds a cold build of the tree (about a minute).
const treeBuildTimeout = 15 * time.Minute

// exitMissing is the exit status of hack/nspawn-tree.sh when a prerequisite
// is missing and cannot be installed.
const exitMissing = 3

// standardPath is the PATH of the processes started here.
const standardPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Tree returns the directory of the Debian tree that machines boot, built
// by hack/nspawn-tree.sh (cached in $KSCMP_NSPAWN_TREE, default
// $HOME/.cache/kscmp-nspawn/bookworm; a cold build takes about a minute).
// The script also installs systemd-nspawn (Debian package
// systemd-container) when it is missing. When the test does not run as
// root, or a prerequisite is missing and cannot be installed, Tree skips the
// test with a message naming it; with CI=true it fails the test instead.
func Tree(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root privileges (systemd-nspawn machines need root)")
	}
	script, err := findScript()
	if err != nil {
		t.Fatalf("nspawntest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), treeBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == exitMissing:
		testenv.Missing(t, lastLine(stderr.String()))
	case err != nil:
		t.Fatalf("nspawntest: %s: %v\n%s", script, err, tail(stderr.String(), 40))
	}
	dir := strings.TrimSpace(stdout.String())
	if !filepath.IsAbs(dir) {
		t.Fatalf("nspawntest: %s printed %q, want the tree's absolute path", script, dir)
	}
	return dir
}

// findScript finds hack/nspawn-tree.sh in the working directory (a test
// runs in its package's directory) or one of its parents.
func findScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding %s: %w", treeScript, err)
	}
	for {
		p := filepath.Join(dir, treeScript)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s not found in the working directory or its parents", treeScript)
		}
		dir = parent
	}
}

// Bind is a bind mount of a host file or directory into the machine.
type Bind struct {
	// Host is the host path (made absolute); Guest is the absolute path in
	// the machine, created when missing. Neither may contain a colon.
	Host, Guest string
	// ReadOnly mounts it read-only.
	ReadOnly bool
}

// Options describes a machine.
type Options struct {
	// Tree is the directory to boot; default Tree(t). It is never written:
	// the machine's root is an overlay with a tmpfs on top of it.
	Tree string
	// Binds are bind mounts of host paths into the machine, for example a
	// t.TempDir() where units write their results.
	Binds []Bind
	// Units are unit files to add, unit name ("foo.service") → content. They
	// appear read-only in UnitDir, so systemd loads them at boot, and
	// drop-ins in /etc/systemd/system/<name>.d/ apply to them.
	Units map[string]string
	// Wants are units to start at boot (systemd.wants=<unit> on systemd's
	// command line: a Wants= of the default target).
	Wants []string
	// Args are more arguments for systemd in the machine, in kernel
	// command line form (for example "systemd.log_level=debug").
	Args []string
	// Timeout is the machine's lifetime; after it the machine is killed and
	// Wait reports that. Default DefaultTimeout.
	Timeout time.Duration
}

// Machine is a running systemd-nspawn machine.
type Machine struct {
	nsenter string
	name    string
	leader  int
	// leaderStart is the leader's start time, which tells it from a later
	// process with the same PID.
	leaderStart uint64
	cgroup      string
	logPath     string
	cmd         *exec.Cmd
	cgroups     []string // the machine's cgroup directory in each hierarchy
	conn        *net.UnixConn

	done     chan struct{} // closed when systemd-nspawn has exited
	waitErr  error         // systemd-nspawn's exit, valid after done
	ready    chan struct{} // closed when systemd in the machine is ready
	timedOut atomic.Bool
	timer    *time.Timer

	closeOnce sync.Once
	closeErr  error
}

// Start boots opts.Tree (default Tree(t)) as a machine and returns once the
// machine's PID 1 (systemd) runs, without waiting for its boot to finish
// (see Ready). The machine is killed, and everything set up for it removed,
// by Close or at the latest in t.Cleanup; its console output is then
// logged when the test failed. ctx bounds the start only; Options.Timeout
// bounds the machine's life. It skips the test (or fails it with CI=true)
// when not run as root or systemd-nspawn is missing.
func Start(ctx context.Context, t testing.TB, opts Options) (*Machine, error) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root privileges (systemd-nspawn machines need root)")
	}
	if opts.Tree == "" {
		opts.Tree = Tree(t)
	}
	nspawn, err := exec.LookPath("systemd-nspawn")
	if err != nil {
		testenv.Missing(t, "systemd-nspawn (apt-get install systemd-container, or run hack/nspawn-tree.sh as root)")
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		testenv.Missing(t, "nsenter (apt-get install util-linux)")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	suffix, err := randomHex(4)
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	m := &Machine{
		nsenter: nsenter,
		name:    machineName(suffix),
		logPath: filepath.Join(dir, "console.log"),
		done:    make(chan struct{}),
		ready:   make(chan struct{}),
	}
	args, err := nspawnArgs(m.name, dir, opts)
	if err != nil {
		return nil, err
	}

	// Its own cgroup, so that Close can kill every process of the machine
	// (systemd-nspawn with --keep-unit makes "payload" and "supervisor"
	// cgroups below the one it starts in).
	hs, err := ownHierarchies()
	if err != nil {
		return nil, fmt.Errorf("nspawntest: %w", err)
	}
	for name, dirs := range staleCgroups(hs) {
		err := killCgroups(dirs, 5*time.Second)
		if err == nil {
			err = removeCgroups(dirs, 5*time.Second)
		}
		if err == nil {
			err = removePropagateDir(machineName(name[strings.LastIndexByte(name, '-')+1:]))
		}
		if err != nil {
			t.Logf("nspawntest: left-over machine %s: %v", name, err)
		}
	}
	cgName, err := cgroupName(suffix)
	if err != nil {
		return nil, fmt.Errorf("nspawntest: %w", err)
	}
	var procs []string
	for _, h := range hs {
		d := filepath.Join(h.dir, cgName)
		if err := os.Mkdir(d, 0o755); err != nil {
			_ = removeCgroups(m.cgroups, time.Second)
			return nil, fmt.Errorf("nspawntest: creating the machine's cgroup: %w", err)
		}
		m.cgroups = append(m.cgroups, d)
		procs = append(procs, filepath.Join(d, "cgroup.procs"))
	}

	// systemd-nspawn reports the leader's PID and, with --notify-ready=yes,
	// the machine's READY=1 to $NOTIFY_SOCKET. An abstract socket: no path
	// length limit, nothing to remove.
	m.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "@kscmp-nspawn-" + cgName, Net: "unixgram"})
	if err != nil {
		_ = removeCgroups(m.cgroups, time.Second)
		return nil, fmt.Errorf("nspawntest: notify socket: %w", err)
	}
	leader := make(chan int, 1)
	go m.readNotify(leader)

	logFile, err := os.OpenFile(m.logPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		_ = m.conn.Close()
		_ = removeCgroups(m.cgroups, time.Second)
		return nil, fmt.Errorf("nspawntest: %w", err)
	}
	defer logFile.Close()

	// A shell moves itself into the new cgroups and becomes systemd-nspawn.
	script := `while [ "$1" != -- ]; do echo $$ > "$1" || exit 1; shift; done; shift; exec "$@"`
	shArgs := append([]string{"-c", script, "sh"}, procs...)
	shArgs = append(shArgs, "--", nspawn)
	m.cmd = exec.Command("/bin/sh", append(shArgs, args...)...)
	m.cmd.Env = []string{standardPath, "NOTIFY_SOCKET=@kscmp-nspawn-" + cgName, "TERM=dumb", "SYSTEMD_COLORS=0"}
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	m.cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// When the test binary dies without its cleanups, systemd-nspawn
		// powers the machine off; the next Start removes what is left.
		Pdeathsig: syscall.SIGTERM,
	}
	if err := m.cmd.Start(); err != nil {
		_ = m.conn.Close()
		_ = removeCgroups(m.cgroups, time.Second)
		return nil, fmt.Errorf("nspawntest: starting %s: %w", nspawn, err)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		close(m.done)
	}()
	m.timer = time.AfterFunc(opts.Timeout, func() {
		m.timedOut.Store(true)
		_ = killCgroups(m.cgroups, 5*time.Second)
	})
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("nspawntest: %v", err)
		}
		if t.Failed() {
			t.Logf("nspawntest: machine %s console (%s), last lines:\n%s", m.name, m.logPath, tail(m.Log(), 60))
		}
	})

	select {
	case m.leader = <-leader:
	case <-m.done:
		_ = m.Close()
		return nil, fmt.Errorf("nspawntest: machine %s exited before it started (%s)%s", m.name, m.exitReason(), m.logTail())
	case <-ctx.Done():
		_ = m.Close()
		return nil, fmt.Errorf("nspawntest: starting machine %s: %w%s", m.name, ctx.Err(), m.logTail())
	}
	if m.leaderStart, err = procStartTime(m.leader); err != nil {
		_ = m.Close()
		return nil, fmt.Errorf("nspawntest: machine %s: leader: %w%s", m.name, err, m.logTail())
	}
	cg, err := readCgroup(m.leader)
	if err != nil {
		_ = m.Close()
		return nil, fmt.Errorf("nspawntest: machine %s: %w", m.name, err)
	}
	m.cgroup = strings.TrimSuffix(cg, "/init.scope")
	return m, nil
}

// machineName returns the name of the machine whose cgroup name ends in
// suffix.
func machineName(suffix string) string { return "kscmp-" + suffix }

// propagateDir is where systemd-nspawn keeps a directory per machine for
// "machinectl bind"; it is left behind when systemd-nspawn is killed.
const propagateDir = "/run/systemd/nspawn/propagate"

// removePropagateDir removes systemd-nspawn's propagation directory of the
// machine called name.
func removePropagateDir(name string) error {
	if err := os.RemoveAll(filepath.Join(propagateDir, name)); err != nil {
		return fmt.Errorf("removing systemd-nspawn's propagation directory: %w", err)
	}
	return nil
}

// nspawnArgs returns systemd-nspawn's arguments for a machine called name
// whose unit files are written below dir.
func nspawnArgs(name, dir string, opts Options) ([]string, error) {
	args := []string{
		"--directory=" + opts.Tree,
		"--machine=" + name,
		"--boot",
		// No systemd-machined and no scope unit: the machine stays in the
		// cgroup systemd-nspawn is started in (see Start).
		"--register=no",
		"--keep-unit",
		// The root is an overlay: the tree below, a tmpfs on top.
		"--volatile=overlay",
		"--console=read-only",
		"--notify-ready=yes",
		// Never link the machine's journal to the host's /var/log/journal.
		"--link-journal=no",
	}
	for _, b := range opts.Binds {
		host, err := filepath.Abs(b.Host)
		if err != nil {
			return nil, fmt.Errorf("nspawntest: bind %s: %w", b.Host, err)
		}
		if !filepath.IsAbs(b.Guest) || strings.Contains(host+b.Guest, ":") {
			return nil, fmt.Errorf("nspawntest: bind %s → %q: want an absolute guest path and no colons", b.Host, b.Guest)
		}
		flag := "--bind="
		if b.ReadOnly {
			flag = "--bind-ro="
		}
		args = append(args, flag+host+":"+b.Guest)
	}
	if len(opts.Units) > 0 {
		units := filepath.Join(dir, "units")
		if err := os.Mkdir(units, 0o755); err != nil {
			return nil, fmt.Errorf("nspawntest: %w", err)
		}
		for name, content := range opts.Units {
			if name == "" || strings.ContainsAny(name, "/:") || name[0] == '.' {
				return nil, fmt.Errorf("nspawntest: unit name %q", name)
			}
			if err := os.WriteFile(filepath.Join(units, name), []byte(content), 0o644); err != nil {
				return nil, fmt.Errorf("nspawntest: unit %s: %w", name, err)
			}
		}
		args = append(args, "--bind-ro="+units+":"+UnitDir)
	}
	// What follows the options is systemd's command line. In a container
	// systemd (and journald) read their settings from it instead of the
	// kernel's. The journal goes to the console, so the console log also
	// holds what the units print.
	args = append(args, "systemd.journald.forward_to_console=1")
	for _, u := range opts.Wants {
		if u == "" || strings.ContainsAny(u, " /") {
			return nil, fmt.Errorf("nspawntest: unit name %q in Wants", u)
		}
		args = append(args, "systemd.wants="+u)
	}
	return append(args, opts.Args...), nil
}

// readNotify reads systemd-nspawn's notifications until the socket is
// closed: the leader's PID goes to leader, READY=1 closes m.ready.
func (m *Machine) readNotify(leader chan<- int) {
	buf := make([]byte, 4096)
	sentLeader, ready := false, false
	for {
		n, _, err := m.conn.ReadFromUnix(buf)
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			k, v, _ := strings.Cut(line, "=")
			switch {
			case k == "X_NSPAWN_LEADER_PID" && !sentLeader:
				if pid, err := strconv.Atoi(v); err == nil && pid > 0 {
					leader <- pid
					sentLeader = true
				}
			case k == "READY" && v == "1" && !ready:
				close(m.ready)
				ready = true
			}
		}
	}
}

// readCgroup returns the cgroup v2 path of process pid, or its name=systemd
// path on a host without cgroup v2.
func readCgroup(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", fmt.Errorf("cgroup of the leader: %w", err)
	}
	var systemd string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			return parts[2], nil
		}
		if parts[1] == "name=systemd" {
			systemd = parts[2]
		}
	}
	if systemd == "" {
		return "", fmt.Errorf("cgroup of the leader %d: no cgroup v2 or name=systemd line in %q", pid, data)
	}
	return systemd, nil
}

// Name returns the machine's name, kscmp-<random> (systemd-nspawn's
// --machine; the hostname in the machine is the tree's, kscmp-nspawn).
func (m *Machine) Name() string { return m.name }

// Leader returns the host PID of the machine's PID 1, systemd. Its
// /proc/PID/ns/mnt is the machine's mount namespace, which the machine's
// services share unless their unit gives them one of their own
// (PrivateTmp=, ProtectSystem=, ...).
func (m *Machine) Leader() int { return m.leader }

// Root returns the machine's root directory as seen from the host,
// /proc/<leader>/root. Writing below it writes into the machine's overlay
// (never into the tree), for example a drop-in into
// Root()+"/etc/systemd/system/<unit>.d/".
func (m *Machine) Root() string { return fmt.Sprintf("/proc/%d/root", m.leader) }

// Cgroup returns the machine's cgroup as seen from the host: the cgroup v2
// path (relative to the hierarchy's root, as in /proc/PID/cgroup) that
// systemd in the machine uses as its root cgroup. A service foo.service of
// the machine is in Cgroup()+"/system.slice/foo.service" (see the package
// documentation).
func (m *Machine) Cgroup() string { return m.cgroup }

// LogPath returns the file that holds the machine's console output:
// systemd-nspawn's messages, systemd's status lines and, because the
// journal is forwarded to the console, what the units log.
func (m *Machine) LogPath() string { return m.logPath }

// Log returns the console output so far.
func (m *Machine) Log() string {
	data, _ := os.ReadFile(m.logPath)
	return string(data)
}

// logTail returns the last lines of the console output for an error.
func (m *Machine) logTail() string {
	return fmt.Sprintf("\nconsole (%s), last lines:\n%s", m.logPath, tail(m.Log(), 40))
}

// Ready waits until systemd in the machine has finished booting (it sent
// READY=1: every unit of the boot transaction, Options.Wants included, has
// started or failed). It returns an error when the machine exits first or
// ctx is done.
func (m *Machine) Ready(ctx context.Context) error {
	select {
	case <-m.ready:
		return nil
	case <-m.done:
		select {
		case <-m.ready:
			return nil
		default:
		}
		return fmt.Errorf("nspawntest: machine %s exited before it was ready (%s)%s", m.name, m.exitReason(), m.logTail())
	case <-ctx.Done():
		return fmt.Errorf("nspawntest: waiting for machine %s to be ready: %w%s", m.name, ctx.Err(), m.logTail())
	}
}

// Wait waits until the machine has powered off (or was killed) and returns
// nil when it powered off cleanly. It returns an error with the end of the
// console output when systemd-nspawn failed, the machine outlived
// Options.Timeout, or ctx is done first (the machine keeps running then).
func (m *Machine) Wait(ctx context.Context) error {
	select {
	case <-m.done:
	case <-ctx.Done():
		return fmt.Errorf("nspawntest: waiting for machine %s to power off: %w%s", m.name, ctx.Err(), m.logTail())
	}
	if m.waitErr != nil || m.timedOut.Load() {
		return fmt.Errorf("nspawntest: machine %s: %s%s", m.name, m.exitReason(), m.logTail())
	}
	return nil
}

// exitReason describes how systemd-nspawn ended (after done).
func (m *Machine) exitReason() string {
	if m.timedOut.Load() {
		return "killed after its timeout"
	}
	return describeExit(m.waitErr)
}

// Poweroff asks the machine to shut down cleanly (SIGTERM to
// systemd-nspawn, which systemd in the machine takes as a poweroff
// request) without waiting; Wait waits for it.
func (m *Machine) Poweroff() error {
	select {
	case <-m.done:
		return nil
	default:
	}
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("nspawntest: poweroff of machine %s: %w", m.name, err)
	}
	return nil
}

// Command returns a command that runs name with args in the machine, in
// all of the leader's namespaces (through nsenter), for example
// m.Command(ctx, "systemctl", "restart", "foo.service"). The process is
// not part of the machine's cgroup and not under systemd-nspawn's own
// seccomp filter: run workloads as units, and use Command to control them.
func (m *Machine) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	full := append([]string{"--target", strconv.Itoa(m.leader), "--all", "--", name}, args...)
	cmd := exec.CommandContext(ctx, m.nsenter, full...)
	cmd.Env = []string{standardPath}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Close kills the machine and every process it started, waits for
// systemd-nspawn to exit and removes the machine's cgroups. It may be called
// more than once; t.Cleanup calls it too.
func (m *Machine) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Machine) close() error {
	m.timer.Stop()
	var errs []error
	if err := killCgroups(m.cgroups, 10*time.Second); err != nil {
		errs = append(errs, err)
	}
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
			errs = append(errs, fmt.Errorf("systemd-nspawn (pid %d) does not exit", m.cmd.Process.Pid))
		}
	}
	// A killed PID 1 of a PID namespace leaves its cgroup at once but lives
	// on until every other process of the namespace has been reaped.
	if err := m.waitLeaderGone(10 * time.Second); err != nil {
		errs = append(errs, err)
	}
	_ = m.conn.Close()
	if err := removeCgroups(m.cgroups, 10*time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := removePropagateDir(m.name); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("closing machine %s: %w", m.name, errors.Join(errs...))
	}
	return nil
}

// waitLeaderGone waits up to timeout until the machine's PID 1 has exited
// (it is gone, a zombie, or its PID belongs to another process).
func (m *Machine) waitLeaderGone(timeout time.Duration) error {
	if m.leader == 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		start, err := procStartTime(m.leader)
		if err != nil || start != m.leaderStart || isZombie(m.leader) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the machine's PID 1 (pid %d) still runs after %v", m.leader, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// isZombie reports whether process pid has exited and waits to be reaped.
func isZombie(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(data), ')')
	return i >= 0 && strings.HasPrefix(string(data[i+1:]), " Z")
}

// describeExit describes the error of systemd-nspawn's Wait.
func describeExit(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit status 0"
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + ws.Signal().String()
		}
		return fmt.Sprintf("systemd-nspawn exit status %d", ee.ExitCode())
	default:
		return err.Error()
	}
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("nspawntest: random name: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	return tail(strings.TrimSpace(s), 1)
}

// WaitFile waits until path exists on the host, for example a result a unit
// writes into a bound directory, and returns its content. A unit should
// write the file under another name and rename it, so that WaitFile never
// sees it half written.
func WaitFile(ctx context.Context, path string) ([]byte, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		data, err := os.ReadFile(path)
		if err == nil {
			return data, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("nspawntest: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("nspawntest: waiting for %s: %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}
