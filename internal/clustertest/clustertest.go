// Package clustertest starts the real single-node cluster of hack/cluster.sh
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the
// kubelet v1.37.2 built by `hack/testbin.sh cluster`; Debian's containerd,
// runc and CNI plugins) in a state directory of its own for a test, and stops
// it (every process, mount, the bridge and the iptables rules) when the test
// ends.
//
// One cluster at a time fits on a machine (the bridge, the ports and the
// kubelet's cgroups are fixed), so Start refuses to run beside one that is
// already up (make cluster-down stops it).
package clustertest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubearmor/kscmp/internal/apitest"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// Addresses hack/cluster.sh gives the node; keep them in step with it.
const (
	// NodeName is the node's name.
	NodeName = "kscmp-node"
	// NodeIP is the node's address: the pod bridge's, where the API server
	// and the kubelet listen.
	NodeIP = "10.244.0.1"
	// BusyboxImage is the busybox-static image imported into the node.
	BusyboxImage = "localhost/busybox:latest"
)

// Cluster is a running cluster.
type Cluster struct {
	// Dir is the state directory (KSCMP_CLUSTER_DIR).
	Dir string
	// Kubeconfig is the admin kubeconfig's path.
	Kubeconfig string
	// Kubectl is the kubectl binary built with the cluster's binaries.
	Kubectl string
	// Client talks to the API server as the admin.
	Client kubernetes.Interface
	// ModuleRoot is kscmp's checkout.
	ModuleRoot string
}

// Start brings a cluster up in a new state directory, after `make image`
// (so the node runs this checkout's kscmp), and takes it down at the end of
// the test. It needs root, the binaries of `hack/testbin.sh cluster` and the
// Debian packages of hack/deps.sh test; when one is missing it skips the
// test, or fails it with CI=true (testenv.Missing).
func Start(t *testing.T) *Cluster {
	t.Helper()
	root := testenv.ModuleRoot(t)
	prerequisites(t)
	bin := apitest.BinDir()
	c := &Cluster{ModuleRoot: root, Kubectl: filepath.Join(bin, "kubectl")}
	// Short: containerd's socket paths under it must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "kscmp-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	c.Dir = dir
	c.run(t, 5*time.Minute, "make", "-s", "image")
	t.Cleanup(func() {
		if out, err := c.script(3*time.Minute, "down"); err != nil {
			t.Errorf("hack/cluster.sh down: %v\n%s", err, out)
			return // keep the directory: it may still hold mounts
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove the cluster's state: %v", err)
		}
	})
	out, err := c.script(5*time.Minute, "up")
	if err != nil {
		t.Fatalf("hack/cluster.sh up: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	c.Kubeconfig = lines[len(lines)-1]
	if c.Kubeconfig != filepath.Join(dir, "admin.kubeconfig") {
		t.Fatalf("hack/cluster.sh up: last line %q, want the admin kubeconfig in %s", c.Kubeconfig, dir)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if c.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return c
}

// prerequisites skips (or in CI fails) the test when the cluster cannot
// start here, and fails it when a cluster already runs on the machine.
func prerequisites(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (the kubelet, containerd and the pod network)")
	}
	for _, b := range []string{"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl"} {
		if _, err := os.Stat(filepath.Join(apitest.BinDir(), b)); err != nil {
			missing = append(missing, b+": run `hack/testbin.sh cluster` (make cluster builds it too)")
		}
	}
	for _, f := range []string{"containerd", "ctr", "runc", "openssl", "iptables", "/usr/lib/cni/bridge", "/bin/busybox"} {
		if _, err := exec.LookPath(f); err != nil {
			missing = append(missing, f+": run hack/deps.sh test")
		}
	}
	testenv.Missing(t, missing...)
	if ifaces, err := net.InterfaceByName("kscmp0"); err == nil && ifaces != nil {
		t.Fatal("a kscmp cluster already runs on this machine (bridge kscmp0): hack/cluster.sh down (make cluster-down) first")
	}
}

// script runs hack/cluster.sh ARGS on this cluster's state directory and
// returns its stdout (stderr goes to the test's log on failure).
func (c *Cluster) script(timeout time.Duration, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.ModuleRoot, "hack", "cluster.sh"), args...)
	cmd.Dir = c.ModuleRoot
	cmd.Env = append(os.Environ(), "KSCMP_CLUSTER_DIR="+c.Dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), err
	}
	return stdout.Bytes(), nil
}

// run runs a command in the module root and fails the test when it fails.
func (c *Cluster) run(t *testing.T, timeout time.Duration, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = c.ModuleRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// KubectlOutput runs kubectl as the admin, bounded by timeout, and returns its
// combined output and error.
func (c *Cluster) KubectlOutput(timeout time.Duration, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Dir = c.ModuleRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

// MustKubectl is KubectlOutput that fails the test on an error.
func (c *Cluster) MustKubectl(t *testing.T, timeout time.Duration, args ...string) []byte {
	t.Helper()
	out, err := c.KubectlOutput(timeout, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// KubeletSeccompDir is the kubelet's seccomp directory on the node.
func (c *Cluster) KubeletSeccompDir() string { return filepath.Join(c.Dir, "kubelet", "seccomp") }
