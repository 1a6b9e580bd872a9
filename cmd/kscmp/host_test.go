package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/internal/nspawntest"
	"github.com/kubearmor/kscmp/internal/ocitest"
)

// demoService is the service of the host loop: it does a little work (reads
// files, lists a directory, writes and reads back a file) and, when
// /proof/mode says "probe", also tries mkdir, which it never does while it
// is discovered. Each run appends one line to /proof/results/log.
const demoService = `#!/bin/sh
n=$(( $(cat /proof/results/runs 2>/dev/null || echo 0) + 1 ))
echo "$n" > /proof/results/runs
work=ok
grep -q Debian /etc/os-release || work=failed
ls /etc > /dev/null || work=failed
echo "hello $n" > /tmp/kscmp-demo.txt || work=failed
[ "$(cat /tmp/kscmp-demo.txt)" = "hello $n" ] || work=failed
probe=skipped
if [ "$(cat /proof/mode)" = probe ]; then
  if msg=$(mkdir /tmp/kscmp-probe-$n 2>&1); then probe=allowed; else probe="refused: $msg"; fi
fi
echo "run $n: work $work; mkdir $probe" >> /proof/results/log
`

const demoUnit = `[Unit]
Description=kscmp host-loop demo service

[Service]
Type=oneshot
ExecStart=/bin/sh /proof/demo.sh
`

// hostStep runs a command on the host or in the machine and returns its
// combined output, failing the test when it does not exit with want.
func hostStep(t *testing.T, cmd *exec.Cmd, want int) string {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", strings.Join(cmd.Args, " "), err)
	}
	t.Logf("$ %s  (exit %d)\n%s", strings.Join(cmd.Args, " "), code, out.String())
	if code != want {
		t.Fatalf("%s: exit %d, want %d:\n%s", strings.Join(cmd.Args, " "), code, want, out.String())
	}
	return out.String()
}

// TestHostSystemdLoop is the host loop on a real systemd, booted in a
// systemd-nspawn machine: kscmp on the host discovers a service of the
// machine with eBPF, recommends its policy, 'kscmp apply --systemd
// --restart' in the machine installs the drop-in (daemon-reload, the check
// that systemd loaded it, restart), the service still works and a call it
// never made fails with EPERM; a refused apply changes nothing; 'kscmp
// remove --restart' restores the unit exactly.
func TestHostSystemdLoop(t *testing.T) {
	tree := nspawntest.Tree(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	proof := t.TempDir()
	bin := filepath.Join(proof, "kscmp")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	hostStep(t, build, 0)
	os.MkdirAll(filepath.Join(proof, "results"), 0o755)
	os.WriteFile(filepath.Join(proof, "demo.sh"), []byte(demoService), 0o755)
	os.WriteFile(filepath.Join(proof, "mode"), []byte("normal\n"), 0o644)
	os.MkdirAll(filepath.Join(proof, "bad"), 0o755)
	os.WriteFile(filepath.Join(proof, "bad", "bad.yaml"), []byte(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorSeccompPolicy
metadata: {name: too-new, namespace: default}
spec:
  selector: {systemdUnits: [kscmp-demo.service]}
  seccomp: {syscalls: [mseal], action: Allow}
`), 0o644)

	m, err := nspawntest.Start(ctx, t, nspawntest.Options{
		Tree:    tree,
		Binds:   []nspawntest.Bind{{Host: proof, Guest: "/proof"}},
		Units:   map[string]string{"kscmp-demo.service": demoUnit},
		Timeout: 3 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("machine %s: leader pid %d, cgroup %s", m.Name(), m.Leader(), m.Cgroup())
	in := func(name string, args ...string) *exec.Cmd { return m.Command(ctx, name, args...) }
	unitBefore := hostStep(t, in("systemctl", "cat", "kscmp-demo.service"), 0)
	hostStep(t, in("systemctl", "show", "-p", "SystemCallFilter", "kscmp-demo.service"), 0)

	// 1. Discover from the host, while the machine runs the service once.
	reportFile := filepath.Join(proof, "report.json")
	stop := startDiscover(ctx, t, bin, "--machine-pid", strconv.Itoa(m.Leader()), "--systemd-unit", "kscmp-demo.service", "-o", reportFile)
	hostStep(t, in("systemctl", "start", "kscmp-demo.service"), 0)
	t.Logf("discover:\n%s", stop())
	rep, err := report.ReadFile(reportFile)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, w := range rep.Workloads {
		seen = append(seen, fmt.Sprintf("%+v", w.Identity))
		if w.Identity.Unit != "kscmp-demo.service" || w.Identity.Kind != report.KindSystemd {
			t.Errorf("workload %+v in the report of --systemd-unit kscmp-demo.service", w.Identity)
		}
	}
	t.Logf("report: %v", seen)
	if len(rep.Workloads) != 1 {
		t.Fatalf("want the service alone in the report, got %v", seen)
	}
	// Neither mkdir (never made) nor what systemd's child for the service
	// does before it executes it (its journal stream socket, capabilities):
	// those are systemd's, made before the filter is installed.
	if calls := rep.Workloads[0].Syscalls["x86_64"]; len(calls) == 0 || containsAny(calls, "mkdir", "mkdirat", "socket", "connect", "capset") {
		t.Fatalf("recorded set %v: want the service's calls, without mkdir and systemd's own", calls)
	}

	// 2. Recommend: the policy a person reviews.
	policies := filepath.Join(proof, "policies")
	hostStep(t, exec.CommandContext(ctx, bin, "recommend", "--from", reportFile, "-o", policies), 0)
	policy, err := os.ReadFile(filepath.Join(policies, "_host", "kscmp-demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("policy:\n%s", policy)

	// 3. Apply in the machine: drop-in, daemon-reload, check, restart.
	os.WriteFile(filepath.Join(proof, "mode"), []byte("probe\n"), 0o644)
	hostStep(t, in("/proof/kscmp", "apply", "-f", "/proof/policies/_host", "--systemd", "--restart"), 0)
	dropIn := hostStep(t, in("cat", "/etc/systemd/system/kscmp-demo.service.d/50-kscmp-seccomp.conf"), 0)
	show := hostStep(t, in("systemctl", "show", "-p", "DropInPaths", "-p", "SystemCallErrorNumber", "-p", "SystemCallArchitectures", "kscmp-demo.service"), 0)
	if !strings.Contains(show, "50-kscmp-seccomp.conf") || !strings.Contains(show, "SystemCallErrorNumber=1") {
		t.Errorf("systemd's view of the unit after apply:\n%s", show)
	}
	if !strings.Contains(dropIn, "SystemCallFilter=") {
		t.Errorf("drop-in:\n%s", dropIn)
	}

	// 4. A refused apply (a call this systemd does not know) changes nothing.
	out := hostStep(t, in("/proof/kscmp", "apply", "-f", "/proof/bad", "--systemd", "--restart"), exitInvalid)
	if !strings.Contains(out, "mseal") {
		t.Errorf("refused apply does not name the call:\n%s", out)
	}
	if again := hostStep(t, in("cat", "/etc/systemd/system/kscmp-demo.service.d/50-kscmp-seccomp.conf"), 0); again != dropIn {
		t.Errorf("a refused apply changed the drop-in:\n%s", again)
	}

	// 5. Remove: the unit exactly as before, and the service without filter.
	hostStep(t, in("/proof/kscmp", "remove", "--systemd", "--unit", "kscmp-demo", "--restart"), 0)
	if unitAfter := hostStep(t, in("systemctl", "cat", "kscmp-demo.service"), 0); unitAfter != unitBefore {
		t.Errorf("after remove the unit is\n%s\nwant\n%s", unitAfter, unitBefore)
	}
	hostStep(t, in("test", "!", "-e", "/etc/systemd/system/kscmp-demo.service.d"), 0)

	if err := m.Poweroff(); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(filepath.Join(proof, "results", "log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("service runs:\n%s", log)
	runs := strings.Split(strings.TrimSpace(string(log)), "\n")
	ok := len(runs) == 3 &&
		runs[0] == "run 1: work ok; mkdir skipped" && // discovered
		strings.HasPrefix(runs[1], "run 2: work ok; mkdir refused: mkdir: cannot create directory") && // under the drop-in
		strings.HasSuffix(runs[1], ": Operation not permitted") &&
		runs[2] == "run 3: work ok; mkdir allowed" // after remove
	if !ok {
		t.Errorf("service runs:\n%s\nwant: 1 works (no mkdir), 2 works and mkdir fails with EPERM, 3 works and mkdir works", log)
	}
}

// startDiscover starts 'kscmp discover' with args until Ctrl-C and waits
// until it records; stop sends Ctrl-C and waits for the report.
func startDiscover(ctx context.Context, t *testing.T, bin string, args ...string) (stop func() string) {
	t.Helper()
	disc := exec.CommandContext(ctx, bin, append([]string{"discover", "--duration", "0", "--interval", "100ms"}, args...)...)
	var stderr lockedBuffer
	disc.Stderr = &stderr
	if err := disc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disc.Process.Kill() })
	for !strings.Contains(stderr.String(), "discover: ") {
		if ctx.Err() != nil {
			t.Fatalf("discover did not start: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func() string {
		t.Helper()
		time.Sleep(300 * time.Millisecond) // at least one read of the kernel's sets
		disc.Process.Signal(syscall.SIGINT)
		if err := disc.Wait(); err != nil {
			t.Fatalf("discover: %v\n%s", err, stderr.String())
		}
		return stderr.String()
	}
}

func containsAny(list []string, names ...string) bool {
	for _, l := range list {
		for _, n := range names {
			if l == n {
				return true
			}
		}
	}
	return false
}

// TestHostContainerLoop is the loop for containers run without Kubernetes,
// with the built binary and real runtimes: 'kscmp discover --container ID'
// records a busybox container run by runc (or crun), 'kscmp recommend' writes
// its host policy (selector.containerNames), 'kscmp apply --dir' writes
// DIR/<name>.json, and the same container started with that file as its
// seccomp profile (as 'docker run --security-opt seccomp=FILE' or runc's
// config.json use it) works, while a call it never made fails with EPERM.
func TestHostContainerLoop(t *testing.T) {
	bin := buildKscmp(t)
	for _, rt := range []string{"runc", "crun"} {
		t.Run(rt, func(t *testing.T) {
			runtime := ocitest.Require(t, rt)
			rootfs := ocitest.BusyboxRootfs(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			dir := t.TempDir()
			id := fmt.Sprintf("kscmp-web-%s-%d", rt, time.Now().UnixNano())
			work := []string{"sh", "-c", "echo hello; ls / > /dev/null; cat /etc/passwd > /dev/null"}

			reportFile := filepath.Join(dir, "report.json")
			stop := startDiscover(ctx, t, bin, "--container", id, "-o", reportFile)
			res, err := ocitest.Run(ctx, t, ocitest.Container{Runtime: runtime, Rootfs: rootfs, ID: id, Args: work})
			if err != nil || res.ExitCode != 0 {
				t.Fatalf("discovered run: %v %+v", err, res)
			}
			stop()

			policies := filepath.Join(dir, "policies")
			hostStep(t, exec.CommandContext(ctx, bin, "recommend", "--from", reportFile, "-o", policies), 0)
			profiles := filepath.Join(dir, "seccomp")
			hostStep(t, exec.CommandContext(ctx, bin, "apply", "-f", filepath.Join(policies, "_host"), "--dir", profiles, "--runtime", rt), 0)
			prof, err := os.ReadFile(filepath.Join(profiles, id+".json"))
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				args []string
				code int
				out  string
			}{
				{work, 0, "hello"},
				{[]string{"mkdir", "/tmp/x"}, 1, "Operation not permitted"},
			} {
				res, err := ocitest.Run(ctx, t, ocitest.Container{Runtime: runtime, Rootfs: rootfs, ID: id, Args: tc.args, Seccomp: prof})
				if err != nil {
					t.Fatal(err)
				}
				if res.ExitCode != tc.code || !strings.Contains(res.Stdout+res.Stderr, tc.out) {
					t.Errorf("%v under %s/%s.json: exit %d, %q %q, runtime log %q; want exit %d and %q", tc.args, profiles, id, res.ExitCode, res.Stdout, res.Stderr, res.RuntimeLog, tc.code, tc.out)
				}
			}
		})
	}
}
