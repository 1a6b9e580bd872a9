package clustertest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestCluster brings the real node up (opt-in: KSCMP_CLUSTER_TEST=1, about
// a minute warm) and checks, on it, what issue #14 asks of the cluster and
// of kscmp's enforce mode, and issue #16's complain mode and violations.
func TestCluster(t *testing.T) {
	if os.Getenv("KSCMP_CLUSTER_TEST") != "1" {
		t.Skip("opt-in: KSCMP_CLUSTER_TEST=1 (make test-cluster) starts a real kubelet + containerd node as root")
	}
	c := Start(t)
	t.Run("BusyboxPod", func(t *testing.T) { testBusyboxPod(t, c) })
	t.Run("Nodes", func(t *testing.T) { testNodes(t, c) })
	t.Run("Enforce", func(t *testing.T) { testEnforce(t, c) })
	t.Run("Complain", func(t *testing.T) { testComplain(t, c) })
	t.Run("Faults", func(t *testing.T) { testFaults(t, c) })
	t.Run("Loop", func(t *testing.T) { testLoop(t, c) })
	t.Run("DiscoverCluster", func(t *testing.T) { testDiscoverCluster(t, c) })
}

// testBusyboxPod: a pod of the imported busybox image, on the first node,
// goes from Pending to Succeeded, in a network namespace of its own with an
// address of that node's pod network.
func testBusyboxPod(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "busybox", Namespace: "default"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "bb", Image: BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "readlink /proc/self/ns/net"},
			}},
		},
	}
	PinToNode(&pod.Spec, NodeName)
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := waitPod(ctx, t, c, "default", "busybox", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	if got.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("pod busybox: phase %s, want Succeeded: %+v", got.Status.Phase, got.Status.ContainerStatuses)
	}
	_, podNet, _ := net.ParseCIDR(PodCIDR)
	if ip := net.ParseIP(got.Status.PodIP); ip == nil || !podNet.Contains(ip) {
		t.Errorf("pod busybox: IP %q, want one of the pod network %s", got.Status.PodIP, podNet)
	}
	logs, err := c.Client.CoreV1().Pods("default").GetLogs("busybox", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hostNet, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if podNetNS := strings.TrimSpace(string(logs)); !strings.HasPrefix(podNetNS, "net:[") || podNetNS == hostNet {
		t.Errorf("pod busybox: network namespace %q, want its own (the host's is %s)", podNetNS, hostNet)
	}
}

// testNodes: both nodes are Ready with their own addresses; a pod pinned to
// each runs there, with an address of that node's pod network, in that
// kubelet's cgroups (node2's under its own cgroup root), and `kubectl logs`
// (the API server through that node's kubelet) reads it; node2's kubelet
// runs in a mount namespace other than the host's.
func testNodes(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, node := range Nodes() {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("node %s: %v", node, err)
		}
		if !nodeReady(n) {
			t.Errorf("node %s: not Ready: %+v", node, n.Status.Conditions)
		}
		want := map[string]string{NodeName: NodeIP, Node2Name: Node2IP}[node]
		if got := internalIP(n); got != want {
			t.Errorf("node %s: InternalIP %q, want %s", node, got, want)
		}
	}
	for _, node := range Nodes() {
		t.Run(node, func(t *testing.T) { testPinnedPod(ctx, t, c, node) })
	}
	kubelet2, err := os.ReadFile(filepath.Join(c.Dir, "run", "node2-kubelet.pid"))
	if err != nil {
		t.Fatal(err)
	}
	ns2, err := os.Readlink("/proc/" + strings.TrimSpace(string(kubelet2)) + "/ns/mnt")
	if err != nil {
		t.Fatalf("node2's kubelet: %v", err)
	}
	if host, _ := os.Readlink("/proc/self/ns/mnt"); ns2 == host {
		t.Errorf("node2's kubelet runs in the host's mount namespace %s, want its own", host)
	}
}

// testPinnedPod runs a pod pinned to node and checks where it runs.
func testPinnedPod(ctx context.Context, t *testing.T, c *Cluster, node string) {
	name := "pinned-" + node
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "bb", Image: BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "echo on " + node + "; exec sleep 100000"},
			}},
		},
	}
	PinToNode(&pod.Spec, node)
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer c.Client.CoreV1().Pods("default").Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	got := waitPod(ctx, t, c, "default", name, func(p *corev1.Pod) bool { return p.Status.Phase != corev1.PodPending })
	if got.Status.Phase != corev1.PodRunning || got.Spec.NodeName != node {
		t.Fatalf("pod %s: phase %s on node %q, want Running on %s", name, got.Status.Phase, got.Spec.NodeName, node)
	}
	_, podNet, _ := net.ParseCIDR(NodePodCIDR(node))
	if ip := net.ParseIP(got.Status.PodIP); ip == nil || !podNet.Contains(ip) {
		t.Errorf("pod %s: IP %q, want one of %s's pod network %s", name, got.Status.PodIP, node, podNet)
	}
	var logs []byte
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		logs, _ = c.KubectlOutput(30*time.Second, "-n", "default", "logs", name)
		return strings.Contains(string(logs), "on "+node), nil
	})
	if err != nil {
		t.Errorf("kubectl logs %s (on %s): %q, want %q: %v", name, node, logs, "on "+node, err)
	}
	pid, _ := nodeProcess(t, string(got.UID), "sleep 100000")
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	own := map[string]string{NodeName: ":/kubepods/", Node2Name: ":/kscmp-node2/kubepods/"}[node]
	if !strings.Contains(string(cg), own) {
		t.Errorf("pod %s: process %d in cgroups\n%s\nwant %s's, under %s", name, pid, cg, node, own)
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

func internalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// waitPod polls the pod until done says so, and returns it.
func waitPod(ctx context.Context, t *testing.T, c *Cluster, ns, name string, done func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return done(p), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s: %v; last seen: %+v", ns, name, err, last)
	}
	return last
}

// nodeProcess finds the process on the node whose command line starts with
// cmdline and whose cgroup is the pod's, and returns its /proc/PID/status.
func nodeProcess(t *testing.T, podUID, cmdline string) (int, string) {
	t.Helper()
	// The cgroupfs driver names the pod's cgroup pod<UID>; the systemd
	// driver writes the UID's dashes as underscores.
	uids := []string{"pod" + podUID, "pod" + strings.ReplaceAll(podUID, "-", "_")}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cmd, err := os.ReadFile(p + "/cmdline")
		if err != nil || !strings.HasPrefix(strings.ReplaceAll(string(cmd), "\x00", " "), cmdline) {
			continue
		}
		cg, err := os.ReadFile(p + "/cgroup")
		if err != nil {
			continue
		}
		if !strings.Contains(string(cg), uids[0]) && !strings.Contains(string(cg), uids[1]) {
			continue
		}
		status, err := os.ReadFile(p + "/status")
		if err != nil {
			continue
		}
		var pid int
		fmt.Sscanf(filepath.Base(p), "%d", &pid)
		return pid, string(status)
	}
	t.Fatalf("no process %q in pod %s on the node", cmdline, podUID)
	return 0, ""
}

// seccompMode is the Seccomp: line's value of a /proc/PID/status.
func seccompMode(status string) string {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, "Seccomp:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
