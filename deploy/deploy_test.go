package deploy

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/internal/auditlog"
	"github.com/kubearmor/kscmp/internal/testenv"
	"github.com/kubearmor/kscmp/merge"
)

// The test binary re-executes itself to run Exec: Exec replaces the process.
func TestMain(m *testing.M) {
	if prof := os.Getenv("KSCMP_TEST_EXEC_PROFILE"); prof != "" {
		data, err := os.ReadFile(prof)
		if err == nil {
			var rs *merge.RuleSet
			if rs, err = merge.ParseOCI(data, prof); err == nil {
				err = Exec(rs, strings.Fields(os.Getenv("KSCMP_TEST_EXEC_ARGV")), os.Environ())
			}
		}
		os.Stderr.WriteString("exec: " + err.Error() + "\n")
		os.Exit(126)
	}
	os.Exit(m.Run())
}

func mustMerge(t *testing.T, rules ...api.Rule) *merge.RuleSet {
	t.Helper()
	return mustMergeDefault(t, "", rules...)
}

// mustMergeDefault is mustMerge for a policy with spec.seccomp.defaultAction def.
func mustMergeDefault(t *testing.T, def api.Action, rules ...api.Rule) *merge.RuleSet {
	t.Helper()
	p := &api.KubeArmorSeccompPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: api.APIVersion, Kind: api.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"},
		Spec: api.PolicySpec{
			Selector: api.Selector{MatchLabels: map[string]string{"app": "x"}},
			Seccomp:  api.SeccompSpec{Rules: rules, DefaultAction: def},
		},
	}
	if errs := api.Validate(p); len(errs) > 0 {
		t.Fatal(errs)
	}
	rs, err := merge.Merge([]*api.KubeArmorSeccompPolicy{p}, merge.Target{Namespace: "ns", Labels: map[string]string{"app": "x"}, Runtime: merge.RuntimeNone})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// runUnder runs argv under the rule set through Exec in a child process.
func runUnder(t *testing.T, rs *merge.RuleSet, argv string) (string, error) {
	t.Helper()
	b, err := rs.MarshalOCI()
	if err != nil {
		t.Fatal(err)
	}
	prof := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(prof, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KSCMP_TEST_EXEC_PROFILE="+prof, "KSCMP_TEST_EXEC_ARGV="+argv)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestExecAllowListEnforced(t *testing.T) {
	// Everything of the native ABI but mkdir and mkdirat is allowed: the
	// allow-list's default action refuses those two with EPERM.
	var all []string
	for name := range api.ArchX86_64.Table().SyscallNames {
		if name != "mkdir" && name != "mkdirat" {
			all = append(all, name)
		}
	}
	rs := mustMerge(t, api.Rule{Syscalls: all, Action: api.ActionAllow})
	dir := filepath.Join(t.TempDir(), "made")

	out, err := runUnder(t, rs, "echo allowed")
	if err != nil || strings.TrimSpace(out) != "allowed" {
		t.Fatalf("allowed command: %v: %q", err, out)
	}
	out, err = runUnder(t, rs, "mkdir "+dir)
	if err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Fatalf("mkdir under the profile: want EPERM, got %v: %q", err, out)
	}
	if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("the directory was made anyway: %v", serr)
	}
	// Control: without the profile the same command works.
	if out, err := exec.Command("mkdir", dir).CombinedOutput(); err != nil {
		t.Fatalf("control mkdir: %v: %s", err, out)
	}
}

func TestExecDenyListEnforced(t *testing.T) {
	rs := mustMerge(t, api.Rule{Syscalls: []string{"mkdir", "mkdirat"}, Action: api.ActionBlock})
	if rs.AllowList() {
		t.Fatal("want a deny-list")
	}
	out, err := runUnder(t, rs, "echo allowed")
	if err != nil || strings.TrimSpace(out) != "allowed" {
		t.Fatalf("allowed command: %v: %q", err, out)
	}
	dir := filepath.Join(t.TempDir(), "d")
	out, err = runUnder(t, rs, "mkdir "+dir)
	if err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Fatalf("mkdir: want EPERM, got %v: %q", err, out)
	}
	if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("the directory was made anyway: %v", serr)
	}
	// Control: the same command through Exec under a deny-list that does
	// not name mkdir works, so the EPERM above is the rule's.
	other := mustMerge(t, api.Rule{Syscalls: []string{"ptrace"}, Action: api.ActionBlock})
	if out, err := runUnder(t, other, "mkdir "+dir); err != nil {
		t.Fatalf("control: mkdir under a deny-list without it: %v: %q", err, out)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("control: %v", err)
	}
}

func TestExecRefusedExecve(t *testing.T) {
	rs := mustMerge(t, api.Rule{Syscalls: []string{"execve", "execveat"}, Action: api.ActionBlock})
	out, err := runUnder(t, rs, "true")
	if err == nil || !strings.Contains(out, "execve must be allowed") {
		t.Fatalf("want a clear error when the profile refuses execve, got %v: %q", err, out)
	}
}

func TestSystemdDropInVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		testenv.Missing(t, "systemd-analyze (Debian package systemd)")
	}
	ctx := context.Background()
	cases := map[string]*merge.RuleSet{
		"allow-list": mustMerge(t,
			api.Rule{Syscalls: []string{"read", "write", "openat", "close"}, Action: api.ActionAllow},
			api.Rule{Syscalls: []string{"mkdir"}, Action: api.ActionBlock},
			api.Rule{Syscalls: []string{"ptrace"}, Action: api.ActionKill},
			api.Rule{Syscalls: []string{"chown"}, Action: api.ActionAudit}),
		"complain": mustMergeDefault(t, api.ActionAudit,
			api.Rule{Syscalls: []string{"read", "write", "openat", "close"}, Action: api.ActionAllow},
			api.Rule{Syscalls: []string{"mkdir"}, Action: api.ActionBlock},
			api.Rule{Syscalls: []string{"ptrace"}, Action: api.ActionKill}),
		"deny-list": mustMerge(t,
			api.Rule{Syscalls: []string{"mkdir", "mount"}, Action: api.ActionBlock},
			api.Rule{Syscalls: []string{"ptrace"}, Action: api.ActionKill},
			api.Rule{Syscalls: []string{"chown"}, Action: api.ActionAudit}),
	}
	for name, rs := range cases {
		t.Run(name, func(t *testing.T) {
			dropIn := rs.Systemd()
			if err := VerifySystemdDropIn(ctx, dropIn); err != nil {
				t.Fatalf("%v\n%s", err, dropIn)
			}
		})
	}
	// Negative control: the check sees what verify's exit code hides.
	bad := []byte("[Service]\nSystemCallFilter=read nosuchcall\nBogusKey=1\n")
	err := VerifySystemdDropIn(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "nosuchcall") || !strings.Contains(err.Error(), "BogusKey") {
		t.Fatalf("bad drop-in not caught: %v", err)
	}
}

// TestExecComplainMode runs mkdir through Exec under an allow-list in
// complain mode that does not allow it: the call runs (the directory is
// made) and the kernel's audit log gets a seccomp record of a log action
// for it.
func TestExecComplainMode(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (to read the kernel's audit records)")
	}
	var all []string
	for name := range api.ArchX86_64.Table().SyscallNames {
		if name != "mkdir" && name != "mkdirat" {
			all = append(all, name)
		}
	}
	rs := mustMergeDefault(t, api.ActionAudit, api.Rule{Syscalls: all, Action: api.ActionAllow})
	if !rs.Complain() {
		t.Fatalf("want complain mode, default %s", rs.DefaultAction)
	}
	audit, err := auditlog.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	dir := filepath.Join(t.TempDir(), "made")
	if out, err := runUnder(t, rs, "mkdir "+dir); err != nil {
		t.Fatalf("mkdir under the complain profile: %v: %q", err, out)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the directory was not made: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nrs := []int{api.ArchX86_64.Table().SyscallNames["mkdir"], api.ArchX86_64.Table().SyscallNames["mkdirat"]}
	rec, seen, err := audit.Wait(ctx, auditlog.SeccompLogged("mkdir", nrs...))
	if err != nil {
		t.Fatalf("no seccomp log record for mkdir (%v); records seen: %v", err, seen)
	}
	t.Logf("audit record: %s", rec.Text)
}
