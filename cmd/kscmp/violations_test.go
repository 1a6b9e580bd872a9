package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/api/violation"
	"github.com/kubearmor/kscmp/internal/ocitest"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// TestViolationsFlags: bad flags exit 1 and name the flag, before anything
// is watched.
func TestViolationsFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"violations", "-d", "-1s"}, "--duration -1s: must not be negative"},
		{[]string{"violations", "--follow", "-d", "5s"}, "--follow and --duration: give one"},
		{[]string{"violations", "--max-entries", "0"}, "--max-entries 0: must be at least 1"},
		{[]string{"violations", "-l", "=x", "-o", filepath.Join(dir, "v.json")}, "--selector: "},
		{[]string{"violations", "--since", "1h"}, "--since is for --cluster"},
		{[]string{"violations", "--allow-partial"}, "--allow-partial is for --cluster"},
		{[]string{"violations", "--cluster", "-d", "1m"}, "--duration watches this node; --cluster reads the agents' reports"},
		{[]string{"violations", "--cluster", "--exit-errors"}, "--exit-errors watches this node"},
		{[]string{"violations", "--cluster", "--since", "-1h"}, "--since -1h0m0s: must not be negative"},
		{[]string{"violations", "--cluster", "-l", "=x"}, "--selector: "},
	} {
		code, _, errs := runCLI(t, tc.args...)
		if code != exitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d %q, want %d and %q", tc.args, code, errs, exitUsage, tc.want)
		}
	}
}

// TestViolationsReportsLoggedCall: a process under a profile that logs
// mkdir, while kscmp violations watches, is in the written report.
func TestViolationsReportsLoggedCall(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (audit netlink)")
	}
	dir := t.TempDir()
	prof := filepath.Join(dir, "p.json")
	if err := os.WriteFile(prof, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_LOG"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildKscmp(t)
	out := filepath.Join(dir, "v.json")
	done := make(chan int, 1)
	go func() {
		code, _, errs := runCLI(t, "violations", "-d", "3s", "-o", out)
		if code != exitOK {
			t.Errorf("exit %d: %s", code, errs)
		}
		done <- code
	}()
	time.Sleep(time.Second) // subscribed well before the call
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sh := exec.CommandContext(ctx, bin, "exec", "--profile", prof, "--", "/bin/sh", "-c", "mkdir "+filepath.Join(dir, "x"))
	if b, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	<-done
	rep, err := violation.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range rep.Violations {
		if strings.HasPrefix(v.Syscall, "mkdir") && v.Action == violation.ActionAudit {
			return
		}
	}
	t.Errorf("no mkdir Audit in %+v", rep.Violations)
}

// TestViolationsExitErrors: with --exit-errors, a runc container's Block
// refusal (runc cannot log it) is in the written report, found through
// --runtime-root.
func TestViolationsExitErrors(t *testing.T) {
	rt := ocitest.Require(t, "runc")
	dir := t.TempDir()
	out := filepath.Join(dir, "v.json")
	states := filepath.Join(filepath.Dir(dir), "*", "state") // ocitest's runs keep their state beside dir
	id := "kscmp-cli-exit-errors"
	done := make(chan struct{})
	go func() {
		defer close(done)
		code, _, errs := runCLI(t, "violations", "-d", "4s", "--exit-errors", "--runtime-root", states, "-o", out)
		if code != exitOK {
			t.Errorf("exit %d: %s", code, errs)
		}
	}()
	time.Sleep(time.Second) // attached well before the container starts
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := ocitest.Run(ctx, t, ocitest.Container{Runtime: rt, ID: id, Rootfs: ocitest.BusyboxRootfs(t),
		Seccomp: []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`),
		Args:    []string{"sh", "-c", "sleep 1; mkdir /tmp/refused; exit 0"}})
	if err != nil || !strings.Contains(res.Stderr, "Operation not permitted") {
		t.Fatalf("container: %v %+v", err, res)
	}
	<-done
	rep, err := violation.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range rep.Violations {
		if v.Identity.ContainerID == id && v.Syscall == "mkdir" && v.Action == violation.ActionBlock {
			return
		}
	}
	t.Errorf("no mkdir Block of container %s in %+v", id, rep.Violations)
}

// TestViolationsUnprivilegedExitsUnsupported: without CAP_AUDIT_READ the
// named probe fails and the exit code is 4.
func TestViolationsUnprivilegedExitsUnsupported(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (to run kscmp as nobody)")
	}
	dir, err := os.MkdirTemp("", "kscmp-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := errors.Join(os.Chmod(dir, 0o755), os.Chown(dir, 65534, 65534)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(buildKscmp(t))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "kscmp")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "violations", "-d", "1s", "-o", filepath.Join(dir, "never.json"))
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitUnsupported || !strings.Contains(string(out), "probe audit") {
		t.Fatalf("violations as nobody: %v (want exit %d)\n%s", err, exitUnsupported, out)
	}
}

// TestRecommendFromViolations: recommend --from a violation report widens
// the reviewed policy in -o, and says so in the summary; --prune with it is
// a usage error.
func TestRecommendFromViolations(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policies", "shop", "web.yaml")
	if err := os.MkdirAll(filepath.Dir(pol), 0o755); err != nil {
		t.Fatal(err)
	}
	reviewed := "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  selector:\n    matchLabels:\n      app: web\n  seccomp:\n    arch: [x86_64]\n    syscalls: [read, write]\n    action: Allow\n"
	if err := os.WriteFile(pol, []byte(reviewed), 0o644); err != nil {
		t.Fatal(err)
	}
	vr := violation.New()
	vr.Add(violation.Violation{Identity: report.Identity{Kind: report.KindPod, Namespace: "shop", Pod: "web-1", Container: "c", Labels: map[string]string{"app": "web"}},
		Syscall: "mkdir", Number: 83, ABI: "x86_64", Action: violation.ActionBlock, Count: 3})
	vfile := filepath.Join(dir, "violations.json")
	if _, err := vr.WriteFile(vfile); err != nil {
		t.Fatal(err)
	}
	sum := filepath.Join(dir, "pr.md")
	if code, _, errs := runCLI(t, "recommend", "--from", vfile, "-o", filepath.Join(dir, "policies"), "--summary", sum); code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	data, _ := os.ReadFile(pol)
	md, _ := os.ReadFile(sum)
	if !strings.Contains(string(data), "- mkdir") || !strings.Contains(string(md), "`mkdir`: refused in production.") {
		t.Errorf("policy:\n%s\nsummary:\n%s", data, md)
	}
	// In a directory too, beside an observation report.
	reports := filepath.Join(dir, "reports")
	if err := os.Mkdir(reports, 0o755); err != nil {
		t.Fatal(err)
	}
	vr.Violations[0].Syscall, vr.Violations[0].Number = "rmdir", 84
	if _, err := vr.WriteFile(filepath.Join(reports, "v.json")); err != nil {
		t.Fatal(err)
	}
	obs := report.New()
	obs.Workloads = append(obs.Workloads, report.Workload{Identity: report.Identity{Kind: report.KindSystemd, Unit: "a.service"}, Syscalls: map[string][]string{"x86_64": {"read"}}})
	if _, err := obs.WriteFile(filepath.Join(reports, "o.json")); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI(t, "recommend", "--from", reports, "-o", filepath.Join(dir, "policies"), "--summary", sum); code != exitOK {
		t.Fatalf("--from a directory: exit %d: %s", code, errs)
	}
	if data, _ = os.ReadFile(pol); !strings.Contains(string(data), "- rmdir") || !strings.Contains(string(data), "- mkdir") {
		t.Errorf("policy after the directory:\n%s", data)
	}
	if _, err := os.Stat(filepath.Join(dir, "policies", "_host", "a.yaml")); err != nil {
		t.Errorf("the observation report in the directory was not read: %v", err)
	}
	if code, _, errs := runCLI(t, "recommend", "--from", vfile, "-o", filepath.Join(dir, "policies"), "--prune"); code != exitUsage || !strings.Contains(errs, "--prune") {
		t.Errorf("--prune with violations: exit %d: %s", code, errs)
	}
}

// TestViolationTable: the table names the workload for people, and with
// --follow shows an entry again only when its count grew.
func TestViolationTable(t *testing.T) {
	vr := violation.New()
	vr.Add(violation.Violation{Identity: report.Identity{Kind: report.KindSystemd, Unit: "web.service"}, Syscall: "mkdir", Number: 83, ABI: "x86_64", Action: violation.ActionBlock, Count: 2})
	var b strings.Builder
	shown := map[string]uint64{}
	if err := writeViolationTable(&b, vr, shown, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "WORKLOAD") || !strings.Contains(b.String(), "unit web.service  mkdir    x86_64  Block   2") {
		t.Errorf("table:\n%s", b.String())
	}
	b.Reset()
	_ = writeViolationTable(&b, vr, shown, false)
	if b.Len() != 0 {
		t.Errorf("unchanged entry shown again: %q", b.String())
	}
	vr.Violations[0].Count = 5
	_ = writeViolationTable(&b, vr, shown, false)
	if f := strings.Fields(b.String()); len(f) < 6 || f[4] != "Block" || f[5] != "5" {
		t.Errorf("grown entry not shown: %q", b.String())
	}
}
