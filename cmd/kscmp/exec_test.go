package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/internal/auditlog"
	"github.com/kubearmor/kscmp/internal/testenv"
	"github.com/kubearmor/kscmp/merge"
)

// TestStarterSyscalls proves merge's start-up list on this machine in both
// directions, with the built binary: /bin/true and /bin/ls (dynamically
// linked) run under kscmp exec with a profile that refuses one call. Each
// listed call refused, neither starts, and kscmp exec warns before it runs
// them; each of the other calls they make before main refused, both run,
// and there is no warning.
func TestStarterSyscalls(t *testing.T) {
	var missing []string
	for _, tool := range []string{"go", "/bin/true", "/bin/ls"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	testenv.Missing(t, missing...)
	bin := buildKscmp(t)
	dir := t.TempDir()
	native := api.Family(defaultFamily()).Native()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// under runs prog under a profile that refuses name (only) and reports
	// whether it ran, and kscmp's stderr.
	under := func(name string, prog ...string) (ok bool, stderr string) {
		prof, _ := json.Marshal(map[string]any{"defaultAction": "SCMP_ACT_ALLOW", "architectures": []string{native.OCI()},
			"syscalls": []map[string]any{{"names": []string{name}, "action": "SCMP_ACT_ERRNO"}}})
		path := filepath.Join(dir, name+".json")
		os.WriteFile(path, prof, 0o644)
		cmd := exec.CommandContext(ctx, bin, append([]string{"exec", "--profile", path, "--"}, prog...)...)
		var errb strings.Builder
		cmd.Stderr = &errb
		return cmd.Run() == nil, errb.String()
	}
	check := func(name string, wantStart bool) {
		t.Helper()
		for _, prog := range [][]string{{"/bin/true"}, {"/bin/ls", "/"}} {
			ok, stderr := under(name, prog...)
			warned := strings.Contains(stderr, "kscmp: warning: ") && strings.Contains(stderr, "refuses "+name+", which every")
			if ok != wantStart || warned == wantStart {
				t.Errorf("%v with %s refused: started %v, warned %v (want started %v, warned %v); stderr %q", prog, name, ok, warned, wantStart, !wantStart, stderr)
			}
		}
	}
	check("mkdir", true) // the control
	for _, alt := range merge.StarterSyscalls(native) {
		check(alt[0], false)
	}
	for _, name := range []string{"access", "brk", "munmap", "prlimit64", "rseq", "set_robust_list", "set_tid_address"} {
		if native.Has(name) {
			check(name, true)
		}
	}
}

// TestExecComplainExample runs the README's complain-mode example with the
// built binary: merged from examples/complain.yaml, kscmp exec runs mkdir,
// which the allow-list does not allow (complain mode: it runs, and the
// kernel's audit log gets its seccomp record), and refuses chmod, which
// the policy blocks.
func TestExecComplainExample(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (to read the kernel's audit records)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		testenv.Missing(t, "go")
	}
	bin := buildKscmp(t)
	dir := t.TempDir()
	code, prof, errs := runCLI(t, "merge", "-f", filepath.Join(examples, "complain.yaml"), "-n", "demo", "-l", "app=coreutils-complain", "--runtime", "none")
	if code != exitOK || !strings.Contains(prof, `"defaultAction": "SCMP_ACT_LOG"`) {
		t.Fatalf("merge: exit %d: %s\n%s", code, errs, prof)
	}
	profile := filepath.Join(dir, "complain.json")
	os.WriteFile(profile, []byte(prof), 0o644)
	audit, err := auditlog.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	made := filepath.Join(dir, "logged")
	if out, err := exec.CommandContext(ctx, bin, "exec", "--profile", profile, "--", "mkdir", made).CombinedOutput(); err != nil {
		t.Fatalf("mkdir in complain mode: %v: %s", err, out)
	}
	if _, err := os.Stat(made); err != nil {
		t.Fatalf("mkdir in complain mode made nothing: %v", err)
	}
	table := api.ArchX86_64.Table().SyscallNames
	rec, seen, err := audit.Wait(ctx, auditlog.SeccompLogged("mkdir", table["mkdir"], table["mkdirat"]))
	if err != nil {
		t.Fatalf("no seccomp log record for mkdir (%v); records seen: %v", err, seen)
	}
	t.Logf("audit record: %s", rec.Text)
	out, err := exec.CommandContext(ctx, bin, "exec", "--profile", profile, "--", "chmod", "700", made).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Operation not permitted") {
		t.Fatalf("chmod (an explicit Block rule) in complain mode: want EPERM, got %v: %s", err, out)
	}
}
