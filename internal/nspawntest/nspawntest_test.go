package nspawntest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// testTimeout bounds each test; a machine boots and powers off in well under
// a second on an idle machine.
const testTimeout = 2 * time.Minute

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// treeState is what a machine must not change in the tree: the entries and
// modification times of a few directories a booting systemd writes to.
func treeState(t *testing.T, tree string) map[string]string {
	t.Helper()
	state := map[string]string{}
	for _, d := range []string{".", "etc", "etc/systemd/system", "tmp", "var", "var/log", "run", "usr/local/lib"} {
		entries, err := os.ReadDir(filepath.Join(tree, d))
		if errors.Is(err, fs.ErrNotExist) {
			state[d] = "missing"
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(tree, d))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		state[d] = fi.ModTime().String() + " " + strings.Join(names, ",")
	}
	return state
}

// checkGone fails t when anything of the closed machine m is left: the
// systemd-nspawn process, its PID 1, a process with its name on the
// command line, or its cgroups.
func checkGone(t *testing.T, m *Machine) {
	t.Helper()
	if m.cmd.ProcessState == nil {
		t.Errorf("systemd-nspawn (pid %d) was not waited for", m.cmd.Process.Pid)
	}
	if start, err := procStartTime(m.Leader()); err == nil && start == m.leaderStart && !isZombie(m.Leader()) {
		t.Errorf("the machine's PID 1 (pid %d) still runs", m.Leader())
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(data), "--machine="+m.Name()+"\x00") {
			t.Errorf("process %s still runs: %q", filepath.Dir(p), data)
		}
	}
	for _, d := range m.cgroups {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s left behind (stat: %v)", d, err)
		}
	}
}

func readResult(t *testing.T, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("result %s: %v", name, err)
	}
	return string(data)
}

// TestBoot boots the tree with one oneshot unit that records the kernel
// release, its cgroup and its seccomp status into a bound directory, writes
// a marker into the machine's root and powers the machine off.
func TestBoot(t *testing.T) {
	tree := Tree(t)
	ctx := testContext(t)
	before := treeState(t, tree)
	results := t.TempDir()
	const probe = `[Unit]
Description=nspawntest probe
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'uname -r > /results/uname; cat /proc/self/cgroup > /results/cgroup; grep Seccomp /proc/self/status > /results/seccomp; echo written by the machine > /kscmp-marker'
`
	start := time.Now()
	m, err := Start(ctx, t, Options{
		Tree:  tree,
		Binds: []Bind{{Host: results, Guest: "/results"}},
		Units: map[string]string{"probe.service": probe},
		Wants: []string{"probe.service"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	roundTrip := time.Since(start)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("boot and poweroff round trip: %v", roundTrip)
	t.Logf("machine %s: leader pid %d, cgroup %s", m.Name(), m.Leader(), m.Cgroup())

	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(readResult(t, results, "uname")), unix.ByteSliceToString(uts.Release[:]); got != want {
		t.Errorf("uname -r in the machine = %q, want the host's %q", got, want)
	}
	cgroup := readResult(t, results, "cgroup")
	t.Logf("/proc/self/cgroup of probe.service:\n%s", cgroup)
	if !strings.Contains(cgroup, ":/system.slice/probe.service\n") {
		t.Errorf("probe.service's cgroup does not end in /system.slice/probe.service:\n%s", cgroup)
	}
	seccomp := readResult(t, results, "seccomp")
	t.Logf("seccomp status of probe.service (systemd-nspawn's own filter):\n%s", seccomp)
	// systemd-nspawn's own filter, as the package documents it: filter
	// mode, five filters.
	if seccomp != "Seccomp:\t2\nSeccomp_filters:\t5\n" {
		t.Errorf("seccomp status of a unit in the machine: %q, want filter mode (2) with systemd-nspawn's 5 filters", seccomp)
	}
	if !strings.HasPrefix(m.Cgroup(), "/") || !strings.HasSuffix(m.Cgroup(), "/payload") {
		t.Errorf("Cgroup() = %q, want /.../payload", m.Cgroup())
	}

	if _, err := os.Lstat(filepath.Join(tree, "kscmp-marker")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the machine's /kscmp-marker is in the tree (lstat: %v)", err)
	}
	after := treeState(t, tree)
	for d, s := range before {
		if after[d] != s {
			t.Errorf("tree changed: %s was %q, is %q", d, s, after[d])
		}
	}
	checkGone(t, m)
}

// TestSeccompDropIn proves that systemd in the machine enforces a
// SystemCallFilter= drop-in, the way kscmp applies one: mk.service runs
// `mkdir /tmp/x` without a filter; apply.service then writes a drop-in into
// /etc/systemd/system/mk.service.d/, runs `systemctl daemon-reload` and
// `systemctl restart mk.service`, removes the drop-in and does both again.
func TestSeccompDropIn(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	results := t.TempDir()
	const mk = `[Unit]
Description=mkdir probe

[Service]
Type=oneshot
ExecStart=/bin/sh -c '{ mkdir /tmp/x && rmdir /tmp/x && echo mkdir ok; } >> /results/mkdir.log 2>&1; grep Seccomp_filters /proc/self/status >> /results/filters.log'
`
	const apply = `[Unit]
Description=applies and removes a seccomp drop-in for mk.service
After=mk.service
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=oneshot
ExecStart=/bin/mkdir -p /etc/systemd/system/mk.service.d
ExecStart=/bin/sh -c 'printf "[Service]\\nSystemCallFilter=~mkdir mkdirat\\nSystemCallErrorNumber=EPERM\\n" > /etc/systemd/system/mk.service.d/50-kscmp-seccomp.conf'
ExecStart=/bin/systemctl daemon-reload
ExecStart=/bin/systemctl restart mk.service
ExecStart=/bin/sh -c 'systemctl show --property=DropInPaths mk.service > /results/dropins'
ExecStart=/bin/rm -r /etc/systemd/system/mk.service.d
ExecStart=/bin/systemctl daemon-reload
ExecStart=/bin/systemctl restart mk.service
`
	m, err := Start(ctx, t, Options{
		Binds: []Bind{{Host: results, Guest: "/results"}},
		Units: map[string]string{"mk.service": mk, "apply.service": apply},
		Wants: []string{"mk.service", "apply.service"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	log := readResult(t, results, "mkdir.log")
	t.Logf("mkdir.log:\n%s", log)
	filters := readResult(t, results, "filters.log")
	t.Logf("Seccomp_filters of the three runs:\n%s", filters)
	// systemd-nspawn's 5 filters; the drop-in stacks one per x86 ABI.
	if want := "Seccomp_filters:\t5\nSeccomp_filters:\t8\nSeccomp_filters:\t5\n"; filters != want {
		t.Errorf("Seccomp_filters of the runs without, with and again without the drop-in:\n%s\nwant 5, 8 (3 more: x86-64, x86, x32) and 5", filters)
	}
	t.Logf("mk.service with the drop-in: %s", readResult(t, results, "dropins"))
	lines := strings.Split(strings.TrimSpace(log), "\n")
	if len(lines) != 3 {
		t.Fatalf("mkdir.log has %d lines, want 3 (no filter, drop-in, drop-in removed):\n%s", len(lines), log)
	}
	if lines[0] != "mkdir ok" || lines[2] != "mkdir ok" {
		t.Errorf("without the drop-in mkdir failed:\n%s", log)
	}
	if !strings.Contains(lines[1], "Operation not permitted") {
		t.Errorf("with the drop-in: %q, want mkdir to fail with \"Operation not permitted\"", lines[1])
	}
	if !strings.Contains(readResult(t, results, "dropins"), "/etc/systemd/system/mk.service.d/50-kscmp-seccomp.conf") {
		t.Errorf("systemd did not load the drop-in")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	checkGone(t, m)
}

// TestHostView checks what the host sees of a running machine: where a
// service's cgroup is, that the service shares the leader's mount
// namespace, and that Command controls systemd in the machine. gated.service
// starts at boot and waits behind a gate file until the host has looked;
// late.service is started by the host once the machine is ready, and then
// restarted with a drop-in the host wrote through Root().
func TestHostView(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	results := t.TempDir()
	// The gate is in ExecStart=: a unit still in ExecStartPre= would hold up
	// the end of the boot, and so Ready.
	const gated = `[Unit]
Description=waits for the host
SuccessAction=poweroff
FailureAction=poweroff

[Service]
ExecStart=/bin/sh -c 'until [ -e /results/go ]; do sleep 0.05; done; cat /proc/self/cgroup > /results/cgroup.tmp && mv /results/cgroup.tmp /results/cgroup'
`
	const late = `[Unit]
Description=started by the host

[Service]
Type=oneshot
ExecStart=/bin/sh -c '{ mkdir /tmp/late && rmdir /tmp/late && echo mkdir ok; } > /results/late 2>&1; true'
`
	m, err := Start(ctx, t, Options{
		Binds: []Bind{{Host: results, Guest: "/results"}},
		Units: map[string]string{"gated.service": gated, "late.service": late},
		Wants: []string{"gated.service"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(ctx); err != nil {
		t.Fatal(err)
	}

	// The waiting service seen from the host.
	mounts, err := cgroupMounts()
	if err != nil {
		t.Fatal(err)
	}
	v2, ok := mounts["cgroup2"]
	if !ok {
		testenv.Missing(t, "a cgroup v2 hierarchy (mount cgroup2, e.g. at /sys/fs/cgroup/unified)")
	}
	service := m.Cgroup() + "/system.slice/gated.service"
	procs, err := os.ReadFile(filepath.Join(v2.join(service), "cgroup.procs"))
	if err != nil {
		t.Fatalf("the service's cgroup seen from the host: %v", err)
	}
	pids := strings.Fields(string(procs))
	if len(pids) == 0 {
		t.Fatalf("no process in %s", service)
	}
	pid, err := strconv.Atoi(pids[0])
	if err != nil {
		t.Fatal(err)
	}
	got, err := readCgroup(pid)
	if err != nil {
		t.Fatal(err)
	}
	if got != service {
		t.Errorf("host view of the service's cgroup: %q, want %q", got, service)
	}
	t.Logf("gated.service (host pid %d) is in the host's cgroup %s", pid, got)
	svcNS, err1 := os.Readlink(filepath.Join("/proc", pids[0], "ns/mnt"))
	leaderNS, err2 := os.Readlink(filepath.Join("/proc", strconv.Itoa(m.Leader()), "ns/mnt"))
	if err1 != nil || err2 != nil || svcNS != leaderNS {
		t.Errorf("mount namespaces: service %q (%v), leader %q (%v); want the same", svcNS, err1, leaderNS, err2)
	}

	out, err := m.Command(ctx, "systemctl", "show", "--property=ActiveState,SubState", "gated.service").CombinedOutput()
	if err != nil {
		t.Fatalf("systemctl show in the machine: %v: %s", err, out)
	}
	if string(out) != "ActiveState=active\nSubState=running\n" {
		t.Errorf("systemctl show gated.service: %q, want active/running", out)
	}
	leaderCgroup, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(m.Leader()), "cgroup"))
	t.Logf("/proc/<leader>/cgroup on the host:\n%s", leaderCgroup)

	// The host starts a unit, then applies a drop-in through Root() and
	// restarts it.
	run := func(args ...string) {
		t.Helper()
		if out, err := m.Command(ctx, "systemctl", args...).CombinedOutput(); err != nil {
			t.Fatalf("systemctl %s in the machine: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("start", "late.service")
	if got := readResult(t, results, "late"); got != "mkdir ok\n" {
		t.Errorf("late.service without a drop-in: %q, want \"mkdir ok\"", got)
	}
	dropIns := filepath.Join(m.Root(), "etc/systemd/system/late.service.d")
	if err := os.MkdirAll(dropIns, 0o755); err != nil {
		t.Fatal(err)
	}
	dropIn := "[Service]\nSystemCallFilter=~mkdir mkdirat\nSystemCallErrorNumber=EPERM\n"
	if err := os.WriteFile(filepath.Join(dropIns, "50-kscmp-seccomp.conf"), []byte(dropIn), 0o644); err != nil {
		t.Fatal(err)
	}
	run("daemon-reload")
	run("restart", "late.service")
	if got := readResult(t, results, "late"); !strings.Contains(got, "Operation not permitted") {
		t.Errorf("late.service with a drop-in written by the host: %q, want mkdir to fail with \"Operation not permitted\"", got)
	}
	if data, err := os.ReadFile(filepath.Join(m.Root(), "etc/hostname")); err != nil || string(data) != "kscmp-nspawn\n" {
		t.Errorf("Root()/etc/hostname: %q, %v", data, err)
	}

	if err := os.WriteFile(filepath.Join(results, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	inside, err := WaitFile(ctx, filepath.Join(results, "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(inside), "0::/system.slice/gated.service\n") {
		t.Errorf("the service's own view of its cgroup:\n%s", inside)
	}
	if err := m.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	checkGone(t, m)
}

// TestClose kills a running machine, and Start removes what a test binary
// that died without its cleanups left behind: a machine cgroup (here with a
// process in it) whose owner is gone. The test owns that stale cgroup: it
// runs in a cgroup of its own (enterOwnCgroup) and makes the stale one below
// it, where only a Start of this process looks; a Start of another test
// binary, which looks below its own cgroup, is shown not to see it. Not
// parallel: the process moves to another cgroup meanwhile.
func TestClose(t *testing.T) {
	ctx := testContext(t)
	if os.Geteuid() != 0 {
		Tree(t) // skips
	}
	outer, err := ownHierarchies()
	if err != nil {
		t.Fatal(err)
	}
	hs := enterOwnCgroup(t, outer)
	// This process with another start time: an owner that is gone.
	stale := fmt.Sprintf("%s%d-1-deadbeef", cgroupPrefix, os.Getpid())
	script := `for d; do mkdir "$d" && echo $$ > "$d/cgroup.procs" || exit 1; done; exec sleep 600`
	var dirs []string
	for _, h := range hs {
		dirs = append(dirs, filepath.Join(h.dir, stale))
	}
	sleeper := exec.Command("/bin/sh", append([]string{"-c", script, "sh"}, dirs...)...)
	sleeper.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	sleeperDone := make(chan struct{})
	var sleeperErr error
	go func() {
		sleeperErr = sleeper.Wait()
		close(sleeperDone)
	}()
	t.Cleanup(func() {
		_ = sleeper.Process.Kill()
		<-sleeperDone
		_ = removeCgroups(dirs, 5*time.Second)
	})
	// Wait until the process is in the stale cgroup (in every hierarchy).
	for len(cgroupPids(dirs[len(dirs)-1:])) == 0 {
		select {
		case <-sleeperDone:
			t.Fatalf("setting up the stale cgroup: %v", sleeperErr)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if _, seen := staleCgroups(hs)[stale]; !seen {
		t.Fatalf("the stale cgroup %s is not stale to this process's Start", stale)
	}
	if _, seen := staleCgroups(outer)[stale]; seen {
		t.Fatalf("the stale cgroup %s is visible to a Start in the outer cgroup: another test binary could remove it", stale)
	}

	m, err := Start(ctx, t, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Start removes stale cgroups before it returns; the sleeper's kill
	// may take a moment to be reaped.
	select {
	case <-sleeperDone:
	case <-time.After(10 * time.Second):
		t.Fatalf("the process in the stale cgroup %s still runs after Start", stale)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stale cgroup %s not removed (stat: %v)", d, err)
		}
	}

	if err := m.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(ctx); err == nil {
		t.Error("Wait after Close: nil, want an error (the machine was killed)")
	}
	checkGone(t, m)
	if _, err := os.Stat(filepath.Join(propagateDir, m.Name())); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("systemd-nspawn's propagation directory of %s is left (stat: %v)", m.Name(), err)
	}
}

// enterOwnCgroup moves this process into a new cgroup below its own one in
// each hierarchy of hs and returns the new hierarchies; the test's cleanup
// moves it back and removes the cgroup. The new cgroup is named like a
// machine's (owned by this process), so that a Start of another process
// leaves it alone while this one runs and removes it should this test
// binary die before its cleanup.
func enterOwnCgroup(t *testing.T, hs []hierarchy) []hierarchy {
	t.Helper()
	name, err := cgroupName("own")
	if err != nil {
		t.Fatal(err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	var inner []hierarchy
	var made []string
	t.Cleanup(func() {
		for _, h := range hs {
			if err := os.WriteFile(filepath.Join(h.dir, "cgroup.procs"), pid, 0); err != nil {
				t.Errorf("moving the test back to %s: %v", h.dir, err)
			}
		}
		if err := removeCgroups(made, 5*time.Second); err != nil {
			t.Error(err)
		}
	})
	for _, h := range hs {
		d := filepath.Join(h.dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		made = append(made, d)
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), pid, 0); err != nil {
			t.Fatalf("moving the test into %s: %v", d, err)
		}
		inner = append(inner, hierarchy{v2: h.v2, dir: d})
	}
	got, err := ownHierarchies()
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if i >= len(inner) || got[i] != inner[i] {
			t.Fatalf("after the move this process's cgroups are %+v, want %+v", got, inner)
		}
	}
	return inner
}

// TestTimeout: a machine that outlives Options.Timeout is killed, and
// Start or Wait says so.
func TestTimeout(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	m, err := Start(ctx, t, Options{Timeout: time.Second})
	if err == nil {
		err = m.Wait(ctx)
	}
	if err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("got %v, want an error about the timeout", err)
	}
	if m != nil {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		checkGone(t, m)
	}
}
