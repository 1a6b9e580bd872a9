package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const examples = "../../examples"

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, streams{in: strings.NewReader(""), out: &out, err: &errb})
	return code, out.String(), errb.String()
}

func TestValidate(t *testing.T) {
	code, out, errs := runCLI(t, "validate", examples)
	if code != exitOK || errs != "" {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "valid: wordpress-mysql/ksp-wordpress-flat ("+filepath.Join(examples, "wordpress-flat.yaml")+" document 1, flat form)") {
		t.Errorf("output: %s", out)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("kind: KubeArmorSeccompPolicy\nname: a\nnamespace: b\napp: x\nsyscalls: [read, nosuch]\naction: Permit\n---\nkind: KubeArmorSeccompPolicy\nname: ok\nnamespace: b\napp: x\nsyscalls: [read]\naction: Allow\n"), 0o644)
	code, out, errs = runCLI(t, "validate", bad)
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d", code, exitInvalid)
	}
	// Every problem in one run, each naming file, line, document, field and value.
	for _, want := range []string{
		bad + `:5: document 1 (b/a): syscalls[1]: "nosuch": unknown system call`,
		bad + `:6: document 1 (b/a): action: "Permit": unknown action`,
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if !strings.Contains(out, "valid: b/ok") {
		t.Errorf("the valid document is not listed: %q", out)
	}

	// -o yaml converts the flat form to the CRD form.
	code, out, _ = runCLI(t, "validate", "-o", "yaml", filepath.Join(examples, "wordpress-flat.yaml"))
	if code != 0 || !strings.Contains(out, "apiVersion: security.kubearmor.com/v1") || !strings.Contains(out, "matchLabels:\n      app: wordpress") {
		t.Errorf("exit %d, yaml:\n%s", code, out)
	}
}

func TestMergeOutputs(t *testing.T) {
	code, out, errs := runCLI(t, "merge", "-f", examples, "--namespace", "wordpress-mysql", "--labels", "app=wordpress", "--runtime", "none")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var prof struct {
		DefaultAction string   `json:"defaultAction"`
		Architectures []string `json:"architectures"`
		Syscalls      []struct {
			Names  []string `json:"names"`
			Action string   `json:"action"`
		} `json:"syscalls"`
	}
	if err := json.Unmarshal([]byte(out), &prof); err != nil {
		t.Fatal(err)
	}
	if prof.DefaultAction != "SCMP_ACT_ERRNO" || len(prof.Syscalls) != 1 || strings.Join(prof.Syscalls[0].Names, ",") != "accept4,epoll_wait,futex,madvise,pselect6" {
		t.Errorf("profile: %s", out)
	}

	// Same input, same bytes.
	_, again, _ := runCLI(t, "merge", "-f", examples, "--namespace", "wordpress-mysql", "--labels", "app=wordpress", "--runtime", "none")
	if again != out {
		t.Error("merge output is not deterministic")
	}

	code, out, _ = runCLI(t, "merge", "-f", filepath.Join(examples, "deny-wins.yaml"), "-n", "demo", "-l", "app=web", "--explain")
	if code != 0 || !strings.Contains(out, "overrides policy demo/kscmp1 Allow") || !strings.Contains(out, "runtime runc (start-up)") {
		t.Errorf("explain (exit %d):\n%s", code, out)
	}
	code, out, errs = runCLI(t, "merge", "-f", filepath.Join(examples, "deny-wins.yaml"), "-n", "demo", "-l", "app=web", "-o", "systemd")
	if code != 0 || !strings.Contains(out, "SystemCallFilter=~mkdir write\n") {
		t.Errorf("systemd (exit %d):\n%s", code, out)
	}
	// A drop-in is for a unit systemd starts: no runtime's start-up set
	// unless --runtime asks for one.
	if !strings.Contains(out, "\nSystemCallFilter=getpid read\n") {
		t.Errorf("systemd without --runtime carries more than the policies allow:\n%s", out)
	}
	// The profile refuses what every program needs to start: said on stderr.
	if want := "kscmp: warning: namespace demo, labels {app=web}: the profile refuses arch_prctl, close, execve, mmap, mprotect, newfstatat, openat, pread64, which every dynamically linked program calls before its main"; !strings.Contains(errs, want) {
		t.Errorf("no start-up warning; stderr:\n%s", errs)
	}
	code, out, errs = runCLI(t, "merge", "-f", filepath.Join(examples, "deny-wins.yaml"), "-n", "demo", "-l", "app=web", "-o", "systemd", "--runtime", "runc")
	if code != 0 || !strings.Contains(out, "=capget capset chdir ") {
		t.Errorf("systemd --runtime runc (exit %d): no runc start-up set:\n%s", code, out)
	}
	if !strings.Contains(errs, "the profile refuses arch_prctl, mmap, mprotect, pread64,") {
		t.Errorf("with runc's set (execve, openat, read, ...): stderr:\n%s", errs)
	}
	code, out, _ = runCLI(t, "merge", "-f", filepath.Join(examples, "deny-wins.yaml"), "-n", "demo", "-l", "app=web", "--explain", "-o", "json")
	if code != 0 || !json.Valid([]byte(out)) || !strings.Contains(out, `"kind": "runtime"`) {
		t.Errorf("explain json (exit %d):\n%s", code, out)
	}
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"merge", "-f", examples, "-n", "wordpress-mysql", "-l", "app=nothing"}, exitNoMatch, "no policy selects namespace wordpress-mysql, labels {app=nothing}"},
		{[]string{"merge", "-f", examples, "-l", "app=x"}, exitUsage, "--namespace is required"},
		{[]string{"merge", "-f", examples, "-n", "x", "-l", "app"}, exitUsage, `--labels: "app": want key=value`},
		{[]string{"merge", "-f", examples, "-n", "x", "--runtime", "docker"}, exitUsage, `unknown runtime "docker"`},
		{[]string{"merge", "-f", examples, "-n", "x", "-o", "xml"}, exitUsage, `-o "xml"`},
		{[]string{"merge", "--bogus"}, exitUsage, "unknown flag: --bogus"},
		{[]string{"bogus"}, exitUsage, `unknown command "bogus"`},
		{[]string{"validate"}, exitUsage, "requires at least 1 arg"},
		{[]string{"validate", "/nonexistent"}, exitInvalid, "/nonexistent: stat /nonexistent: no such file or directory"},
		{[]string{"exec", "--profile", "/nonexistent", "--", "true"}, exitInvalid, "read profile"},
		// A problem names the flag the user typed.
		{[]string{"discover", "--selector", "app"}, exitUsage, `--selector: "app": want key=value`},
		{[]string{"discover", "-l", "app=a,app=b"}, exitUsage, `--selector: key "app" given twice`},
		{[]string{"discover", "--max-keys", "0"}, exitUsage, "--max-keys 0: out of range 1..16777216"},
		{[]string{"discover", "--pid", "-5"}, exitUsage, "--pid -5: "},
		{[]string{"recommend", "--from", "/nonexistent/*.json", "-o", "/nonexistent"}, exitInvalid, `--from: "/nonexistent/*.json": no such file`},
	}
	for _, c := range cases {
		code, _, errs := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", c.args, code, c.code, errs, c.msg)
		}
	}
}

func TestEnvAndConfigFile(t *testing.T) {
	t.Setenv("KSCMP_NAMESPACE", "demo")
	t.Setenv("KSCMP_LABELS", "app=web")
	code, out, errs := runCLI(t, "merge", "-f", filepath.Join(examples, "deny-wins.yaml"), "-o", "systemd")
	if code != 0 || !strings.Contains(out, "Policies: demo/kscmp1 demo/kscmp2") {
		t.Fatalf("env: exit %d %s %s", code, out, errs)
	}
	// A flag wins over the environment.
	code, _, errs = runCLI(t, "merge", "-f", filepath.Join(examples, "deny-wins.yaml"), "-n", "other")
	if code != exitNoMatch {
		t.Fatalf("flag over env: exit %d: %s", code, errs)
	}

	t.Setenv("KSCMP_NAMESPACE", "")
	t.Setenv("KSCMP_LABELS", "")
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfg, []byte("namespace: demo\nlabels: app=web\nruntime: crun\narch-family: arm64\nfilename: ["+filepath.Join(examples, "deny-wins.yaml")+"]\n"), 0o644)
	code, out, errs = runCLI(t, "--config", cfg, "merge", "--explain")
	if code != 0 || !strings.Contains(out, "runtime start-up set: crun") || !strings.Contains(out, "architectures: aarch64 arm") {
		t.Fatalf("config: exit %d\n%s\n%s", code, out, errs)
	}
	// A runtime from the config file is given: -o systemd keeps it.
	code, out, _ = runCLI(t, "--config", cfg, "merge", "-o", "systemd")
	if code != 0 || !strings.Contains(out, " rt_sigprocmask ") {
		t.Fatalf("config runtime with -o systemd: exit %d\n%s", code, out)
	}
	t.Setenv("KSCMP_RUNTIME", "none")
	code, out, _ = runCLI(t, "--config", cfg, "merge", "--explain")
	if code != 0 || strings.Contains(out, "runtime start-up set") {
		t.Fatalf("env over config: exit %d\n%s", code, out)
	}
}
