package image

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// TestArm64UnderQemu runs the arm64 binary of the image (taken from its
// layer) under qemu-user and the amd64 one natively: validate and merge
// over the repository's examples give byte-identical output. The last
// merge names no architecture in its policy, so --arch-family arm64 makes
// an aarch64 profile: the arm64 system call table is exercised too.
func TestArm64UnderQemu(t *testing.T) {
	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		testenv.Missing(t, "qemu-aarch64-static (Debian qemu-user-static; make deps)")
	}
	_, data := built(t)
	v := readLayout(t, data)
	dir := t.TempDir()
	bins := map[string]string{}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		bins[p] = filepath.Join(dir, filepath.Base(p), "kscmp")
		if err := os.MkdirAll(filepath.Dir(bins[p]), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bins[p], v.platforms[p].files["usr/local/bin/kscmp"].data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	checkMachine(t, bins["linux/amd64"], elf.EM_X86_64)
	checkMachine(t, bins["linux/arm64"], elf.EM_AARCH64)

	root := testenv.ModuleRoot(t)
	for _, args := range [][]string{
		{"validate", "examples/"},
		{"merge", "-f", "examples/", "--namespace", "wordpress-mysql", "--labels", "app=wordpress", "--arch-family", "arm64"},
		{"merge", "-f", "examples/", "--namespace", "demo", "--labels", "app=busybox-demo", "--arch-family", "arm64"},
	} {
		amd := runIn(t, root, bins["linux/amd64"], args...)
		arm := runIn(t, root, qemu, append([]string{bins["linux/arm64"]}, args...)...)
		if amd.err != nil || len(amd.stdout) == 0 {
			t.Errorf("amd64 %q: %v, %d bytes out\n%s", args, amd.err, len(amd.stdout), amd.stderr)
		}
		if !bytes.Equal(amd.stdout, arm.stdout) || !bytes.Equal(amd.stderr, arm.stderr) || (amd.err == nil) != (arm.err == nil) {
			t.Errorf("%q: arm64 under qemu differs from amd64:\namd64 (%v):\n%s%s\narm64 (%v):\n%s%s", args,
				amd.err, amd.stdout, amd.stderr, arm.err, arm.stdout, arm.stderr)
		}
	}
	if out := runIn(t, root, qemu, bins["linux/arm64"], "merge", "-f", "examples/", "--namespace", "demo",
		"--labels", "app=busybox-demo", "--arch-family", "arm64"); !bytes.Contains(out.stdout, []byte("SCMP_ARCH_AARCH64")) {
		t.Errorf("merge --arch-family arm64 made no aarch64 profile:\n%s", out.stdout)
	}
}

type runResult struct {
	stdout, stderr []byte
	err            error
}

// runIn runs name with args in dir, bounded in time.
func runIn(t *testing.T, dir, name string, args ...string) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &stdout, &stderr
	err := cmd.Run()
	return runResult{stdout.Bytes(), stderr.Bytes(), err}
}

// checkMachine wants the ELF file at path built for machine m.
func checkMachine(t *testing.T, path string, m elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != m {
		t.Errorf("%s: ELF machine %v, want %v", path, f.Machine, m)
	}
}
