package ocitest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// clone3Profile allows everything but clone3, which fails with errno (38,
// ENOSYS: what Docker's and systemd's filters return for it; 1, EPERM: what
// a default-deny profile returns).
func clone3Profile(errno int) []byte {
	return []byte(`{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],` +
		`"syscalls":[{"names":["clone3"],"action":"SCMP_ACT_ERRNO","errnoRet":` + strconv.Itoa(errno) + `}]}`)
}

// TestClone3Refused: clone3 passes its flags in memory seccomp cannot read,
// so a profile that conditions clone's namespace flags must refuse clone3
// whole, as Docker and systemd do, with ENOSYS: glibc (2.34+) then falls
// back to clone. Under such a profile, in runc and crun containers, programs
// of glibc, musl and Go (without and with cgo) fork, start threads and spawn
// a child; the raw clone3 gets ENOSYS. The control refuses clone3 with EPERM
// instead: glibc and Go with cgo then cannot start threads (they do use
// clone3, so the ENOSYS case proves the fallback), musl and Go without cgo
// never call it.
func TestClone3Refused(t *testing.T) {
	if goruntime.GOARCH != "amd64" {
		t.Skip("x86_64 profile and syscall number")
	}
	var missing []string
	for _, tool := range []string{"gcc", "musl-gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" in PATH (apt-get install gcc musl-tools)")
		}
	}
	testenv.Missing(t, missing...)
	progs := buildClone3Programs(t)
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) {
			bin := Require(t, rt)
			for _, p := range progs {
				rootfs := BusyboxRootfs(t)
				if err := copyFile(p.path, filepath.Join(rootfs, "bin/prog"), 0o755); err != nil {
					t.Fatal(err)
				}
				c := Container{Runtime: bin, Rootfs: rootfs, Args: []string{"/bin/prog"}, Seccomp: clone3Profile(38)}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				res, err := Run(ctx, t, c)
				if err != nil || res.ExitCode != 0 || !strings.HasSuffix(res.Stdout, "ok\n") {
					t.Errorf("%s, clone3 → ENOSYS: %v, exit %d, stdout %q, stderr %q", p.name, err, res.ExitCode, res.Stdout, res.Stderr)
				}
				if p.c && !strings.HasPrefix(res.Stdout, "clone3 errno=38\n") {
					t.Errorf("%s: the raw clone3 was not refused with ENOSYS: %q", p.name, res.Stdout)
				}
				c.Seccomp = clone3Profile(1)
				res, err = Run(ctx, t, c)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				works := res.ExitCode == 0 && strings.HasSuffix(res.Stdout, "ok\n")
				if works != !p.usesClone3 {
					t.Errorf("%s, clone3 → EPERM: works %v, want %v (does it still use clone3?): exit %d, stdout %q, stderr %.300q",
						p.name, works, !p.usesClone3, res.ExitCode, res.Stdout, res.Stderr)
				}
			}
		})
	}
}

type clone3Program struct {
	name, path string
	c          bool // the C program: prints the raw clone3's errno
	usesClone3 bool // makes threads with clone3 (the EPERM control fails)
}

// buildClone3Programs builds testdata/clone3.c with glibc and musl and
// testdata/clone3go without and with cgo, all static (the busybox rootfs
// has no C library).
func buildClone3Programs(t *testing.T) []clone3Program {
	dir := t.TempDir()
	goTool := goBinary(t)
	progs := []struct {
		clone3Program
		cmd []string
		env []string
	}{
		{clone3Program{"glibc", "glibc", true, true}, []string{"gcc", "-O2", "-static", "-pthread", "-Wall", "-Werror", "-o", "OUT", "testdata/clone3.c"}, nil},
		{clone3Program{"musl", "musl", true, false}, []string{"musl-gcc", "-O2", "-static", "-Wall", "-Werror", "-o", "OUT", "testdata/clone3.c"}, nil},
		{clone3Program{"go", "go", false, false}, []string{goTool, "build", "-o", "OUT", "./testdata/clone3go"}, []string{"CGO_ENABLED=0"}},
		{clone3Program{"go+cgo", "gocgo", false, true}, []string{goTool, "build", "-ldflags", "-linkmode external -extldflags -static", "-o", "OUT", "./testdata/clone3go"}, []string{"CGO_ENABLED=1"}},
	}
	out := make([]clone3Program, 0, len(progs))
	for _, p := range progs {
		p.path = filepath.Join(dir, p.path)
		for i, a := range p.cmd {
			if a == "OUT" {
				p.cmd[i] = p.path
			}
		}
		cmd := exec.Command(p.cmd[0], p.cmd[1:]...)
		cmd.Env = append(os.Environ(), p.env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %v\n%s", p.name, p.cmd, err, b)
		}
		out = append(out, p.clone3Program)
	}
	return out
}

// goBinary is the go command that runs this test (go test puts its own
// GOROOT's bin first in PATH), else the one on PATH.
func goBinary(t *testing.T) string {
	t.Helper()
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		testenv.Missing(t, "the go command (to build the clone3 probes)")
	}
	return p
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
