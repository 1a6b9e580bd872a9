package clustertest

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// workload: an opted-in namespace, a policy that allows what busybox's sh,
// echo, ls and sleep do (runc's start-up set is added by the merger) and
// blocks mkdir, and a Deployment it selects; and the same policy and
// Deployment in a namespace that did not opt in.
const workload = `apiVersion: v1
kind: Namespace
metadata:
  name: {{NS}}
  labels: {{LABELS}}
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorSeccompPolicy
metadata: {name: busybox-demo, namespace: {{NS}}}
spec:
  selector:
    matchLabels: {app: busybox-demo}
  seccomp:
    rules:
      - action: Allow
        syscalls: [arch_prctl, brk, chdir, clock_nanosleep, clone, close, dup, dup2, dup3, execve, exit,
          exit_group, fcntl, fork, fstat, getcwd, getdents64, getegid, geteuid, getgid, getpid, getppid,
          getrandom, getuid, ioctl, {{KILL}}lseek, lstat, madvise, mmap, mprotect, munmap, nanosleep,
          newfstatat, openat, pipe, pipe2, poll, prctl, prlimit64, read, readlink, rseq, rt_sigaction,
          rt_sigprocmask, rt_sigreturn, sendfile, set_robust_list, set_tid_address, setpgid, stat, statx,
          uname, vfork, wait4, write]
      - action: Block
        syscalls: [mkdir, mkdirat]
`

// deployment is pinned to the first node: the tests read its kubelet's
// seccomp directory and restart its kubelet and containerd.
const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: busybox-demo, namespace: {{NS}}}
spec:
  replicas: 1
  selector: {matchLabels: {app: busybox-demo}}
  template:
    metadata: {labels: {app: busybox-demo}}
    spec:
      terminationGracePeriodSeconds: 1
      nodeSelector: ` + "{" + corev1.LabelHostname + ": " + NodeName + "}" + `
      containers:
      - name: bb
        image: localhost/busybox:latest
        imagePullPolicy: Never
        command: [sh, -c, "exec sleep 100000"]
`

// profileName is the Localhost profile the webhook binds demo's pods to.
const profileName = "kubearmor/demo/busybox-demo.json"

// testEnforce: kubectl apply -k deploy/manifests; the agent runs under its
// own profile, a policy becomes a profile file in the kubelet's directory,
// the webhook binds an opted-in Deployment's pods to it and the kubelet,
// containerd and runc start them under it: an allowed command works, mkdir
// fails with EPERM inside the pod; a namespace that did not opt in is
// untouched.
func testEnforce(t *testing.T, c *Cluster) {
	dir := filepath.Join(c.Dir, "test")
	// hack/cluster.sh up wrote deploy/manifests as this node needs it (the
	// agent's hostPath in the state directory, --restart-workloads): what
	// the README has a person apply.
	c.MustKubectl(t, time.Minute, "apply", "-k", filepath.Join(c.Dir, "manifests"))
	c.MustKubectl(t, 2*time.Minute, "-n", "kscmp-system", "rollout", "status", "daemonset/kscmp-agent", "--timeout", "2m")
	c.MustKubectl(t, 2*time.Minute, "-n", "kscmp-system", "rollout", "status", "deployment/kscmp-webhook", "--timeout", "2m")
	checkWebhookReplicas(t, c)
	checkAgent(t, c)

	for ns, labels := range map[string]string{"demo": `{kscmp.kubearmor.com/enforce: "true"}`, "plain": "{}"} {
		f := filepath.Join(dir, ns+".yaml")
		write(t, f, policyYAML(ns, labels, true))
		c.MustKubectl(t, time.Minute, "apply", "-f", f)
	}
	waitBound(t, c)
	for _, ns := range []string{"demo", "plain"} {
		f := filepath.Join(dir, ns+"-deployment.yaml")
		write(t, f, strings.ReplaceAll(deployment, "{{NS}}", ns))
		c.MustKubectl(t, time.Minute, "apply", "-f", f)
		c.MustKubectl(t, 2*time.Minute, "-n", ns, "rollout", "status", "deployment/busybox-demo", "--timeout", "2m")
	}
	if _, err := os.Stat(filepath.Join(c.KubeletSeccompDir(), profileName)); err != nil {
		t.Errorf("the policy's profile in the kubelet's directory: %v", err)
	}
	checkWorkload(t, c, "demo", true)
	checkWorkload(t, c, "plain", false)
	checkPolicyStatus(t, c)
	t.Run("Narrow", func(t *testing.T) { testNarrow(t, c, dir) })
}

// checkPolicyStatus: the webhook's aggregator summarised the agent's node
// status into the policy's: installed on 1 of 1 nodes, Installed=True, and
// kubectl get kscmp shows the columns docs/architecture.md describes.
func checkPolicyStatus(t *testing.T, c *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out []byte
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(context.Context) (bool, error) {
		var err error
		out, err = c.KubectlOutput(time.Minute, "-n", "demo", "get", "kscmp", "busybox-demo", "-o",
			`jsonpath={.status.nodes}/{.status.selectedNodes} {.status.conditions[?(@.type=="Installed")].status}`)
		return err == nil && string(out) == "1/1 True", nil
	})
	if err != nil {
		t.Errorf("policy demo/busybox-demo: status %q, want installed on 1 of 1 nodes (1/1 True): %v", out, err)
	}
	header := strings.Fields(strings.SplitN(string(c.MustKubectl(t, time.Minute, "-n", "demo", "get", "kscmp")), "\n", 2)[0])
	for _, col := range []string{"INSTALLED", "OF", "FAILED"} {
		if !slices.Contains(header, col) {
			t.Errorf("kubectl get kscmp: columns %v, want %s", header, col)
		}
	}
}

// policyYAML is workload for namespace ns, with kill allowed or not.
func policyYAML(ns, labels string, kill bool) string {
	return strings.NewReplacer("{{NS}}", ns, "{{LABELS}}", labels,
		"{{KILL}}", map[bool]string{true: "kill, ", false: ""}[kill]).Replace(workload)
}

// testNarrow: the policy loses kill → the agent (--restart-workloads) rolls
// the Deployment and the new pod's kill fails with EPERM; the policy
// deleted → its profile file stays while a pod runs under it and goes when
// the Deployment is deleted.
func testNarrow(t *testing.T, c *Cluster, dir string) {
	old := onePod(t, c, "demo", "app=busybox-demo")
	if out, err := c.KubectlOutput(time.Minute, "-n", "demo", "exec", old.Name, "--", "sh", "-c", "kill -0 1"); err != nil {
		t.Fatalf("kill -0 1 before the policy is narrowed: %v\n%s", err, out)
	}
	f := filepath.Join(dir, "demo-narrow.yaml")
	write(t, f, policyYAML("demo", `{kscmp.kubearmor.com/enforce: "true"}`, false))
	c.MustKubectl(t, time.Minute, "apply", "-f", f)
	pod := waitRolled(t, c, old)
	out, _ := c.KubectlOutput(time.Minute, "-n", "demo", "exec", pod.Name, "--", "sh", "-c", "kill -0 1")
	if !strings.Contains(string(out), "Operation not permitted") {
		t.Errorf("rolled pod %s: kill -0 1 under the narrowed profile: %q, want EPERM", pod.Name, out)
	}

	profile := filepath.Join(c.KubeletSeccompDir(), profileName)
	c.MustKubectl(t, time.Minute, "-n", "demo", "delete", "kubearmorseccomppolicy", "busybox-demo", "--wait")
	c.MustKubectl(t, time.Minute, "-n", "kscmp-system", "get", "pods") // a round trip: the agent had time to see it
	if _, err := os.Stat(profile); err != nil {
		t.Errorf("policy deleted, pod %s still runs under %s: %v (want the file kept)", pod.Name, profileName, err)
	}
	c.MustKubectl(t, 2*time.Minute, "-n", "demo", "delete", "deployment", "busybox-demo", "--wait")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		_, err := os.Stat(profile)
		return os.IsNotExist(err), nil
	})
	if err != nil {
		t.Errorf("policy and Deployment deleted: %s still there: %v", profile, err)
	}
}

// waitRolled waits until demo's Deployment runs one pod that is not old,
// and returns it.
func waitRolled(t *testing.T, c *Cluster, old *corev1.Pod) *corev1.Pod {
	t.Helper()
	return waitRolledIn(t, c, "demo", old)
}

// waitRolledIn is waitRolled for the busybox-demo Deployment of ns.
func waitRolledIn(t *testing.T, c *Cluster, ns string, old *corev1.Pod) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var last []corev1.Pod
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=busybox-demo"})
		if err != nil {
			return false, nil
		}
		last = pods.Items
		return len(pods.Items) == 1 && pods.Items[0].UID != old.UID && pods.Items[0].Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("%s's Deployment not rolled after its policy changed: %v; pods: %d", ns, err, len(last))
	}
	return &last[0]
}

// checkAgent: on each node, the init container installed the agent's
// profile and the agent process runs under a seccomp filter (Seccomp: 2).
func checkAgent(t *testing.T, c *Cluster) {
	t.Helper()
	for _, node := range Nodes() {
		checkAgentOn(t, c, node)
	}
}

// checkAgentOn is checkAgent for the agent pod on node: its profile in that
// node's own kubelet directory (the one hostPath names each node's own).
func checkAgentOn(t *testing.T, c *Cluster, node string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(c.KubeletSeccompDirOn(node), "kubearmor", "kscmp-system", "kscmp-agent.json")); err != nil {
		t.Errorf("node %s: the agent's own profile: %v", node, err)
	}
	pod := onePodOn(t, c, "kscmp-system", agentSelector, node)
	for _, s := range pod.Status.InitContainerStatuses {
		if s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 {
			t.Errorf("node %s: agent init container %s: %+v, want terminated with exit code 0", node, s.Name, s.State)
		}
	}
	pid, status := nodeProcess(t, string(pod.UID), "/usr/local/bin/kscmp agent --mode enforce")
	if m := seccompMode(status); m != "2" {
		t.Errorf("node %s: agent process %d: Seccomp: %q, want 2 (filter)", node, pid, m)
	}
}

// waitBound waits until the webhook binds a pod of demo to the policy (a
// server-side dry run: it calls the webhook, creates nothing), so that the
// Deployment is created after the webhook has seen the policy; and then
// until boundInARow dry runs in a row are bound. The API server calls a
// random ready endpoint of the Service (aggregator routing), so a replica
// whose certificate the CA bundle does not verify (failurePolicy Ignore:
// the pod is left unbound) breaks every run longer than a few calls.
func waitBound(t *testing.T, c *Cluster) {
	t.Helper()
	waitBoundIn(t, c, "demo", "busybox-demo", profileName)
}

// waitBoundIn is waitBound for the pods labelled app=APP of namespace ns
// and the Localhost profile they are to be bound to.
func waitBoundIn(t *testing.T, c *Cluster, ns, app, profile string) {
	t.Helper()
	const boundInARow = 20
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "dry-run", Namespace: ns, Labels: map[string]string{"app": app}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "bb", Image: BusyboxImage}}},
	}
	var last *corev1.Pod
	run, calls, unbound := 0, 0, 0
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, nil
		}
		last, calls = p, calls+1
		if localhostProfile(p) != profile {
			run, unbound = 0, unbound+1
			return false, nil
		}
		run++
		return run == boundInARow, nil
	})
	if err != nil {
		t.Fatalf("the webhook did not bind %d %s pods in a row to %s (%d dry runs, %d unbound): %v; last dry run: %+v",
			boundInARow, ns, profile, calls, unbound, err, last)
	}
	t.Logf("webhook: %d dry runs bound in a row after %d unbound", boundInARow, unbound)
}

// checkWebhookReplicas: the webhook runs the manifests' replicas, at least
// two, all ready, so that waitBound sees several replicas answer.
func checkWebhookReplicas(t *testing.T, c *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := c.Client.AppsV1().Deployments("kscmp-system").Get(ctx, "kscmp-webhook", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.ReadyReplicas < 2 || d.Spec.Replicas == nil || d.Status.ReadyReplicas != *d.Spec.Replicas {
		t.Errorf("webhook: %d ready replicas of %v, want all of at least 2", d.Status.ReadyReplicas, d.Spec.Replicas)
	}
	t.Logf("webhook: %d replicas ready", d.Status.ReadyReplicas)
}

// localhostProfile is the Localhost profile of the pod's first container
// (or of the pod), "" when it has none.
func localhostProfile(p *corev1.Pod) string {
	for _, sc := range []*corev1.SeccompProfile{containerProfile(p), podProfile(p)} {
		if sc != nil && sc.Type == corev1.SeccompProfileTypeLocalhost && sc.LocalhostProfile != nil {
			return *sc.LocalhostProfile
		}
	}
	return ""
}

func containerProfile(p *corev1.Pod) *corev1.SeccompProfile {
	if len(p.Spec.Containers) == 0 || p.Spec.Containers[0].SecurityContext == nil {
		return nil
	}
	return p.Spec.Containers[0].SecurityContext.SeccompProfile
}

func podProfile(p *corev1.Pod) *corev1.SeccompProfile {
	if p.Spec.SecurityContext == nil {
		return nil
	}
	return p.Spec.SecurityContext.SeccompProfile
}

// checkWorkload: in an opted-in namespace the pod is bound to the profile,
// its process runs under a filter, echo works and mkdir fails with EPERM;
// elsewhere the pod has no profile and mkdir works.
func checkWorkload(t *testing.T, c *Cluster, ns string, enforced bool) {
	t.Helper()
	pod := onePod(t, c, ns, "app=busybox-demo")
	want := map[bool]string{true: profileName, false: ""}[enforced]
	if got := localhostProfile(pod); got != want {
		t.Errorf("%s pod %s: Localhost profile %q, want %q", ns, pod.Name, got, want)
	}
	pid, status := nodeProcess(t, string(pod.UID), "sleep 100000")
	if m, want := seccompMode(status), map[bool]string{true: "2", false: "0"}[enforced]; m != want {
		t.Errorf("%s pod %s: process %d Seccomp: %q, want %s", ns, pod.Name, pid, m, want)
	}
	out, err := c.KubectlOutput(time.Minute, "-n", ns, "exec", pod.Name, "--", "sh", "-c", "echo allowed; ls /bin >/dev/null && echo listed")
	if err != nil || !strings.Contains(string(out), "allowed\nlisted") {
		t.Errorf("%s pod %s: echo and ls: %v\n%s", ns, pod.Name, err, out)
	}
	out, _ = c.KubectlOutput(time.Minute, "-n", ns, "exec", pod.Name, "--", "sh", "-c", "mkdir /tmp/made && echo made")
	switch {
	case enforced && !strings.Contains(string(out), "Operation not permitted"):
		t.Errorf("%s pod %s: mkdir under the profile: %q, want EPERM (Operation not permitted)", ns, pod.Name, out)
	case !enforced && !strings.Contains(string(out), "made"):
		t.Errorf("%s pod %s: mkdir without a profile: %q, want it made", ns, pod.Name, out)
	}
}

// onePod returns the running pod the selector picks in ns.
func onePod(t *testing.T, c *Cluster, ns, selector string) *corev1.Pod {
	t.Helper()
	return onePodOn(t, c, ns, selector, "")
}

// onePodOn returns the running pod the selector picks in ns on node (on
// any node when node is ""): a DaemonSet has one pod per node.
func onePodOn(t *testing.T, c *Cluster, ns, selector, node string) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fields := "status.phase=Running"
	if node != "" {
		fields += ",spec.nodeName=" + node
	}
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector, FieldSelector: fields})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 {
		t.Fatalf("%s pods %s running (%s): %d, want 1", ns, selector, fields, len(pods.Items))
	}
	return &pods.Items[0]
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
