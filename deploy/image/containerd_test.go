package image

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// containerdConfig is all the test's containerd needs: its own root, state
// and socket, no CRI (no kubelet here), no debug or metrics listener.
const containerdConfig = `version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
`

// TestContainerdImport imports the tarball into a real containerd (the
// Debian package's, started here with its own directories) the way a
// node gets it, `ctr -n k8s.io images import --all-platforms`, sees both
// names with both platforms in `ctr images ls`, and runs the image under
// runc: with no arguments its entrypoint starts kscmp, and `kscmp version`
// prints the version it was built with.
func TestContainerdImport(t *testing.T) {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (containerd and runc)")
	}
	for _, b := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b+" (Debian containerd, runc; make deps)")
		}
	}
	testenv.Missing(t, missing...)
	res, _ := built(t)
	tarPath := filepath.Join(shared.dir, "kscmp-image.tar")

	sock := startContainerd(t)
	ctr := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", sock, "-n", "k8s.io"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := ctr("images", "import", "--all-platforms", tarPath); err != nil {
		t.Fatalf("ctr images import: %v\n%s", err, out)
	}
	out, err := ctr("images", "ls")
	if err != nil {
		t.Fatalf("ctr images ls: %v\n%s", err, out)
	}
	for _, name := range res.Names {
		line := lineOf(out, name+" ")
		if !strings.Contains(line, res.Index.String()) || !strings.Contains(line, "linux/amd64,linux/arm64") {
			t.Errorf("ctr images ls: %s not listed with %s and both platforms:\n%s", name, res.Index, out)
		}
	}

	id := "kscmp-image-test-" + strconv.Itoa(os.Getpid())
	if out, err := ctr("run", "--rm", res.Names[0], id+"-entrypoint"); err != nil || !strings.Contains(out, "KubeArmorSeccompPolicy") {
		t.Errorf("ctr run (entrypoint, no arguments): %v\n%s", err, out)
	}
	if out, err := ctr("run", "--rm", res.Names[0], id+"-version", Entrypoint, "version"); err != nil || out != "kscmp "+testVersion+"\n" {
		t.Errorf("ctr run %s version: %v: %q", Entrypoint, err, out)
	}
}

// lineOf returns the first line of out that starts with prefix.
func lineOf(out, prefix string) string {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			return sc.Text()
		}
	}
	return ""
}

// startContainerd starts containerd with its own directories under a
// temporary directory and returns its socket once it answers. Cleanup
// stops it, then every shim it left (found by its socket in their command
// line), then unmounts whatever is still mounted under the directory.
func startContainerd(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kscmp-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "containerd.sock")
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, containerdConfig, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command("containerd", "--config", cfg)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		killShims(t, sock)
		unmountUnder(t, dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if t.Failed() {
			t.Logf("containerd's log:\n%s", logs.Bytes())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := exec.CommandContext(ctx, "ctr", "--address", sock, "version").Run()
		cancel()
		if err == nil {
			return sock
		}
		select {
		case <-done:
			t.Fatalf("containerd exited: %v\n%s", cmd.ProcessState, logs.Bytes())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s within 30s: %v\n%s", sock, err, logs.Bytes())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// killShims kills the shims that serve the containerd at sock: they
// outlive it by design.
func killShims(t *testing.T, sock string) {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && slices.Contains(args, sock) {
			t.Logf("cleanup: killing shim %d", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountUnder unmounts every mount point under dir, deepest first.
func unmountUnder(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			t.Errorf("cleanup: unmount %s: %v", p, err)
		}
	}
}
