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
// of kscmp's enforce mode.
func TestCluster(t *testing.T) {
	if os.Getenv("KSCMP_CLUSTER_TEST") != "1" {
		t.Skip("opt-in: KSCMP_CLUSTER_TEST=1 (make test-cluster) starts a real kubelet + containerd node as root")
	}
	c := Start(t)
	t.Run("BusyboxPod", func(t *testing.T) { testBusyboxPod(t, c) })
	t.Run("Enforce", func(t *testing.T) { testEnforce(t, c) })
	t.Run("Faults", func(t *testing.T) { testFaults(t, c) })
	t.Run("Loop", func(t *testing.T) { testLoop(t, c) })
}

// testBusyboxPod: a pod of the imported busybox image goes from Pending to
// Succeeded, in a network namespace of its own with an address of the pod
// network.
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
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := waitPod(ctx, t, c, "default", "busybox", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	if got.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("pod busybox: phase %s, want Succeeded: %+v", got.Status.Phase, got.Status.ContainerStatuses)
	}
	_, podNet, _ := net.ParseCIDR("10.244.0.0/24")
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
