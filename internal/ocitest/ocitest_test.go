package ocitest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kubearmor/kscmp/internal/testenv"
)

var runtimes = []string{"runc", "crun"}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestEchoHello(t *testing.T) {
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) {
			t.Parallel()
			bin := Require(t, rt)
			res, err := Run(testContext(t), t, Container{
				Runtime: bin,
				Rootfs:  BusyboxRootfs(t),
				Args:    []string{"echo", "hello"},
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.ExitCode != 0 || res.Stdout != "hello\n" || res.Stderr != "" {
				t.Fatalf("got exit %d, stdout %q, stderr %q, runtime log %q; want 0, \"hello\\n\", \"\"",
					res.ExitCode, res.Stdout, res.Stderr, res.RuntimeLog)
			}
			if !strings.HasPrefix(res.ID, "ocitest-") {
				t.Errorf("ID = %q", res.ID)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) {
			t.Parallel()
			bin := Require(t, rt)
			res, err := Run(testContext(t), t, Container{
				Runtime: bin,
				Rootfs:  BusyboxRootfs(t),
				Args:    []string{"sh", "-c", "echo out; echo err >&2; exit 7"},
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.ExitCode != 7 || res.Stdout != "out\n" || res.Stderr != "err\n" {
				t.Fatalf("got exit %d, stdout %q, stderr %q; want 7, \"out\\n\", \"err\\n\"", res.ExitCode, res.Stdout, res.Stderr)
			}
		})
	}
}

func TestRuntimeFailure(t *testing.T) {
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) {
			t.Parallel()
			bin := Require(t, rt)
			res, err := Run(testContext(t), t, Container{
				Runtime: bin,
				Rootfs:  BusyboxRootfs(t),
				Args:    []string{"no-such-program"},
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.ExitCode == 0 || !strings.Contains(res.RuntimeLog, "no-such-program") {
				t.Fatalf("got exit %d, runtime log %q; want non-zero and a log naming the program", res.ExitCode, res.RuntimeLog)
			}
		})
	}
}

const denyMkdir = `{
	"defaultAction": "SCMP_ACT_ALLOW",
	"architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
	"syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
}`

func TestSeccompEnforced(t *testing.T) {
	for _, rt := range runtimes {
		for _, nnp := range []bool{false, true} {
			name := rt + "/nnp=false"
			if nnp {
				name = rt + "/nnp=true"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				bin := Require(t, rt)
				rootfs := BusyboxRootfs(t)
				ctx := testContext(t)
				c := Container{
					Runtime:         bin,
					Rootfs:          rootfs,
					Args:            []string{"mkdir", "/tmp/x"},
					Seccomp:         []byte(denyMkdir),
					NoNewPrivileges: nnp,
				}
				res, err := Run(ctx, t, c)
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if res.ExitCode == 0 || !strings.Contains(res.Stderr, "Operation not permitted") {
					t.Fatalf("with profile: exit %d, stderr %q, runtime log %q; want failure with \"Operation not permitted\"",
						res.ExitCode, res.Stderr, res.RuntimeLog)
				}
				if _, err := os.Stat(filepath.Join(rootfs, "tmp/x")); !os.IsNotExist(err) {
					t.Fatalf("/tmp/x exists after a denied mkdir (stat: %v)", err)
				}
				// Control: the same container without the profile succeeds.
				c.Seccomp = nil
				if res, err = Run(ctx, t, c); err != nil || res.ExitCode != 0 {
					t.Fatalf("without profile: exit %d, err %v, stderr %q", res.ExitCode, err, res.Stderr)
				}
				if _, err := os.Stat(filepath.Join(rootfs, "tmp/x")); err != nil {
					t.Fatalf("without profile: %v", err)
				}
			})
		}
	}
}

func TestKubernetesLikeDefaults(t *testing.T) {
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) {
			t.Parallel()
			bin := Require(t, rt)
			rootfs := BusyboxRootfs(t)
			ctx := testContext(t)
			script := `
				set -e
				echo "host=$(hostname)"
				echo "pid=$$"
				grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status
				grep ' /sys ' /proc/mounts | grep -q '[ ,]ro[ ,]' && echo sys=ro
				test -d /dev/pts && test -d /dev/shm && echo dev=ok
				ip -o link | grep -c ': lo:' | sed 's/^/links=/'
				id -u
			`
			res, err := Run(ctx, t, Container{Runtime: bin, Rootfs: rootfs, Args: []string{"sh", "-c", script}})
			if err != nil || res.ExitCode != 0 {
				t.Fatalf("exit %d, err %v, stderr %q, log %q", res.ExitCode, err, res.Stderr, res.RuntimeLog)
			}
			for _, want := range []string{
				"host=ocitest\n", "pid=1\n",
				"CapEff:\t00000000a80425fb\n", // the 14 default capabilities
				"NoNewPrivs:\t0\n", "Seccomp:\t0\n", "sys=ro\n", "dev=ok\n",
				"links=1\n", // a new network namespace: loopback only
				"0\n",
			} {
				if !strings.Contains(res.Stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, res.Stdout)
				}
			}

			// Non-root user, no_new_privs, read-only root, a read-only bind
			// mount from the host, and a profile: all applied.
			host := t.TempDir()
			if err := os.WriteFile(filepath.Join(host, "f"), []byte("from host\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			res, err = Run(ctx, t, Container{
				Runtime:         bin,
				Rootfs:          rootfs,
				User:            specs.User{UID: 1000, GID: 1000},
				NoNewPrivileges: true,
				ReadonlyRootfs:  true,
				Seccomp:         []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`),
				Mounts:          []specs.Mount{{Destination: "/mnt", Type: "bind", Source: host, Options: []string{"rbind", "ro"}}},
				Env:             []string{"GREETING=hi"},
				Args: []string{"sh", "-c", `id -u; id -g; echo $GREETING; cat /mnt/f;
					grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status;
					touch /x 2>/dev/null || echo rootfs=ro; touch /mnt/g 2>/dev/null || echo mnt=ro`},
			})
			if err != nil || res.ExitCode != 0 {
				t.Fatalf("exit %d, err %v, stderr %q, log %q", res.ExitCode, err, res.Stderr, res.RuntimeLog)
			}
			want := "1000\n1000\nhi\nfrom host\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nrootfs=ro\nmnt=ro\n"
			if res.Stdout != want {
				t.Errorf("got output\n%s\nwant\n%s", res.Stdout, want)
			}
		})
	}
}

// TestCancel cancels Run once the workload runs (it made /tmp/running in
// the rootfs), not after a guessed delay: the kill must land on the
// running workload, which then ends by SIGKILL and leaves no process, and
// Run must return the cancellation.
func TestCancel(t *testing.T) {
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) {
			t.Parallel()
			bin := Require(t, rt)
			rootfs := BusyboxRootfs(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			running := make(chan struct{})
			go func() {
				for {
					if _, err := os.Stat(filepath.Join(rootfs, "tmp", "running")); err == nil {
						close(running)
						cancel()
						return
					}
					select {
					case <-ctx.Done():
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
			}()
			id, err := newID()
			if err != nil {
				t.Fatal(err)
			}
			res, err := Run(ctx, t, Container{Runtime: bin, ID: id, Rootfs: rootfs, Args: []string{"sh", "-c", "touch /tmp/running && exec sleep 60"},
				Env: []string{"OCITEST_CANCEL=" + id}})
			select {
			case <-running:
			default:
				t.Fatalf("Run returned (%v, %+v) before the workload ran", err, res)
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run returned %v with result %+v; want the cancellation", err, res)
			}
			if strings.Contains(err.Error(), "deleting") {
				t.Errorf("cleanup failed: %v", err)
			}
			// The workload was killed by SIGKILL: 128+9.
			if res.ExitCode != 137 {
				t.Errorf("exit code %d, want 137", res.ExitCode)
			}
			// And it is gone, not only the runtime that ran it.
			if procs := processesWith(id, 10*time.Second); len(procs) > 0 {
				t.Errorf("processes of container %s left behind:\n%s", id, strings.Join(procs, "\n"))
			}
		})
	}
}

func TestBadProfile(t *testing.T) {
	for _, profile := range []string{
		`{"defaultAction":"SCMP_ACT_ERRNO","archMap":[]}`,
		`{"syscalls":[]}`,
		`not json`,
	} {
		_, err := Run(context.Background(), t, Container{Runtime: "/bin/true", Rootfs: t.TempDir(), Args: []string{"true"}, Seccomp: []byte(profile)})
		if err == nil {
			t.Errorf("profile %s: no error", profile)
		}
	}
}

func TestBusyboxRootfs(t *testing.T) {
	if _, err := busyboxPath(); err != nil {
		testenv.Missing(t, fmt.Sprintf("%v (apt-get install busybox-static)", err))
	}
	root := BusyboxRootfs(t)
	for _, p := range []string{"bin/busybox", "bin/sh", "usr/bin/env", "etc/passwd", "proc", "dev", "sys"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
			t.Error(err)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("/tmp: %v, %v", fi.Mode(), err)
	}
}

// TestCancelEarly cancels at various points of the container's start-up and
// checks that nothing is left behind: no cgroup and no process. Every
// process of a run carries the run's container id: the runtime's in its
// command line (crun's children before their execve too), runc init's in
// its environment (_LIBCONTAINER_STATEDIR), the workload's in the
// environment the test gives it.
func TestCancelEarly(t *testing.T) {
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) {
			t.Parallel()
			bin := Require(t, rt)
			rootfs := BusyboxRootfs(t)
			for _, d := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond} {
				id, err := newID()
				if err != nil {
					t.Fatal(err)
				}
				id = strings.Replace(id, "ocitest-", "ocitest-cancel-", 1)
				ctx, cancel := context.WithTimeout(context.Background(), d)
				res, err := Run(ctx, t, Container{Runtime: bin, ID: id, Rootfs: rootfs, Args: []string{"sleep", "60"},
					Env: []string{"OCITEST_CANCEL_EARLY=" + id}})
				cancel()
				if err == nil {
					t.Fatalf("after %v: no error, result %+v", d, res)
				}
				if strings.Contains(err.Error(), "deleting") {
					t.Fatalf("after %v: %v", d, err)
				}
				left, _ := filepath.Glob("/sys/fs/cgroup/*/" + id)
				more, _ := filepath.Glob("/sys/fs/cgroup/" + id)
				if left = append(left, more...); len(left) > 0 {
					t.Fatalf("after %v: cgroups left behind: %v", d, left)
				}
				if procs := processesWith(id, 10*time.Second); len(procs) > 0 {
					t.Fatalf("after %v: processes of container %s left behind:\n%s", d, id, strings.Join(procs, "\n"))
				}
			}
		})
	}
}

// processesWith returns the processes whose command line or environment
// contains marker, waiting up to timeout for them to go (a killed process
// may take a moment to be reaped); each as "pid: command line".
func processesWith(marker string, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		var found []string
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			cmdline, err1 := os.ReadFile(filepath.Join(d, "cmdline"))
			environ, err2 := os.ReadFile(filepath.Join(d, "environ"))
			if err1 != nil && err2 != nil {
				continue // gone
			}
			if strings.Contains(string(cmdline), marker) || strings.Contains(string(environ), marker) {
				found = append(found, filepath.Base(d)+": "+strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " "))
			}
		}
		if len(found) == 0 || time.Now().After(deadline) {
			return found
		}
		time.Sleep(50 * time.Millisecond)
	}
}
