package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubearmor/kscmp/deploy/host"
)

const hostPolicies = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorSeccompPolicy
metadata: {name: demo, namespace: default}
spec:
  selector: {systemdUnits: [demo]}
  seccomp: {syscalls: [read, write, close], action: Allow}
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorSeccompPolicy
metadata: {name: web, namespace: default}
spec:
  selector: {containerNames: [web]}
  seccomp: {syscalls: [mkdir], action: Block}
`

// TestApplyCLI drives apply and remove on a --root tree (no running
// systemd): outputs, exit codes, and that refused runs change nothing.
func TestApplyCLI(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policies.yaml")
	os.WriteFile(pol, []byte(hostPolicies), 0o644)
	root := filepath.Join(dir, "root")
	dropIn := filepath.Join(root, "etc/systemd/system/demo.service.d", host.DropInName)

	code, out, errOut := runCLI(t, "apply", "-f", pol, "--systemd", "--root", root, "-o", "json")
	if code != 0 {
		t.Fatalf("apply: exit %d: %s", code, errOut)
	}
	var changes []host.Change
	if err := json.Unmarshal([]byte(out), &changes); err != nil || len(changes) != 1 || changes[0].Action != host.Created || changes[0].Path != dropIn {
		t.Errorf("apply -o json: %v %s", err, out)
	}
	data, err := os.ReadFile(dropIn)
	if err != nil || !strings.Contains(string(data), "SystemCallFilter=close read restart_syscall rt_sigreturn write\n") {
		t.Errorf("drop-in: %v\n%s", err, data)
	}
	if code, out, _ = runCLI(t, "apply", "-f", pol, "--systemd", "--root", root, "--dry-run"); code != 0 || out != "(dry run) unchanged demo.service: "+dropIn+" (default/demo)\n" {
		t.Errorf("dry run: exit %d: %q", code, out)
	}

	// Invalid policies: exit 2, nothing changes.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(hostPolicies, "[read, write, close]", "[read, write, close, not_a_syscall]", 1)), 0o644)
	if code, _, errOut = runCLI(t, "apply", "-f", bad, "--systemd", "--root", root); code != exitInvalid || !strings.Contains(errOut, "not_a_syscall") {
		t.Errorf("invalid policy: exit %d: %s", code, errOut)
	}
	if now, _ := os.ReadFile(dropIn); string(now) != string(data) {
		t.Error("a refused apply changed the drop-in")
	}
	// A unit no policy selects: exit 3.
	if code, _, errOut = runCLI(t, "apply", "-f", pol, "--systemd", "--root", root, "--unit", "cron"); code != exitNoMatch {
		t.Errorf("--unit cron: exit %d: %s", code, errOut)
	}
	// Usage errors: exit 1.
	for _, args := range [][]string{
		{"apply", "-f", pol},
		{"apply", "-f", pol, "--systemd", "--dir", dir},
		{"apply", "-f", pol, "--dir", dir, "--unit", "x"},
		{"apply", "--systemd"},
		{"remove", "--systemd"},
		{"remove", "--systemd", "--all", "--unit", "demo"},
	} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}

	// Containers: one profile per name.
	if code, out, errOut = runCLI(t, "apply", "-f", pol, "--dir", "/etc/seccomp/kubearmor", "--root", root, "--runtime", "crun"); code != 0 || !strings.HasPrefix(out, "created web: ") {
		t.Errorf("apply --dir: exit %d: %s %s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/seccomp/kubearmor/web.json")); err != nil {
		t.Error(err)
	}

	// remove --all of each kind leaves no file of kscmp's.
	if code, out, errOut = runCLI(t, "remove", "--systemd", "--root", root, "--all"); code != 0 || out != "removed demo.service: "+dropIn+"\n" {
		t.Errorf("remove --systemd --all: exit %d: %q %s", code, out, errOut)
	}
	if code, out, errOut = runCLI(t, "remove", "--dir", "/etc/seccomp/kubearmor", "--root", root, "-f", pol); code != 0 || !strings.HasPrefix(out, "removed web: ") {
		t.Errorf("remove --dir -f: exit %d: %q %s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Dir(dropIn)); !os.IsNotExist(err) {
		t.Errorf("demo.service.d left: %v", err)
	}
}
