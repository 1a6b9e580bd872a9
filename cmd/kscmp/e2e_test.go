package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// buildKscmp builds the real binary once per test. A missing go skips the
// test, or fails it with CI=true (testenv).
func buildKscmp(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		testenv.Missing(t, "go on PATH, to build kscmp (/usr/local/go/bin)")
	}
	bin := filepath.Join(t.TempDir(), "kscmp")
	// Static, as make build and the image build it: a cgo build starts
	// threads through glibc (rseq, set_robust_list), so kscmp exec under a
	// profile refusing those could die before its execve.
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestREADMETour runs the README's tour with the built binary: validate,
// merge to a file, and exec a command under the profile.
func TestREADMETour(t *testing.T) {
	bin := buildKscmp(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kscmp := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		return string(out), err
	}

	if out, err := kscmp("validate", examples); err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	policy := filepath.Join(dir, "no-mkdir.yaml")
	os.WriteFile(policy, []byte("kind: KubeArmorSeccompPolicy\nname: no-mkdir\nnamespace: demo\napp: tool\nsyscalls: [mkdir, mkdirat]\naction: Block\n"), 0o644)
	prof, err := kscmp("merge", "-f", policy, "-n", "demo", "-l", "app=tool")
	if err != nil {
		t.Fatalf("merge: %v\n%s", err, prof)
	}
	profile := filepath.Join(dir, "profile.json")
	os.WriteFile(profile, []byte(prof), 0o644)

	if out, err := kscmp("exec", "--profile", profile, "--", "echo", "allowed"); err != nil || out != "allowed\n" {
		t.Fatalf("allowed command: %v: %q", err, out)
	}
	target := filepath.Join(dir, "made")
	out, err := kscmp("exec", "--profile", profile, "--", "mkdir", target)
	if err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Fatalf("mkdir under the profile: want EPERM, got %v: %q", err, out)
	}
	if _, err := os.Stat(target); err == nil {
		t.Fatal("directory made despite the profile")
	}
	// Control: the same mkdir through kscmp exec under a profile that does
	// not block it works, so the EPERM above is the policy's.
	other := filepath.Join(dir, "no-ptrace.yaml")
	os.WriteFile(other, []byte("kind: KubeArmorSeccompPolicy\nname: no-ptrace\nnamespace: demo\napp: tool\nsyscalls: [ptrace]\naction: Block\n"), 0o644)
	otherProf, err := kscmp("merge", "-f", other, "-n", "demo", "-l", "app=tool")
	if err != nil {
		t.Fatalf("merge: %v\n%s", err, otherProf)
	}
	otherFile := filepath.Join(dir, "no-ptrace.json")
	os.WriteFile(otherFile, []byte(otherProf), 0o644)
	if out, err := kscmp("exec", "--profile", otherFile, "--", "mkdir", target); err != nil {
		t.Fatalf("control: mkdir under a profile without the mkdir block: %v: %q", err, out)
	}
	if _, err := os.Stat(target); err != nil {
		t.Fatalf("control: %v", err)
	}
	// Exit codes of exec itself.
	out, err = kscmp("exec", "--profile", profile, "--", "/nonexistent/cmd")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitNotFound {
		t.Errorf("missing command: want exit %d, got %v: %s", exitNotFound, err, out)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"defaultAction":"SCMP_ACT_TRACE"}`), 0o644)
	out, err = kscmp("exec", "--profile", bad, "--", "true")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInvalid || !strings.Contains(out, "defaultAction") {
		t.Errorf("bad profile: want exit %d, got %v: %s", exitInvalid, err, out)
	}
}
