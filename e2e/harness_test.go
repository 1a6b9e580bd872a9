package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/discover"
	"github.com/kubearmor/kscmp/internal/ocitest"
	"github.com/kubearmor/kscmp/internal/testenv"
	"github.com/kubearmor/kscmp/merge"
	"github.com/kubearmor/kscmp/recommend"
)

// dockerDefaultAllowed is the number of system calls that Docker's default
// seccomp profile allows unconditionally on x86_64, as the issue gives it
// (300); the profiles made here are compared against it.
const dockerDefaultAllowed = 300

// maxDockerShare is the target: a recorded profile allows at most this
// share (percent) of what Docker's default profile allows.
const maxDockerShare = 30

// dataDir is where a server's own configuration and data directory (a
// directory of the test's temp dir) is mounted in its container.
const dataDir = "/srv/e2e"

// ---------------------------------------------------------------------------
// Prerequisites

// requireTools skips (or, with CI=true, fails) the test when the kernel
// recorder cannot run or one of the host programs is missing, naming what
// is missing and how to install it. It returns the paths of runc and crun.
func requireTools(t *testing.T, programs ...string) (runc, crun string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (containers and the eBPF recorder)")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		missing = append(missing, "kernel BTF (/sys/kernel/btf/vmlinux)")
	}
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		testenv.Missing(t, strings.Join(missing, ", ")+" (install the packages with hack/e2e-deps.sh)")
	}
	// ocitest names (and skips or fails for) a missing runtime or busybox.
	return ocitest.Require(t, "runc"), ocitest.Require(t, "crun")
}

// ---------------------------------------------------------------------------
// Containers made from the host

// workload is one server and how its containers are made: every container of
// a test (the server with and without a profile, the probes) shares its root
// filesystem, mounts, user and capabilities.
type workload struct {
	// name is the server's short name in logs ("nginx").
	name string
	// args start the server in the container.
	args []string
	// env is added to the container's environment.
	env []string
	// user runs the server (and the probes).
	user specs.User
	// data is the host directory mounted read-write at dataDir.
	data string
	// tmpfs are the container paths that get an empty tmpfs (besides
	// /tmp, /run and /var).
	tmpfs []string
	// reset, when set, runs before each server start (for the same
	// initial state in every run).
	reset func(t *testing.T)
	// idleThreads, when set, is the number of threads the server's init
	// process has when no request is in flight; stop waits for it first
	// (Python aborts when a daemon thread still writes to stderr while
	// the interpreter shuts down).
	idleThreads int
	// stopSignal stops the server cleanly (exit status 0); it must be one
	// the server handles, as a container's init ignores the others.
	stopSignal syscall.Signal
	// setPort makes args (and the server's configuration in data) use
	// port on 127.0.0.1. Each start picks a port that was free a moment
	// ago, and another one when the server says it could not bind it.
	setPort func(t *testing.T, port int)

	rootfs string
	mounts []specs.Mount
}

// prepare builds the workload's root filesystem: an empty read-only
// directory with the host's /usr and /etc bind-mounted read-only, the
// host's top-level symlinks into /usr (bin, lib, ...) or bind mounts where
// they are directories, tmpfs for /tmp, /run, /var and w.tmpfs, and w.data
// read-write at dataDir.
func (w *workload) prepare(t *testing.T) {
	t.Helper()
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	mkdir := func(p string) {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bind := func(dst, src string, ro bool) {
		mkdir(dst)
		opts := []string{"rbind", "nosuid", "nodev"}
		if ro {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		w.mounts = append(w.mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
	}
	for _, d := range []string{"proc", "dev", "sys", "root"} {
		mkdir(d)
	}
	bind("/usr", "/usr", true)
	bind("/etc", "/etc", true)
	for _, top := range []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		host := "/" + top
		fi, err := os.Lstat(host)
		switch {
		case err != nil:
			continue
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(host)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(root, top)); err != nil {
				t.Fatal(err)
			}
		case fi.IsDir():
			bind(host, host, true)
		}
	}
	for _, p := range append([]string{"/tmp", "/run", "/var"}, w.tmpfs...) {
		mode, opt := os.FileMode(0o755), "mode=755"
		if p == "/tmp" {
			mode, opt = os.ModeSticky|0o777, "mode=1777"
		}
		mkdir(p)
		// runc gives the tmpfs the mode of the directory it is mounted
		// on, whatever the mode option says.
		if err := os.Chmod(filepath.Join(root, p), mode); err != nil {
			t.Fatal(err)
		}
		w.mounts = append(w.mounts, specs.Mount{Destination: p, Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", opt, "size=65536k"}})
	}
	if w.data != "" {
		bind(dataDir, w.data, false)
	}
	w.rootfs = root
}

// container returns a container of the workload running args with the
// given profile (nil: none). It has the host's network (no network
// namespace: servers listen on 127.0.0.1) and lives in the cgroup
// "/<cgroup>", which discover reports as its container id.
func (w *workload) container(runtime string, args []string, profile []byte, cgroup string) ocitest.Container {
	return ocitest.Container{
		Runtime:        runtime,
		Rootfs:         w.rootfs,
		Args:           args,
		Env:            w.env,
		User:           w.user,
		Seccomp:        profile,
		ReadonlyRootfs: true,
		Mounts:         w.mounts,
		Adjust: func(s *specs.Spec) {
			s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
				return ns.Type == specs.NetworkNamespace
			})
			s.Linux.CgroupsPath = "/" + cgroup
		},
	}
}

// newName returns a unique container (cgroup) name with the given prefix.
func newName(t *testing.T, prefix string) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

// server is a running server container.
type server struct {
	w      *workload
	name   string // cgroup name = container id in discover's reports
	port   int
	cancel context.CancelFunc
	done   chan runResult
	result *runResult // set once the run returned
}

type runResult struct {
	res ocitest.Result
	err error
}

// runTimeout bounds one server container's life.
const runTimeout = 3 * time.Minute

// start runs the server in a container with the profile (nil: none) and
// waits until it accepts connections on its port. The container is killed
// and deleted at the end of the test at the latest.
func (w *workload) start(t *testing.T, runtime string, profile []byte) *server {
	t.Helper()
	return w.startNamed(t, runtime, profile, newName(t, "e2e-"+w.name+"-"))
}

// startNamed is start with the container's cgroup name (its id in
// discover's reports) chosen by the caller. The port is one that was free a
// moment ago; when another process took it before the server bound it, the
// server starts again on another one (testenv.OnFreePorts).
func (w *workload) startNamed(t *testing.T, runtime string, profile []byte, name string) *server {
	t.Helper()
	var s *server
	err := testenv.OnFreePorts(t, 1, 3, func(ports []int) error {
		w.setPort(t, ports[0])
		var err error
		s, err = w.tryStart(t, runtime, profile, name, ports[0])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tryStart runs the server on port and waits until it listens there: the
// port's listening socket belongs to a process of the container (not to
// another process that took the port first). A server that ends saying
// the address is in use gives an error that wraps testenv.ErrPortInUse.
func (w *workload) tryStart(t *testing.T, runtime string, profile []byte, name string, port int) (*server, error) {
	t.Helper()
	if w.reset != nil {
		w.reset(t)
	}
	s := &server{w: w, name: name, port: port, done: make(chan runResult, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	s.cancel = cancel
	c := w.container(runtime, w.args, profile, s.name)
	tb := newRunTB(t)
	go func() {
		res, err := ocitest.Run(ctx, tb, c)
		s.done <- runResult{res, err}
	}()
	// Registered after tb's directory, so it runs before that is removed:
	// the runtime's state must outlive the kill.
	t.Cleanup(func() {
		s.kill(t)
		if t.Failed() && s.result != nil {
			r := s.result.res
			t.Logf("%s (%s) container %s: exit %d, %v\nstdout: %s\nstderr: %s\nruntime log: %s",
				w.name, filepath.Base(runtime), s.name, r.ExitCode, s.result.err, tail(r.Stdout), tail(r.Stderr), r.RuntimeLog)
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			if listensIn(port, name) {
				return s, nil
			}
		}
		select {
		case r := <-s.done:
			s.result = &r
			err := fmt.Errorf("%s (%s) ended before listening on %s: %v\nexit %d\nstdout: %s\nstderr: %s\nruntime log: %s",
				w.name, filepath.Base(runtime), addr, r.err, r.res.ExitCode, r.res.Stdout, r.res.Stderr, r.res.RuntimeLog)
			if testenv.AddrInUse(r.res.Stdout + r.res.Stderr) {
				err = fmt.Errorf("%w: %w", testenv.ErrPortInUse, err)
			}
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill(t)
			return nil, fmt.Errorf("%s (%s) does not listen on %s after 30 s", w.name, filepath.Base(runtime), addr)
		}
	}
}

// listensIn reports whether a process in the container's cgroup "/<name>"
// holds the listening socket on port.
func listensIn(port int, name string) bool {
	owners, err := testenv.PortOwners(port)
	if err != nil {
		return false
	}
	for _, pid := range owners {
		if cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); err == nil && inCgroup(string(cg), "/"+name) {
			return true
		}
	}
	return false
}

// runTB is the testing.TB given to an ocitest.Run that runs in its own
// goroutine. Its TempDir makes directories inside one made before the
// caller registers its clean-up: t.TempDir called by Run itself would be
// removed first (clean-ups run last-in first-out), taking the runtime's
// state with it, and a container killed in a clean-up after a failure
// would be left running.
type runTB struct {
	testing.TB
	dir string
	n   *atomic.Int32
}

func newRunTB(t *testing.T) runTB {
	return runTB{TB: t, dir: t.TempDir(), n: new(atomic.Int32)}
}

// TempDir returns a new directory inside r.dir.
func (r runTB) TempDir() string {
	d := filepath.Join(r.dir, fmt.Sprintf("%03d", r.n.Add(1)))
	if err := os.Mkdir(d, 0o700); err != nil {
		r.TB.Errorf("e2e: %v", err)
	}
	return d
}

// kill ends the container (if it still runs) and waits for its run to
// return; the runtime's state is deleted by then.
func (s *server) kill(t *testing.T) {
	if s.result != nil {
		return
	}
	s.cancel()
	select {
	case r := <-s.done:
		s.result = &r
	case <-time.After(30 * time.Second):
		t.Errorf("%s: container %s not gone 30 s after it was killed", s.w.name, s.name)
	}
}

// stop sends the workload's stop signal to the container's init process and
// waits (up to 15 s) for the server to exit; it fails the test unless the
// server exits with status 0. It returns the run's result.
func (s *server) stop(t *testing.T) ocitest.Result {
	t.Helper()
	pid, err := initPID(s.name)
	if err != nil {
		s.kill(t)
		t.Fatalf("%s: %v", s.w.name, err)
	}
	if s.w.idleThreads > 0 {
		if err := waitThreads(pid, s.w.idleThreads, 10*time.Second); err != nil {
			t.Errorf("%s: %v", s.w.name, err)
		}
	}
	if err := syscall.Kill(pid, s.w.stopSignal); err != nil {
		s.kill(t)
		t.Fatalf("%s: kill %d: %v", s.w.name, pid, err)
	}
	select {
	case r := <-s.done:
		s.result = &r
	case <-time.After(15 * time.Second):
		s.kill(t)
		var stderr string
		if s.result != nil {
			stderr = tail(s.result.res.Stderr)
		}
		t.Fatalf("%s did not exit within 15 s of %v:\nstderr: %s", s.w.name, s.w.stopSignal, stderr)
	}
	r := s.result
	s.cancel()
	if r.err != nil || r.res.ExitCode != 0 {
		t.Fatalf("%s stopped with %v: exit %d, %v\nstdout: %s\nstderr: %s\nruntime log: %s",
			s.w.name, s.w.stopSignal, r.res.ExitCode, r.err, tail(r.res.Stdout), tail(r.res.Stderr), r.res.RuntimeLog)
	}
	return r.res
}

// initPID finds the host pid of the init process of the container in the
// cgroup "/<name>": the process in that cgroup whose pid in its own pid
// namespace is 1.
func initPID(name string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil || !inCgroup(string(cg), "/"+name) {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "NSpid:" && f[len(f)-1] == "1" {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no init process in cgroup /%s", name)
}

// waitThreads waits until the process pid has at most n threads.
func waitThreads(pid, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	got := -1
	for {
		status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "Threads:"); ok {
				got, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if got >= 0 && got <= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d still has %d threads after %v (want ≤ %d: requests in flight)", pid, got, timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inCgroup reports whether a /proc/PID/cgroup text places the process in
// the cgroup path in some hierarchy.
func inCgroup(text, path string) bool {
	for _, line := range strings.Split(text, "\n") {
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 && parts[2] == path {
			return true
		}
	}
	return false
}

// tail returns the last 4 KiB of s.
func tail(s string) string {
	if len(s) > 4096 {
		return "..." + s[len(s)-4096:]
	}
	return s
}

// ---------------------------------------------------------------------------
// Discovery

// recording is a running discover.Discover.
type recording struct {
	cancel context.CancelFunc
	done   chan recordResult
}

type recordResult struct {
	report *report.Report
	err    error
}

// record starts discovery of the workloads that pass filter and returns
// once the recorder is attached.
func record(t *testing.T, filter discover.Filter) *recording {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	r := &recording{cancel: cancel, done: make(chan recordResult, 1)}
	started := make(chan struct{})
	go func() {
		rep, err := discover.Discover(ctx, discover.Options{
			Filter:   filter,
			Interval: 200 * time.Millisecond,
			Progress: func(discover.Progress) {
				select {
				case <-started:
				default:
					close(started)
				}
			},
		})
		r.done <- recordResult{rep, err}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Errorf("discover did not stop")
		}
	})
	select {
	case <-started: // the first snapshot is taken once the recorder is attached
	case res := <-r.done:
		r.done <- res
		t.Fatalf("discover ended early: %v", res.err)
	case <-time.After(60 * time.Second):
		t.Fatal("discover did not start within 60 s")
	}
	return r
}

// finish stops the discovery and returns its report. It fails the test when
// the recorder lost calls.
func (r *recording) finish(t *testing.T) *report.Report {
	t.Helper()
	r.cancel()
	var res recordResult
	select {
	case res = <-r.done:
		r.done <- res // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("discover did not stop within 30 s")
	}
	if res.err != nil {
		t.Fatalf("discover: %v", res.err)
	}
	// MapFull and RingBufFull could hide the container's calls. OutOfRange
	// and Unattributed count every workload on the machine, such as other
	// test packages running at the same time (discover's tests call syscall
	// 5000 on purpose): logged, and the container's own attribution is
	// checked where its set is read.
	l := res.report.Lost
	if l.MapFull+l.RingBufFull != 0 {
		t.Errorf("the recorder lost calls: %+v", l)
	} else if l.Total() != 0 {
		t.Logf("losses elsewhere on the machine: %+v", l)
	}
	if l.Unattributed != 0 {
		t.Logf("discover: %d short-lived workloads without identity (not this test's containers, or their set would fail below)", l.Unattributed)
	}
	return res.report
}

// recordContainer starts discovery of the one container whose id (cgroup
// name) is id.
func recordContainer(t *testing.T, id string) *recording {
	t.Helper()
	return record(t, discover.Filter{Container: id})
}

// recordedSet returns the x86_64 calls recorded for the container id.
func recordedSet(t *testing.T, rep *report.Report, containerID string) []string {
	t.Helper()
	w := findWorkload(rep, containerID)
	if w == nil {
		t.Fatalf("container %s not in the report (%d workloads)", containerID, len(rep.Workloads))
	}
	if len(w.Unknown) > 0 {
		t.Errorf("container %s made calls without a name: %v", containerID, w.Unknown)
	}
	for abi := range w.Syscalls {
		if abi != "x86_64" {
			t.Errorf("container %s made %s calls: %v", containerID, abi, w.Syscalls[abi])
		}
	}
	return w.Syscalls["x86_64"]
}

func findWorkload(rep *report.Report, containerID string) *report.Workload {
	for i := range rep.Workloads {
		if rep.Workloads[i].Identity.ContainerID == containerID {
			return &rep.Workloads[i]
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// From report to profile

// kernelCalls are made by the kernel on a process's behalf, not by its code,
// so a recording sees them only by chance: restart_syscall resumes a call
// with a timeout (poll, futex, nanosleep, ...) that a signal, a stop or
// the freezer interrupted. Refusing it makes the interrupted call fail with
// EPERM; Python's http.server then crashes under load (see TestPythonHTTPServer).
// The merger adds them to every profile for a runtime (merge.KernelSyscalls);
// checkKernelCalls makes sure it does.
var kernelCalls = merge.KernelSyscalls()

// profileFromReport is the product's own path from a report to a profile:
// kscmp recommend's policies (parsed back from the files it writes, as a
// reviewer's repository holds them), merged for the container with the
// runtime's start-up set, as kscmp merge --container-name does.
func profileFromReport(t *testing.T, rep *report.Report, containerID string, rt merge.Runtime) []byte {
	t.Helper()
	res, err := recommend.Recommend([]report.Source{{Name: "e2e.json", Report: rep}}, recommend.Options{Portable: true, Runtime: rt})
	if err != nil {
		t.Fatal(err)
	}
	var policies []*api.KubeArmorSeccompPolicy
	for _, f := range res.Files {
		docs, err := api.Parse(bytes.NewReader(f.Data), f.Path)
		if err != nil {
			t.Fatalf("recommended file does not parse: %v\n%s", err, f.Data)
		}
		for _, d := range docs {
			policies = append(policies, d.Policy)
		}
	}
	rs, err := merge.Merge(policies, merge.Target{ContainerName: containerID, Runtime: rt})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Policies) != 1 {
		t.Fatalf("%d recommended policies select container %s, want 1 (files %d, skipped %v)", len(rs.Policies), containerID, len(res.Files), res.Skipped)
	}
	prof, err := rs.MarshalOCI()
	if err != nil {
		t.Fatal(err)
	}
	return prof
}

// allowedCalls returns the calls an allow-list profile allows, sorted; it
// fails the test for a profile that is not an allow-list.
func allowedCalls(t *testing.T, profile []byte) []string {
	t.Helper()
	var p specs.LinuxSeccomp
	if err := json.Unmarshal(profile, &p); err != nil {
		t.Fatalf("profile: %v", err)
	}
	if p.DefaultAction == specs.ActAllow || p.DefaultAction == specs.ActLog {
		t.Fatalf("profile is not an allow-list: defaultAction %s", p.DefaultAction)
	}
	var names []string
	for _, sc := range p.Syscalls {
		if sc.Action == specs.ActAllow && len(sc.Args) == 0 {
			names = append(names, sc.Names...)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// checkKernelCalls fails the test when the profile refuses a call of
// kernelCalls.
func checkKernelCalls(t *testing.T, allowed []string) {
	t.Helper()
	for _, c := range kernelCalls {
		if !slices.Contains(allowed, c) {
			t.Errorf("the profile refuses %s, which the kernel makes on the workload's behalf (it is recorded only by chance)", c)
		}
	}
}

// logFigures logs the profile's size against Docker's default profile in
// the parseable form
//
//	E2E <server> <runtime> allowed=NN own=NN docker-share=NN%
//
// and fails the test when it is above the target share.
func logFigures(t *testing.T, server string, rt merge.Runtime, allowed, own []string) {
	t.Helper()
	share := float64(len(allowed)) * 100 / dockerDefaultAllowed
	t.Logf("E2E %s %s allowed=%d own=%d docker-share=%.0f%%", server, rt, len(allowed), len(own), share)
	t.Logf("E2E-SET %s own: %s", server, strings.Join(own, ","))
	if share > maxDockerShare {
		t.Errorf("%s under %s: the profile allows %d calls, %.0f%% of Docker's default %d; target ≤ %d%%",
			server, rt, len(allowed), share, dockerDefaultAllowed, maxDockerShare)
	}
}

// ---------------------------------------------------------------------------
// Probes: a call the server never made is refused

// probe is a short busybox command run as a second container of the
// workload (same root filesystem, mounts, user and capabilities). Its calls
// are busybox's start-up calls (those of the baseline probe) plus its
// targets.
type probe struct {
	args    []string
	targets []string
}

// baselineProbe does nothing: its calls are busybox's own start-up calls.
// Under a server's profile it must still succeed, so that a candidate's
// failure there comes from its targets, not from busybox's start-up.
var baselineProbe = probe{args: []string{"busybox", "true"}}

// probeCandidates do something harmless that a server has no reason to do;
// which ones apply is decided at run time from the recorded sets.
var probeCandidates = []probe{
	{args: []string{"busybox", "mkfifo", "/tmp/probe-fifo"}, targets: []string{"mknod", "mknodat"}},
	{args: []string{"busybox", "ln", "-s", "/etc/hostname", "/tmp/probe-link"}, targets: []string{"symlink", "symlinkat"}},
	{args: []string{"busybox", "mkdir", "/tmp/probe-dir"}, targets: []string{"mkdir", "mkdirat"}},
	{args: []string{"busybox", "fallocate", "-l", "4096", "/tmp/probe-file"}, targets: []string{"fallocate"}},
	{args: []string{"busybox", "truncate", "-s", "4096", "/tmp/probe-file"}, targets: []string{"ftruncate", "truncate"}},
	{args: []string{"busybox", "renice", "-n", "5", "-p", "1"}, targets: []string{"getpriority", "setpriority"}},
	{args: []string{"busybox", "ionice", "-p", "1"}, targets: []string{"ioprio_get"}},
	{args: []string{"busybox", "adjtimex"}, targets: []string{"adjtimex", "clock_adjtime"}},
	{args: []string{"busybox", "chroot", "/", "/bin/busybox", "true"}, targets: []string{"chroot"}},
}

// argProbes open doors a server's profile closes by argument, not by name:
// a user namespace, a network namespace (with a user namespace, the only
// way a container without CAP_SYS_ADMIN gets one, so that the probe
// succeeds without the profile), a netlink socket. The servers make
// socket themselves, so their profiles name it and refuse netlink only by
// the recommended condition; busybox unshare calls unshare(2), which the
// servers do not make, so it is refused by name (a clone with
// CLONE_NEWUSER is refused by condition: recommend's TestRecommendArgs
// decides that on the merged rule set). targets: the calls refused.
var argProbes = []probe{
	{args: []string{"busybox", "unshare", "-U", "true"}, targets: []string{"unshare"}},
	{args: []string{"busybox", "unshare", "-U", "-n", "true"}, targets: []string{"unshare"}},
	{args: []string{"busybox", "ip", "link"}, targets: []string{"socket"}},
}

// recordedProbe is a probe with the calls it made without a profile.
type recordedProbe struct {
	probe
	calls []string
}

// probeSet is what recordProbes found: the baseline and the candidates that
// succeed without a profile.
type probeSet struct {
	baseline   recordedProbe
	candidates []recordedProbe
	// args are the argProbes, each of which must succeed without a
	// profile.
	args []recordedProbe
}

// recordProbes runs the baseline and every candidate once without a profile
// under discovery (with runtime, normally runc) and returns them with their
// recorded calls. A candidate that fails without a profile (no permission,
// ...) is dropped: it could not show anything.
func (w *workload) recordProbes(t *testing.T, runtime string) probeSet {
	t.Helper()
	prefix := newName(t, "e2e-probe-") + "-"
	rec := record(t, discover.Filter{Container: prefix})
	all := slices.Concat([]probe{baselineProbe}, probeCandidates, argProbes)
	ids := make([]string, len(all))
	ok := make([]bool, len(all))
	for i, p := range all {
		ids[i] = prefix + strconv.Itoa(i)
		res := w.runProbe(t, runtime, p, nil, ids[i])
		ok[i] = res.ExitCode == 0
		if !ok[i] {
			t.Logf("probe %q fails without a profile (not usable): exit %d: %s", strings.Join(p.args[1:], " "), res.ExitCode, strings.TrimSpace(res.Stderr))
		}
	}
	rep := rec.finish(t)
	if !ok[0] {
		t.Fatalf("%s: the baseline probe %v fails without a profile", w.name, baselineProbe.args)
	}
	var ps probeSet
	for i, p := range all {
		if !ok[i] {
			continue
		}
		rp := recordedProbe{probe: p, calls: recordedSet(t, rep, ids[i])}
		switch {
		case i == 0:
			ps.baseline = rp
		case i > len(probeCandidates):
			ps.args = append(ps.args, rp)
		default:
			ps.candidates = append(ps.candidates, rp)
		}
	}
	for i, p := range argProbes {
		if !ok[1+len(probeCandidates)+i] {
			t.Fatalf("%s: argument probe %v fails without a profile: it would show nothing", w.name, p.args)
		}
	}
	return ps
}

// runProbe runs one probe container and returns its result.
func (w *workload) runProbe(t *testing.T, runtime string, p probe, profile []byte, name string) ocitest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := ocitest.Run(ctx, t, w.container(runtime, p.args, profile, name))
	if err != nil {
		t.Fatalf("probe %v: %v", p.args, err)
	}
	return res
}

// missingCalls returns the calls of a probe that allowed lacks.
func missingCalls(calls, allowed []string) []string {
	var miss []string
	for _, c := range calls {
		if !slices.Contains(allowed, c) {
			miss = append(miss, c)
		}
	}
	return miss
}

// usableProbes returns the candidates that show a denial under a profile
// that allows allowed, each with the calls it alone makes that the profile
// lacks (beyond those of the baseline, which must not matter): they must
// be some of its targets, and at least one.
func usableProbes(t *testing.T, ps probeSet, allowed []string) (usable []recordedProbe, missing [][]string) {
	t.Helper()
	base := missingCalls(ps.baseline.calls, allowed)
	for _, p := range ps.candidates {
		miss := slices.DeleteFunc(missingCalls(p.calls, allowed), func(c string) bool { return slices.Contains(base, c) })
		if len(miss) == 0 {
			t.Logf("probe %s not usable: the profile allows all its calls but busybox's start-up ones", p.args[1])
			continue
		}
		good := true
		for _, c := range miss {
			good = good && slices.Contains(p.targets, c)
		}
		if !good {
			t.Logf("probe %s not usable: the profile lacks %v, not only its targets %v", p.args[1], miss, p.targets)
			continue
		}
		usable = append(usable, p)
		missing = append(missing, miss)
	}
	return usable, missing
}

// checkProbes shows with the probes that the profile refuses what the
// server never did, with runtime: the baseline must succeed under the
// profile; every usable candidate must fail there with "Operation not
// permitted" and succeed without the profile. It fails the test when no
// candidate is usable.
func (w *workload) checkProbes(t *testing.T, runtime string, rt merge.Runtime, ps probeSet, profile []byte) {
	t.Helper()
	allowed := allowedCalls(t, profile)
	base := missingCalls(ps.baseline.calls, allowed)
	if res := w.runProbe(t, runtime, ps.baseline.probe, profile, newName(t, "e2e-probe-")); res.ExitCode != 0 {
		t.Fatalf("%s under %s: busybox does not start under the profile (it refuses %v of busybox's start-up): exit %d, stderr %q, runtime log %q",
			w.name, rt, base, res.ExitCode, res.Stderr, res.RuntimeLog)
	}
	usable, missing := usableProbes(t, ps, allowed)
	if len(usable) == 0 {
		t.Fatalf("%s under %s: no probe candidate is usable (each either fails without a profile, uses only calls the server makes, or needs other calls the profile lacks)", w.name, rt)
	}
	var names []string
	for i, p := range usable {
		cmd := strings.Join(p.args[1:], " ")
		names = append(names, p.args[1]+"("+strings.Join(missing[i], ",")+")")
		res := w.runProbe(t, runtime, p.probe, profile, newName(t, "e2e-probe-"))
		if res.ExitCode == 0 || !strings.Contains(res.Stderr, "Operation not permitted") {
			t.Errorf("%s under %s: probe %q (refused: %v) under the profile: want failure with EPERM, got exit %d, stderr %q, runtime log %q",
				w.name, rt, cmd, missing[i], res.ExitCode, res.Stderr, res.RuntimeLog)
		} else {
			t.Logf("probe %q under the profile: %s", cmd, strings.TrimSpace(res.Stderr))
		}
		if res := w.runProbe(t, runtime, p.probe, nil, newName(t, "e2e-probe-")); res.ExitCode != 0 {
			t.Errorf("%s under %s: control: probe %q without the profile: exit %d, stderr %q", w.name, rt, cmd, res.ExitCode, res.Stderr)
		}
	}
	t.Logf("E2E-PROBES %s %s baseline-refused=%s usable=%s", w.name, rt, strings.Join(base, ","), strings.Join(names, " "))
}

// ---------------------------------------------------------------------------
// Host commands (load generators and clients)

// command runs a host program with a timeout and returns its stdout; it
// fails the test when the program fails.
func command(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := commandErr(timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

func commandErr(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("%w\nstdout: %s\nstderr: %s", err, tail(stdout.String()), tail(stderr.String()))
	}
	return stdout.String(), nil
}

// namedCalls returns the calls a profile allows under some arguments at
// least (unconditionally or under a condition), sorted.
func namedCalls(t *testing.T, profile []byte) []string {
	t.Helper()
	var p specs.LinuxSeccomp
	if err := json.Unmarshal(profile, &p); err != nil {
		t.Fatalf("profile: %v", err)
	}
	var names []string
	for _, sc := range p.Syscalls {
		if sc.Action == specs.ActAllow {
			names = append(names, sc.Names...)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// checkArgProbes shows the recommended argument conditions at work: every
// argProbe, which succeeds without a profile, fails under the server's
// profile with EPERM. It fails the test when the profile does not name a
// probe's target (the server made it, so the profile must allow it under
// its observed arguments): then the refusal would prove nothing about
// conditions. A probe whose other calls the profile lacks is logged, as
// its refusal may come from those too.
func (w *workload) checkArgProbes(t *testing.T, runtime string, rt merge.Runtime, ps probeSet, profile []byte) {
	t.Helper()
	named := namedCalls(t, profile)
	base := missingCalls(ps.baseline.calls, named)
	// The servers make threads or children: clone is conditioned (no new
	// namespaces) and clone3 refused with ENOSYS, so the load that passed
	// ran on the C library's fallback to clone where it prefers clone3.
	rs, err := merge.ParseOCI(profile, "profile.json")
	if err != nil {
		t.Fatal(err)
	}
	const sigchld, newUser = 17, 0x10000000
	if rs.Decide("clone", [6]uint64{sigchld}) != api.ActionAllow || rs.Decide("clone", [6]uint64{newUser | sigchld}) != api.ActionBlock {
		t.Errorf("%s under %s: clone is not conditioned on its namespace flags: fork %s, CLONE_NEWUSER %s", w.name, rt,
			rs.Decide("clone", [6]uint64{sigchld}), rs.Decide("clone", [6]uint64{newUser | sigchld}))
	}
	if e := rs.Lookup("clone3"); e == nil || e.Errno != merge.ENOSYS {
		t.Errorf("%s under %s: clone3 %+v, want refused with ENOSYS", w.name, rt, e)
	}
	for _, p := range ps.args {
		cmd := strings.Join(p.args[1:], " ")
		for _, target := range p.targets {
			if !slices.Contains(named, target) && target != "unshare" {
				t.Errorf("%s under %s: the profile does not allow %s under any arguments: probe %q shows no condition", w.name, rt, target, cmd)
			}
		}
		miss := slices.DeleteFunc(missingCalls(p.calls, named), func(c string) bool { return slices.Contains(base, c) })
		res := w.runProbe(t, runtime, p.probe, profile, newName(t, "e2e-probe-"))
		if res.ExitCode == 0 || !strings.Contains(res.Stderr, "Operation not permitted") {
			t.Errorf("%s under %s: probe %q under the profile: want failure with EPERM, got exit %d, stderr %q, runtime log %q",
				w.name, rt, cmd, res.ExitCode, res.Stderr, res.RuntimeLog)
			continue
		}
		t.Logf("E2E-ARGPROBE %s %s %q refused (%s); calls the profile names under no arguments: %v", w.name, rt, cmd, strings.TrimSpace(res.Stderr), miss)
	}
}
