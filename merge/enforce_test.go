package merge_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/internal/auditlog"
	"github.com/kubearmor/kscmp/internal/nspawntest"
	"github.com/kubearmor/kscmp/internal/ocitest"
	"github.com/kubearmor/kscmp/internal/testenv"
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
			// under runc (crun needs only execve, which the workload has):
			// runc's init is refused a call (EPERM), and the same container
			// without any profile starts.
			if rt == merge.RuntimeRunc {
				c.Seccomp = profileFor(t, merge.RuntimeNone, wordpress, workload)
				if res := run(t, c); res.ExitCode == 0 || !strings.Contains(res.RuntimeLog, "operation not permitted") {
					t.Errorf("runc without its start-up set: want a start refused with EPERM, got %+v", res)
				}
				c.Seccomp = nil
				if res := run(t, c); res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != "started" {
					t.Errorf("control: the container did not start without a profile: %+v", res)
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

// TestStartupSets proves the runtime start-up sets both ways with a workload
// that calls nothing but exit_group(42), for the runc and crun installed
// here, whatever their version: with merge's set for the runtime (and with
// RuntimeAny's) the container starts every time, for root and another user,
// with and without noNewPrivileges; with the set merge/runtime.go records
// for the installed version it starts too, and without any one of its
// required calls it does not. When the installed version has no recorded
// set the test fails, naming the calls of merge's set the runtime starts
// without and, from a short start-up search, the set it needs.
func TestStartupSets(t *testing.T) {
	if goruntime.GOARCH != "amd64" {
		t.Skipf("the probe workload is an x86-64 program; GOARCH is %s", goruntime.GOARCH)
	}
	const exitCode = 42
	exitOnly := enforcePolicy("exit-only", bb, api.Rule{Syscalls: []string{"exit_group"}, Action: api.ActionAllow})
	for _, rt := range []merge.Runtime{merge.RuntimeRunc, merge.RuntimeCrun} {
		t.Run(string(rt), func(t *testing.T) {
			bin := ocitest.Require(t, string(rt))
			version, err := ocitest.RuntimeVersion(bin)
			if err != nil {
				t.Fatal(err)
			}
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
			// exactly allows set and the workload's exit_group, nothing else.
			exactly := func(set []string) []byte {
				p := enforcePolicy("exit-only", bb, api.Rule{Syscalls: append(slices.Clone(set), "exit_group"), Action: api.ActionAllow})
				return profileFor(t, merge.RuntimeNone, p)
			}
			// notNeeded returns the calls of required without which the
			// container still starts 5 times (the rest of set allowed).
			notNeeded := func(set, required []string) []string {
				var out []string
				for _, call := range required {
					rest := slices.DeleteFunc(slices.Clone(set), func(c string) bool { return c == call })
					if ok, _ := starts(exactly(rest), false, 0, 5); ok {
						out = append(out, call)
					}
				}
				return out
			}

			full := profileFor(t, rt, exitOnly)
			// RuntimeAny's set (runc's and crun's) must start it too.
			anyRT := profileFor(t, merge.RuntimeAny, exitOnly)
			for _, nnp := range []bool{false, true} {
				for _, uid := range []uint32{0, 1000} {
					if ok, res := starts(full, nnp, uid, 5); !ok {
						t.Errorf("%s %s, noNewPrivileges=%v uid=%d: the container did not start with merge's start-up set: %+v", rt, version, nnp, uid, res)
					}
					if ok, res := starts(anyRT, nnp, uid, 2); !ok {
						t.Errorf("%s %s, noNewPrivileges=%v uid=%d: the container did not start with the start-up set of any runtime: %+v", rt, version, nnp, uid, res)
					}
				}
			}

			required, extra, recorded := rt.RecordedStartup(version)
			if !recorded {
				t.Errorf("%s %s has no start-up set in merge/runtime.go (recorded: %v)%s", rt, version, rt.RecordedVersions(),
					startupSetNeeded(t, rt, bin, notNeeded(rt.StartupSyscalls(), rt.RequiredStartupSyscalls())))
				return
			}
			own := slices.Concat(required, extra)
			for _, nnp := range []bool{false, true} {
				for _, uid := range []uint32{0, 1000} {
					if ok, res := starts(exactly(own), nnp, uid, 3); !ok {
						t.Errorf("%s %s, noNewPrivileges=%v uid=%d: the container did not start with the set recorded for this version: %+v", rt, version, nnp, uid, res)
					}
				}
			}
			for _, call := range notNeeded(own, required) {
				t.Errorf("%s %s: %s is recorded as required, but the container started 5 times without it", rt, version, call)
			}
		})
	}
}

// startupSetNeeded describes what the installed runtime needs when
// merge/runtime.go has no set for its version: the calls of merge's set it
// starts without (notNeeded) and, when strace is there, what a short
// start-up search finds for noNewPrivileges false and a root and a
// non-root workload (the recorded sets are for that case).
func startupSetNeeded(t *testing.T, rt merge.Runtime, bin string, notNeeded []string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "\n  required in merge's set, but it starts 5 times without: %s", ocitest.GoSlice(notNeeded))
	if _, err := exec.LookPath("strace"); err != nil {
		fmt.Fprintf(&b, "\n  no start-up search: %v (apt-get install strace)", err)
		return b.String()
	}
	var every, needed []string
	for _, uid := range []uint32{0, 1000} {
		res := ocitest.StartupSearch(t, ocitest.SearchConfig{Runtime: bin, UID: uid},
			ocitest.SearchOptions{Runs: 5, StabilityRuns: 20, DiagnosisRuns: 20, ObserveRuns: 3})
		every = sortedUnion(every, res.EveryTime())
		needed = sortedUnion(needed, res.Needed)
	}
	extra := slices.DeleteFunc(slices.Clone(needed), func(c string) bool { return slices.Contains(every, c) })
	missing := slices.DeleteFunc(slices.Clone(needed), func(c string) bool { return slices.Contains(rt.StartupSyscalls(), c) })
	fmt.Fprintf(&b, "\n  a short search (5 runs; confirm with KSCMP_STARTUP_SEARCH=1 go test -run TestStartupSyscallSearch -timeout 120m ./internal/ocitest/) finds"+
		"\n    required: %s\n    extra:    %s\n  missing from merge's set: %s", ocitest.GoSlice(every), ocitest.GoSlice(extra), ocitest.GoSlice(missing))
	return b.String()
}

// sortedUnion returns the sorted union of a and b.
func sortedUnion(a, b []string) []string {
	u := slices.Concat(a, b)
	slices.Sort(u)
	return slices.Compact(u)
}

// TestComplainModeByRuntime runs busybox under real runc and crun with an
// allow-list that does not name mkdir: with the default Block mkdir fails
// with EPERM; with defaultAction Audit (complain mode) the same mkdir
// succeeds and the kernel's audit log gets a seccomp record of a log action
// for it, while the policy's explicit Block rule (chmod) still refuses.
func TestComplainModeByRuntime(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (to read the kernel's audit records)")
	}
	chmod := []string{"chmod", "fchmodat", "fchmodat2"}
	mkdirNrs := []int{api.ArchX86_64.Table().SyscallNames["mkdir"], api.ArchX86_64.Table().SyscallNames["mkdirat"]}
	for _, rt := range []merge.Runtime{merge.RuntimeRunc, merge.RuntimeCrun} {
		t.Run(string(rt), func(t *testing.T) {
			bin := ocitest.Require(t, string(rt))
			p := enforcePolicy("busybox", bb,
				api.Rule{Syscalls: busyboxCalls, Action: api.ActionAllow},
				api.Rule{Syscalls: chmod, Action: api.ActionBlock})
			rootfs := ocitest.BusyboxRootfs(t)
			c := ocitest.Container{Runtime: bin, Rootfs: rootfs, Seccomp: profileFor(t, rt, p), Args: []string{"mkdir", "/tmp/refused"}}
			if res := run(t, c); res.ExitCode == 0 || !strings.Contains(res.Stderr, "Operation not permitted") {
				t.Fatalf("mkdir under the Block default: want EPERM, got %+v", res)
			}

			complain := p.DeepCopy()
			complain.Spec.Seccomp.DefaultAction = api.ActionAudit
			c.Seccomp = profileFor(t, rt, complain)
			if !strings.Contains(string(c.Seccomp), `"defaultAction": "SCMP_ACT_LOG"`) {
				t.Fatalf("complain profile without a log default:\n%s", c.Seccomp)
			}
			audit, err := auditlog.Listen()
			if err != nil {
				t.Fatal(err)
			}
			defer audit.Close()
			c.Args = []string{"mkdir", "/tmp/logged"}
			if res := run(t, c); res.ExitCode != 0 {
				t.Fatalf("mkdir in complain mode: want it to run, got %+v", res)
			}
			if _, err := os.Stat(filepath.Join(rootfs, "tmp", "logged")); err != nil {
				t.Fatalf("mkdir in complain mode exited 0 but made nothing: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rec, seen, err := audit.Wait(ctx, auditlog.SeccompLogged("mkdir", mkdirNrs...))
			if err != nil {
				t.Fatalf("no seccomp log record for mkdir (%v); records seen: %v", err, seen)
			}
			t.Logf("audit record: %s", rec.Text)
			c.Args = []string{"chmod", "700", "/tmp/logged"}
			if res := run(t, c); res.ExitCode == 0 || !strings.Contains(res.Stderr, "Operation not permitted") {
				t.Errorf("chmod (an explicit Block rule) in complain mode: want EPERM, got %+v", res)
			}
		})
	}
}

// TestComplainModeSystemd applies the compiled drop-in of an allow-list
// that allows every x86-64 system call but mkdir and mkdirat to a service
// on a real systemd (252, in a systemd-nspawn machine): with the default
// Block the service's mkdir fails; in complain mode (defaultAction Audit,
// SystemCallLog=~...) the same mkdir runs and the kernel's audit log gets
// the seccomp record that systemd's SystemCallLog= filter makes for it.
func TestComplainModeSystemd(t *testing.T) {
	const unit = "kscmp-complain.service"
	var all []string
	for name := range api.ArchX86_64.Table().SyscallNames {
		if name != "mkdir" && name != "mkdirat" {
			all = append(all, name)
		}
	}
	slices.Sort(all)
	p := enforcePolicy("probe", bb, api.Rule{Syscalls: all, Action: api.ActionAllow})
	p.Spec.Selector = api.Selector{SystemdUnits: []string{unit}} // a host policy
	dropIn := func(def api.Action) []byte {
		q := p.DeepCopy()
		q.Spec.Seccomp.DefaultAction = def
		rs, err := merge.Merge([]*api.KubeArmorSeccompPolicy{q}, merge.Target{Unit: unit})
		if err != nil {
			t.Fatal(err)
		}
		return rs.Systemd()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	results := t.TempDir()
	m, err := nspawntest.Start(ctx, t, nspawntest.Options{
		Binds: []nspawntest.Bind{{Host: results, Guest: "/results"}},
		Units: map[string]string{unit: "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'exec /bin/mkdir /results/made 2>/results/err'\n"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	confDir := filepath.Join(m.Root(), "etc/systemd/system", unit+".d")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	startWith := func(conf []byte) error {
		if err := os.WriteFile(filepath.Join(confDir, "50-kscmp-seccomp.conf"), conf, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := m.Command(ctx, "systemctl", "daemon-reload").CombinedOutput(); err != nil {
			t.Fatalf("daemon-reload: %v: %s", err, out)
		}
		out, err := m.Command(ctx, "systemctl", "start", unit).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}

	if err := startWith(dropIn(api.ActionBlock)); err == nil {
		t.Fatalf("the service's mkdir ran under the Block drop-in:\n%s", dropIn(api.ActionBlock))
	}
	if _, err := os.Stat(filepath.Join(results, "made")); err == nil {
		t.Fatal("the directory was made under the Block drop-in")
	}
	if msg, _ := os.ReadFile(filepath.Join(results, "err")); !strings.Contains(string(msg), "Operation not permitted") {
		t.Fatalf("the service's mkdir under the Block drop-in: want EPERM, got %q", msg)
	}

	complain := dropIn(api.ActionAudit)
	if !strings.Contains(string(complain), "\nSystemCallLog=~") || strings.Contains(string(complain), "\nSystemCallFilter=a") {
		t.Fatalf("complain drop-in without SystemCallLog=~ or with an allow filter:\n%s", complain)
	}
	audit, err := auditlog.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	if err := startWith(complain); err != nil {
		t.Fatalf("the service failed in complain mode: %v\n%s", err, m.Log())
	}
	if _, err := os.Stat(filepath.Join(results, "made")); err != nil {
		t.Fatalf("the service ran in complain mode but made nothing: %v", err)
	}
	nrs := []int{api.ArchX86_64.Table().SyscallNames["mkdir"], api.ArchX86_64.Table().SyscallNames["mkdirat"]}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	rec, seen, err := audit.Wait(wctx, auditlog.SeccompLogged("mkdir", nrs...))
	if err != nil {
		t.Fatalf("no seccomp log record for the service's mkdir (%v); records seen: %v", err, seen)
	}
	t.Logf("audit record: %s", rec.Text)
}
