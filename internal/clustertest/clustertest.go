// Package clustertest starts the real two-node cluster of hack/cluster.sh
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and two
// kubelets v1.37.2 built by `hack/testbin.sh cluster`, each with its own
// Debian containerd; runc and CNI plugins) in a state directory of its own
// for a test, and stops it (every process, mount, the bridges and the
// iptables rules) when the test ends.
//
// One cluster at a time fits on a machine (the bridges, the ports and the
// kubelets' cgroups are fixed), so Start refuses to run beside one that is
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

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubearmor/kscmp/internal/apitest"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// Names and addresses hack/cluster.sh gives the nodes; keep them in step
// with it.
const (
	// NodeName is the first node's name.
	NodeName = "kscmp-node"
	// NodeIP is the first node's address: its pod bridge's (kscmp0), where
	// the API server and its kubelet listen.
	NodeIP = "10.244.0.1"
	// PodCIDR is the first node's pod network.
	PodCIDR = "10.244.0.0/24"
	// Node2Name is the second node's name: its containerd and kubelet run
	// in a mount namespace of their own, with their own cgroup root.
	Node2Name = "kscmp-node2"
	// Node2IP is the second node's address: its pod bridge's (kscmp1),
	// where its kubelet listens.
	Node2IP = "10.244.1.1"
	// Node2PodCIDR is the second node's pod network.
	Node2PodCIDR = "10.244.1.0/24"
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
	for _, f := range []string{"containerd", "ctr", "runc", "openssl", "iptables", "nsenter", "unshare", "/usr/lib/cni/bridge", "/bin/busybox"} {
		if _, err := exec.LookPath(f); err != nil {
			missing = append(missing, f+": run hack/deps.sh test")
		}
	}
	testenv.Missing(t, missing...)
	for _, bridge := range []string{"kscmp0", "kscmp1"} {
		if iface, err := net.InterfaceByName(bridge); err == nil && iface != nil {
			t.Fatalf("a kscmp cluster already runs on this machine (bridge %s): hack/cluster.sh down (make cluster-down) first", bridge)
		}
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

// KubeletSeccompDir is the first node's (NodeName's) kubelet seccomp
// directory, as the host sees it.
func (c *Cluster) KubeletSeccompDir() string { return c.KubeletSeccompDirOn(NodeName) }

// KubeletSeccompDirOn is the kubelet seccomp directory of node, as the host
// sees it. Inside node2's mount namespace (its kubelet, containerd and
// pods, the agent's hostPath) it is the first node's path, bind-mounted.
func (c *Cluster) KubeletSeccompDirOn(node string) string {
	if node == Node2Name {
		return filepath.Join(c.Dir, "node2", "kubelet", "seccomp")
	}
	return filepath.Join(c.Dir, "kubelet", "seccomp")
}

// Nodes are the cluster's node names, the first node first.
func Nodes() []string { return []string{NodeName, Node2Name} }

// NodePodCIDR is node's pod network ("" for a node not of this cluster).
func NodePodCIDR(node string) string {
	return map[string]string{NodeName: PodCIDR, Node2Name: Node2PodCIDR}[node]
}

// PinToNode makes spec run on node only, through the scheduler (a
// nodeSelector on kubernetes.io/hostname, which each kubelet sets to its
// --hostname-override), so tests can say where a pod runs.
func PinToNode(spec *corev1.PodSpec, node string) {
	if spec.NodeSelector == nil {
		spec.NodeSelector = map[string]string{}
	}
	spec.NodeSelector[corev1.LabelHostname] = node
}
