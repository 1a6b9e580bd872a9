package clustertest

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubearmor/kscmp/api/report"
)

// spreadNS is the namespace of the cluster discovery loop.
const spreadNS = "spread"

// spread is a Deployment with one replica on each node (a hard topology
// spread over kubernetes.io/hostname), under its own load: every second it
// lists a directory, writes and sleeps, as its smoke test does. It never
// makes a directory.
const spread = `apiVersion: v1
kind: Namespace
metadata: {name: spread}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: spread}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: bb
        image: localhost/busybox:latest
        imagePullPolicy: Never
        command: [sh, -c, "while true; do ls /bin >/dev/null && echo listed >/dev/null; sleep 1; done"]
`

// testDiscoverCluster: the loop of README "Discover on a cluster", from a
// workstation's point of view (a kubeconfig, no access to the nodes).
// kscmp discover --cluster records the Deployment's two replicas, one on
// each node, through short-lived recorder pods, and writes one report: one
// workload for the Deployment, the union of both replicas, naming both
// pods and both nodes; each node's recorder reported only its own node's
// replica (both nodes share this machine's kernel, so a recorder that
// looked past its node would report both). Nothing of the run stays. Then
// kscmp recommend writes one policy, the agent installs it on both nodes,
// the webhook binds the rolled pods, their smoke test works and mkdir, a
// call the workload never made, is refused.
func testDiscoverCluster(t *testing.T, c *Cluster) {
	dir := filepath.Join(c.Dir, "test", "discover-cluster")
	kscmp := filepath.Join(dir, "kscmp")
	c.run(t, 5*time.Minute, "go", "build", "-o", kscmp, "./cmd/kscmp")
	f := filepath.Join(dir, "spread.yaml")
	write(t, f, spread)
	c.MustKubectl(t, time.Minute, "apply", "-f", f)
	c.MustKubectl(t, 2*time.Minute, "-n", spreadNS, "rollout", "status", "deployment/web", "--timeout", "2m")
	pods := spreadPods(t, c, nil)

	rep := filepath.Join(dir, "report.json")
	out, err := discoverCluster(t, c, kscmp, "--duration", "40s", "-o", rep)
	if err != nil {
		t.Fatalf("kscmp discover --cluster: %v\n%s", err, out)
	}
	t.Logf("kscmp discover --cluster:\n%s", out)
	checkClusterReport(t, rep, pods)
	noRunLeft(t, c)

	profile := applyRecommended(t, c, kscmp, rep, dir, spreadNS, "web", Nodes())
	rolled := spreadPods(t, c, func(p *corev1.Pod) bool { return localhostProfile(p) == profile })
	for _, p := range rolled {
		out, err := c.KubectlOutput(time.Minute, "-n", spreadNS, "exec", p.Name, "--", "sh", "-c", smokeTest)
		if err != nil || !strings.Contains(string(out), smokeOutput) {
			t.Errorf("pod %s on %s under the recommended policy: smoke test: %v\n%s", p.Name, p.Spec.NodeName, err, out)
		}
		out, err = c.KubectlOutput(time.Minute, "-n", spreadNS, "exec", p.Name, "--", "mkdir", "/tmp/never-made")
		if err == nil || !strings.Contains(string(out), "Operation not permitted") {
			t.Errorf("pod %s on %s: mkdir, a call the workload never made: %v\n%s; want Operation not permitted", p.Name, p.Spec.NodeName, err, out)
		}
	}

	t.Run("CtrlC", func(t *testing.T) { testDiscoverClusterInterrupt(t, c, kscmp, dir) })
}

// testDiscoverClusterInterrupt: Ctrl-C (SIGINT) while the recorders record
// ends the run early and still collects every node; nothing stays.
func testDiscoverClusterInterrupt(t *testing.T, c *Cluster, kscmp, dir string) {
	rep := filepath.Join(dir, "interrupted.json")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kscmp, discoverClusterArgs(c, "--duration", "10m", "-o", rep)...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Both recorders recording: the progress line (one every 10 s off a
	// terminal) says so.
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		select {
		case err := <-done:
			t.Fatalf("kscmp discover --cluster ended before it was interrupted: %v\n%s", err, stderr.String())
		default:
		}
		return strings.Contains(stderr.String(), "2 recording"), nil
	})
	if err != nil {
		t.Fatalf("the recorders never recorded: %v\n%s", err, stderr.String())
	}
	time.Sleep(3 * time.Second) // a few of the workload's seconds
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("kscmp discover --cluster after Ctrl-C: %v\n%s", err, stderr.String())
	}
	r, err := report.ReadFile(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range r.Nodes {
		if !n.Complete() {
			t.Errorf("after Ctrl-C: node %s: %s %s, want collected", n.Name, n.State, n.Error)
		}
	}
	if len(r.Nodes) != 2 {
		t.Errorf("after Ctrl-C: %d nodes in the report, want 2", len(r.Nodes))
	}
	noRunLeft(t, c)
}

// discoverClusterArgs are the arguments of kscmp discover --cluster from a
// workstation: the admin's kubeconfig, this cluster's kubelet directory.
func discoverClusterArgs(c *Cluster, extra ...string) []string {
	return append([]string{"discover", "--cluster", "--kubeconfig", c.Kubeconfig, "-n", spreadNS,
		"--kubelet-root", filepath.Join(c.Dir, "kubelet")}, extra...)
}

func discoverCluster(t *testing.T, c *Cluster, kscmp string, extra ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	return exec.CommandContext(ctx, kscmp, discoverClusterArgs(c, extra...)...).CombinedOutput()
}

// spreadPods waits for the Deployment's two pods, running and ready, one on
// each node, that pass ok (nil: any), and returns them.
func spreadPods(t *testing.T, c *Cluster, ok func(*corev1.Pod) bool) []corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var last []corev1.Pod
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Client.CoreV1().Pods(spreadNS).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, nil
		}
		last = pods.Items
		var nodes []string
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.DeletionTimestamp != nil || !podStarted(p, time.Time{}, false) || (ok != nil && !ok(p)) {
				return false, nil
			}
			nodes = append(nodes, p.Spec.NodeName)
		}
		slices.Sort(nodes)
		return slices.Equal(nodes, []string{NodeName, Node2Name}), nil
	})
	if err != nil {
		t.Fatalf("%s: no replica on each node: %v; pods: %v", spreadNS, err, statuses(last))
	}
	return last
}

// checkClusterReport: one workload for the Deployment's container, the
// union of both replicas, naming both pods and both nodes; both nodes
// collected, complete, each with exactly one workload (its own replica's
// container: the recorder on a node reports only that node's pods).
func checkClusterReport(t *testing.T, path string, pods []corev1.Pod) {
	t.Helper()
	r, err := report.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	if len(r.Nodes) != 2 {
		t.Errorf("report: nodes %+v, want both", r.Nodes)
	}
	for _, n := range r.Nodes {
		if !n.Complete() || n.Workloads != 1 {
			t.Errorf("report: node %s: state %s, %d workloads, lost %+v, error %q; want collected, 1 workload (its own replica), nothing lost", n.Name, n.State, n.Workloads, n.Lost, n.Error)
		}
	}
	if len(r.Workloads) != 1 {
		t.Fatalf("report: %d workloads, want 1 (the Deployment's container): %+v", len(r.Workloads), r.Workloads)
	}
	w := r.Workloads[0]
	id := w.Identity
	if id.Kind != report.KindPod || id.Namespace != spreadNS || id.Container != "bb" || id.Owner == nil || *id.Owner != (report.Owner{Kind: "Deployment", Name: "web"}) {
		t.Errorf("report: workload identity %+v, want the container bb of Deployment %s/web", id, spreadNS)
	}
	if !slices.Equal(w.Pods, names) || !slices.Equal(w.Nodes, []string{NodeName, Node2Name}) {
		t.Errorf("report: workload from pods %v on nodes %v, want pods %v on both nodes", w.Pods, w.Nodes, names)
	}
	for _, want := range []string{"getdents64", "write", "clock_nanosleep"} {
		if !hasCall(w.Syscalls, want) {
			t.Errorf("report: no %s among %v", want, w.Syscalls)
		}
	}
	if hasCall(w.Syscalls, "mkdir") || hasCall(w.Syscalls, "mkdirat") {
		t.Errorf("report: mkdir recorded, but the workload never makes a directory: %v", w.Syscalls)
	}
}

// noRunLeft: no recorder Job or pod of any run is left in kscmp-system
// (pods go with their Job, by the garbage collector: waited for).
func noRunLeft(t *testing.T, c *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var left []string
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		left = nil
		jobs, err := c.Client.BatchV1().Jobs("kscmp-system").List(ctx, metav1.ListOptions{LabelSelector: "kscmp.io/run"})
		if err != nil {
			return false, nil
		}
		for _, j := range jobs.Items {
			left = append(left, "job "+j.Name)
		}
		pods, err := c.Client.CoreV1().Pods("kscmp-system").List(ctx, metav1.ListOptions{LabelSelector: "kscmp.io/run"})
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			left = append(left, "pod "+p.Name)
		}
		return len(left) == 0, nil
	})
	if err != nil {
		t.Errorf("after the run: %v left", left)
	}
}
