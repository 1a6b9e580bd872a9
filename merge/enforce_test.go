package merge_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/internal/ocitest"
	"github.com/kubearmor/kscmp/merge"
)

// busyboxCalls is what busybox-static needs for echo, ls and mkdir (its
// malloc may fall back from brk to mmap).
var busyboxCalls = []string{"arch_prctl", "brk", "close", "execve", "exit", "exit_group", "fcntl", "fstat",
	"getdents64", "getegid", "geteuid", "getgid", "getpid", "getppid", "getrandom", "getuid", "ioctl",
	"lseek", "lstat", "madvise", "mmap", "mprotect", "munmap", "newfstatat", "openat", "prctl",
	"prlimit64", "readlink", "rseq", "rt_sigaction", "rt_sigprocmask", "set_robust_list",
	"set_tid_address", "stat", "statx", "uname", "write"}

func enforcePolicy(name string, labels map[string]string, rules ...api.Rule) *api.KubeArmorSeccompPolicy {
	p := &api.KubeArmorSeccompPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: api.APIVersion, Kind: api.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo"},
		Spec: api.PolicySpec{
			Selector: api.Selector{MatchLabels: labels},
			Seccomp:  api.SeccompSpec{Rules: rules},
		},
	}
	if errs := api.Validate(p); len(errs) > 0 {
		panic(errs)
	}
	return p
}

func profileFor(t *testing.T, rt merge.Runtime, ps ...*api.KubeArmorSeccompPolicy) []byte {
	t.Helper()
	rs, err := merge.Merge(ps, merge.Target{Namespace: "demo", Labels: map[string]string{"app": "bb"}, Runtime: rt})
	if err != nil {
		t.Fatal(err)
	}
	b, err := rs.MarshalOCI()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func run(t *testing.T, c ocitest.Container) ocitest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := ocitest.Run(ctx, t, c)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

var bb = map[string]string{"app": "bb"}

// TestEnforcedByRuntime compiles profiles and runs a busybox container under
// them with real runc and crun: allowed commands work, a blocked call fails
// with EPERM, and the same command works without the profile.
func TestEnforcedByRuntime(t *testing.T) {
	for _, rt := range []merge.Runtime{merge.RuntimeRunc, merge.RuntimeCrun} {
		t.Run(string(rt), func(t *testing.T) {
			bin := ocitest.Require(t, string(rt))
			allow := enforcePolicy("busybox", bb,
				api.Rule{Syscalls: busyboxCalls, Action: api.ActionAllow},
				api.Rule{Syscalls: []string{"mkdir", "mkdirat"}, Action: api.ActionBlock})
			prof := profileFor(t, rt, allow)
			rootfs := ocitest.BusyboxRootfs(t)
			if err := os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777); err != nil {
				t.Fatal(err)
			}
			for _, nnp := range []bool{false, true} {
				for _, uid := range []uint32{0, 1000} {
					name := fmt.Sprintf("noNewPrivileges=%v/uid=%d", nnp, uid)
					c := ocitest.Container{Runtime: bin, Rootfs: rootfs, Seccomp: prof, NoNewPrivileges: nnp,
						User: specs.User{UID: uid, GID: uid}}

					c.Args = []string{"echo", "hello"}
					if res := run(t, c); res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != "hello" {
						t.Errorf("%s: echo under the profile: %+v", name, res)
					}
					c.Args = []string{"ls", "/"}
					if res := run(t, c); res.ExitCode != 0 || !strings.Contains(res.Stdout, "bin") {
						t.Errorf("%s: ls under the profile: %+v", name, res)
					}
					dir := fmt.Sprintf("/tmp/blocked-%v-%d", nnp, uid)
					c.Args = []string{"mkdir", dir}
					if res := run(t, c); res.ExitCode == 0 || !strings.Contains(res.Stderr, "Operation not permitted") {
						t.Errorf("%s: mkdir under the profile: want EPERM, got %+v", name, res)
					}
					c.Seccomp = nil
					if res := run(t, c); res.ExitCode != 0 {
						t.Errorf("%s: control: mkdir without the profile failed: %+v", name, res)
					}
				}
			}
		})
	}
}

// TestDesignNoteProfileStartsContainer merges the example allow-list policy
// (examples/wordpress.yaml) with a second policy for the workload's own
// calls: the runtime start-up set makes the container start and run to
// exit 0.
func TestDesignNoteProfileStartsContainer(t *testing.T) {
	wordpress := enforcePolicy("ksp-wordpress-block-process", bb,
		api.Rule{Syscalls: []string{"accept4", "epoll_wait", "pselect6", "futex", "madvise"}, Action: api.ActionAllow})
	workload := enforcePolicy("busybox", bb, api.Rule{Syscalls: busyboxCalls, Action: api.ActionAllow})
	for _, rt := range []merge.Runtime{merge.RuntimeRunc, merge.RuntimeCrun} {
		t.Run(string(rt), func(t *testing.T) {
			bin := ocitest.Require(t, string(rt))
			rootfs := ocitest.BusyboxRootfs(t)
			c := ocitest.Container{Runtime: bin, Rootfs: rootfs, Args: []string{"echo", "started"}, Seccomp: profileFor(t, rt, wordpress, workload)}
			if res := run(t, c); res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != "started" {
				t.Fatalf("container did not start under the merged profile: %+v", res)
			}
			// Without the runtime's start-up set the container cannot start
			// under runc (crun needs only execve, which the workload has).
			if rt == merge.RuntimeRunc {
				c.Seccomp = profileFor(t, merge.RuntimeNone, wordpress, workload)
				if res := run(t, c); res.ExitCode == 0 {
					t.Errorf("runc started without its start-up set: the set is not shown to be needed: %+v", res)
				}
			}
		})
	}
}

// TestStartupSetStress starts many containers under a tight profile: the
// runtime set must hold on every start, not only on most (runc's init is a
// Go program whose runtime threads call now and then).
func TestStartupSetStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test skipped in -short mode")
	}
	p := enforcePolicy("true", bb, api.Rule{Syscalls: []string{"arch_prctl", "brk", "execve", "exit_group", "getrandom",
		"getuid", "mmap", "mprotect", "prctl", "prlimit64", "readlink", "rseq", "set_robust_list", "set_tid_address", "write"}, Action: api.ActionAllow})
	for _, rt := range []merge.Runtime{merge.RuntimeRunc, merge.RuntimeCrun} {
		t.Run(string(rt), func(t *testing.T) {
			bin := ocitest.Require(t, string(rt))
			c := ocitest.Container{Runtime: bin, Rootfs: ocitest.BusyboxRootfs(t), Args: []string{"echo", "ok"}, Seccomp: profileFor(t, rt, p)}
			const n = 25
			fails := 0
			for range n {
				if res := run(t, c); res.ExitCode != 0 {
					fails++
					t.Logf("failed start: %+v", res)
				}
			}
			if fails > 0 {
				t.Errorf("%d of %d starts failed under %s with its start-up set", fails, n, rt)
			}
		})
	}
}

// runtimeVersions are the versions the start-up sets were found with.
var runtimeVersions = map[merge.Runtime]string{
	merge.RuntimeRunc: "runc version 1.1.5+ds1",
	merge.RuntimeCrun: "crun version 1.8.1",
}

// TestStartupSets proves the runtime start-up sets both ways with a workload
// that calls nothing but exit_group(42): with the set the container starts
// every time, for root and another user, with and without noNewPrivileges;
// without any one of its required calls it does not start. The set of
// RuntimeAny starts it under both runtimes.
func TestStartupSets(t *testing.T) {
	if goruntime.GOARCH != "amd64" {
		t.Skipf("the probe workload is an x86-64 program; GOARCH is %s", goruntime.GOARCH)
	}
	const exitCode = 42
	exitOnly := enforcePolicy("exit-only", bb, api.Rule{Syscalls: []string{"exit_group"}, Action: api.ActionAllow})
	for _, rt := range []merge.Runtime{merge.RuntimeRunc, merge.RuntimeCrun} {
		t.Run(string(rt), func(t *testing.T) {
			bin := ocitest.Require(t, string(rt))
			rootfs := ocitest.BusyboxRootfs(t)
			if err := os.WriteFile(filepath.Join(rootfs, "exit42"), ocitest.ExitProgram(exitCode), 0o755); err != nil {
				t.Fatal(err)
			}
			starts := func(prof []byte, nnp bool, uid uint32, runs int) (bool, ocitest.Result) {
				c := ocitest.Container{Runtime: bin, Rootfs: rootfs, Args: []string{"/exit42"}, Seccomp: prof,
					NoNewPrivileges: nnp, User: specs.User{UID: uid, GID: uid}}
				for range runs {
					if res := run(t, c); res.ExitCode != exitCode {
						return false, res
					}
				}
				return true, ocitest.Result{}
			}

			full := profileFor(t, rt, exitOnly)
			// RuntimeAny's set (runc's and crun's) must start it too.
			anyRT := profileFor(t, merge.RuntimeAny, exitOnly)
			for _, nnp := range []bool{false, true} {
				for _, uid := range []uint32{0, 1000} {
					if ok, res := starts(full, nnp, uid, 5); !ok {
						t.Errorf("noNewPrivileges=%v uid=%d: the container did not start with the start-up set: %+v", nnp, uid, res)
					}
					if ok, res := starts(anyRT, nnp, uid, 2); !ok {
						t.Errorf("noNewPrivileges=%v uid=%d: the container did not start with the start-up set of any runtime: %+v", nnp, uid, res)
					}
				}
			}

			out, err := exec.Command(bin, "--version").Output()
			if err != nil {
				t.Fatal(err)
			}
			if v, _, _ := strings.Cut(string(out), "\n"); v != runtimeVersions[rt] {
				t.Logf("minimality not checked: the sets were found with %q, this is %q (rerun KSCMP_STARTUP_SEARCH=1 go test ./internal/ocitest/)", runtimeVersions[rt], v)
				return
			}
			all := rt.StartupSyscalls()
			for _, call := range rt.RequiredStartupSyscalls() {
				var rest []string
				for _, c := range all {
					if c != call {
						rest = append(rest, c)
					}
				}
				p := enforcePolicy("exit-only", bb, api.Rule{Syscalls: append(rest, "exit_group"), Action: api.ActionAllow})
				if ok, _ := starts(profileFor(t, merge.RuntimeNone, p), false, 0, 5); ok {
					t.Errorf("%s is listed as required, but the container started 5 times without it", call)
				}
			}
		})
	}
}
