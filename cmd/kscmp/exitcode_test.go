package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// failingWriter is a stream that cannot be written: a closed pipe, a full
// disk.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) {
	return 0, errors.New("write /dev/stdout: no space left on device")
}

// TestExitIO: an output that cannot be written is an I/O failure (5), never
// a usage error (1): the flags were right.
func TestExitIO(t *testing.T) {
	dir := t.TempDir()
	reports := filepath.Join(dir, "r.json")
	os.WriteFile(reports, []byte(sampleReport), 0o644)
	notADir := filepath.Join(dir, "file")
	os.WriteFile(notADir, nil, 0o644)

	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"recommend", "--from", reports, "-o", filepath.Join(notADir, "policies")}, "not a directory"},
		{[]string{"recommend", "--from", reports, "-o", filepath.Join(dir, "policies"), "--summary", filepath.Join(notADir, "pr.md")}, "not a directory"},
	} {
		if code, _, errs := runCLI(t, c.args...); code != exitIO || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", c.args, code, exitIO, errs, c.msg)
		}
	}
	for _, args := range [][]string{
		{"version"},
		{"validate", "-o", "yaml", examples},
		{"merge", "-f", examples, "-n", "wordpress-mysql", "-l", "app=wordpress"},
	} {
		var errb strings.Builder
		code := run(context.Background(), args, streams{in: strings.NewReader(""), out: failingWriter{}, err: &errb})
		if code != exitIO || !strings.Contains(errb.String(), "no space left on device") {
			t.Errorf("%v to a failing stdout: exit %d (want %d), stderr %q", args, code, exitIO, errb.String())
		}
	}
}

// TestExitUnsupported: what this system cannot do exits 4, not "invalid
// input" (2): apply --systemd without systemd-analyze, and discover run by a
// user who may not load BPF programs (the real recorder, refused by the real
// kernel).
func TestExitUnsupported(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	code, _, errs := runCLI(t, "apply", "-f", examples, "--systemd")
	if code != exitUnsupported || !strings.Contains(errs, "systemd-analyze not found") {
		t.Errorf("apply --systemd without systemd-analyze: exit %d (want %d): %s", code, exitUnsupported, errs)
	}
}

func TestDiscoverUnprivilegedExitsUnsupported(t *testing.T) {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (to run kscmp as nobody)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		missing = append(missing, "go in PATH")
	}
	testenv.Missing(t, missing...)
	// A directory nobody may enter, with the binary in it.
	dir, err := os.MkdirTemp("", "kscmp-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// nobody may write the report there: discover checks -o before it
	// records (exit 5 otherwise), so only the missing privilege is left.
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "kscmp")
	data, err := os.ReadFile(buildKscmp(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "discover", "--duration", "1s", "-o", filepath.Join(dir, "never.json"))
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitUnsupported || !strings.Contains(string(out), "not supported by this system") || !strings.Contains(string(out), "(discover needs root, or CAP_BPF") {
		t.Fatalf("discover as nobody: %v (want exit %d)\n%s", err, exitUnsupported, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "never.json")); err == nil {
		t.Error("a report was written although nothing was recorded")
	}
}

// TestDiscoverChecksFirst: an output that cannot be written and a negative
// duration are refused before anything is recorded (#12 item 10). Before
// the fix -o under a file recorded for the whole duration and then lost the
// report, and -d -1s recorded until Ctrl-C; here that shows as the command
// still running after a minute.
func TestDiscoverChecksFirst(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"discover", "-d", "10m", "-o", filepath.Join(file, "report.json")}, exitIO, "-o: write " + filepath.Join(file, "report.json") + ": "},
		{[]string{"discover", "-d", "10m", "-o", dir}, exitIO, "-o: write " + dir + ": is a directory"},
		{[]string{"discover", "-d", "-1s", "-o", filepath.Join(dir, "r.json")}, exitUsage, "--duration -1s: must not be negative"},
		{[]string{"discover", "--interval", "-1s", "-o", filepath.Join(dir, "r.json")}, exitUsage, "--interval -1s: must not be negative"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		var errb strings.Builder
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, c.args, streams{in: strings.NewReader(""), out: io.Discard, err: &errb})
		}()
		var code int
		select {
		case code = <-done:
		case <-time.After(time.Minute):
			cancel()
			<-done
			t.Errorf("%v: still recording after a minute", c.args)
			continue
		}
		cancel()
		if code != c.code || !strings.Contains(errb.String(), c.msg) {
			t.Errorf("%v: exit %d (want %d): %s (want %q)", c.args, code, c.code, errb.String(), c.msg)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the checks left files: %v", entries)
	}
}

// TestExitRefusals: refusals to touch a file kscmp did not write, or a
// managed path that is not a regular file, change nothing and exit 5 (an
// output could not be written), never 1, which means a usage error (#12
// item 11); a report named like a pattern is read by its name.
func TestExitRefusals(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.yaml")
	os.WriteFile(pol, []byte("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: web, namespace: kscmp-host}\nspec:\n  selector: {containerNames: [web]}\n  seccomp: {syscalls: [read], action: Allow}\n"), 0o644)
	profiles := filepath.Join(dir, "profiles")
	os.MkdirAll(profiles, 0o755)
	foreign := filepath.Join(profiles, "web.json")
	os.WriteFile(foreign, []byte("{}\n"), 0o644)
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"apply", "-f", pol, "--dir", profiles}, foreign + " exists and was not written by kscmp: not overwritten"},
		{[]string{"remove", "--dir", profiles, "--container-name", "web"}, foreign + " was not written by kscmp: not removed"},
	} {
		if code, _, errs := runCLI(t, c.args...); code != exitIO || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d (want %d): %s", c.args, code, exitIO, errs)
		}
		if b, _ := os.ReadFile(foreign); string(b) != "{}\n" {
			t.Errorf("%v changed the file: %q", c.args, b)
		}
	}
	os.Remove(foreign)
	os.Symlink("/dev/null", foreign)
	if code, _, errs := runCLI(t, "apply", "-f", pol, "--dir", profiles); code != exitIO || !strings.Contains(errs, "is a symbolic link, not a regular file") {
		t.Errorf("a link at a managed path: exit %d: %s", code, errs)
	}

	reports := filepath.Join(dir, "reports")
	os.MkdirAll(reports, 0o755)
	os.WriteFile(filepath.Join(reports, "rep[1].json"), []byte(sampleReport), 0o644)
	if code, _, errs := runCLI(t, "recommend", "--from", filepath.Join(reports, "rep[1].json"), "-o", filepath.Join(dir, "out")); code != exitOK {
		t.Errorf("--from rep[1].json: exit %d: %s", code, errs)
	}
}

// TestExitBadNames: a name that could be a path is refused before any use:
// on the command line as a usage error naming the flag (1), in kscmp's own
// manifest as invalid input (2); nothing outside the directory is touched.
func TestExitBadNames(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim.json")
	os.WriteFile(victim, []byte("{}\n"), 0o644)
	profiles := filepath.Join(dir, "profiles")
	os.MkdirAll(profiles, 0o755)
	os.WriteFile(filepath.Join(profiles, ".kscmp-managed"), []byte("# Generated by kscmp\n../victim\n"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"remove", "--systemd", "--root", dir, "--unit", "../../../../x/y"}, exitUsage, `--unit "../../../../x/y": not a valid systemd unit name`},
		{[]string{"remove", "--dir", profiles, "--container-name", "../victim"}, exitUsage, `--container-name "../victim": not a valid container name`},
		{[]string{"remove", "--dir", profiles, "--all"}, exitInvalid, `.kscmp-managed:2: "../victim": not a valid container name`},
	} {
		if code, _, errs := runCLI(t, c.args...); code != c.code || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d (want %d): %s (want %q)", c.args, code, c.code, errs, c.msg)
		}
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("the file outside was touched: %v", err)
	}
}
