package clustertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubearmor/kscmp/api/report"
)

// loopNS is the namespace of the discovery loop: not opted in at first.
const loopNS = "loop"

// smokeTest is the workload's own test (ls, echo, sleep): the load while
// discover records, and what must still work under the recommended policy.
const (
	smokeTest   = "ls /bin >/dev/null && echo listed; sleep 0.1 && echo slept"
	smokeOutput = "listed\nslept"
)

// testLoop: the whole loop on the real node. A Deployment runs in a
// namespace without a profile; the built kscmp discover records it on the
// node while the pod works, and its report names the pod (namespace, pod,
// container, labels, owner Deployment) from the kubelet's and containerd's
// real cgroup layout; kscmp recommend writes the Deployment's policy;
// applied, with the namespace opted in and the Deployment restarted, the
// new pod runs under it (Seccomp: 2) and its workload (ls, echo, sleep)
// still works.
func testLoop(t *testing.T, c *Cluster) {
	dir := filepath.Join(c.Dir, "test", "loop")
	kscmp := filepath.Join(dir, "kscmp")
	c.run(t, 5*time.Minute, "go", "build", "-o", kscmp, "./cmd/kscmp")
	f := filepath.Join(dir, "deployment.yaml")
	write(t, f, "apiVersion: v1\nkind: Namespace\nmetadata: {name: "+loopNS+"}\n---\n"+strings.ReplaceAll(deployment, "{{NS}}", loopNS))
	c.MustKubectl(t, time.Minute, "apply", "-f", f)
	c.MustKubectl(t, 2*time.Minute, "-n", loopNS, "rollout", "status", "deployment/busybox-demo", "--timeout", "2m")
	pod := onePod(t, c, loopNS, "app=busybox-demo")

	rep := filepath.Join(dir, "report.json")
	pod = discover(t, c, kscmp, rep, pod)
	checkReport(t, rep, pod)

	profile := applyRecommended(t, c, kscmp, rep, dir, loopNS, "busybox-demo", []string{NodeName})
	rolled := waitBoundPod(t, c, loopNS, profile, pod)

	pid, status := nodeProcess(t, string(rolled.UID), "sleep 100000")
	if m := seccompMode(status); m != "2" {
		t.Errorf("%s pod %s: process %d Seccomp: %q, want 2 (under %s)", loopNS, rolled.Name, pid, m, profile)
	}
	out, err := c.KubectlOutput(time.Minute, "-n", loopNS, "exec", rolled.Name, "--", "sh", "-c", smokeTest)
	if err != nil || !strings.Contains(string(out), smokeOutput) {
		t.Errorf("%s pod %s under the recommended policy: ls, echo and sleep: %v\n%s", loopNS, rolled.Name, err, out)
	}
}

// applyRecommended is the loop's second half as a person types it:
// kscmp recommend from the report rep into dir/policies; the one policy of
// namespace ns (the Deployment deploy's) applied with the namespace opted
// in; its profile waited for in the kubelet seccomp directory of each of
// nodes and bound to deploy's pods by the webhook; deploy restarted and
// rolled out. It returns the profile's path below the seccomp directory.
func applyRecommended(t *testing.T, c *Cluster, kscmp, rep, dir, ns, deploy string, nodes []string) string {
	t.Helper()
	policies := filepath.Join(dir, "policies")
	c.run(t, time.Minute, kscmp, "recommend", "--from", rep, "-o", policies, "--summary", filepath.Join(dir, "summary.md"))
	files, _ := filepath.Glob(filepath.Join(policies, ns, "*.yaml"))
	if len(files) != 1 {
		t.Fatalf("kscmp recommend: policies for namespace %s: %v, want one (the Deployment's)", ns, files)
	}
	data, _ := os.ReadFile(files[0])
	t.Logf("recommended %s:\n%s", files[0], data)
	c.MustKubectl(t, time.Minute, "label", "namespace", ns, "kscmp.kubearmor.com/enforce=true")
	c.MustKubectl(t, time.Minute, "apply", "-f", files[0])
	profile := "kubearmor/" + ns + "/" + strings.TrimSuffix(filepath.Base(files[0]), ".yaml") + ".json"
	for _, node := range nodes {
		waitFile(t, filepath.Join(c.KubeletSeccompDirOn(node), profile))
	}
	waitBoundIn(t, c, ns, deploy, profile)
	c.MustKubectl(t, time.Minute, "-n", ns, "rollout", "restart", "deployment/"+deploy)
	c.MustKubectl(t, 2*time.Minute, "-n", ns, "rollout", "status", "deployment/"+deploy, "--timeout", "2m")
	return profile
}

// discover runs kscmp discover on the node, namespace loopNS, as a person
// would record a workload: from its start (the Deployment restarted once
// the recorder is attached: a pod's start-up calls, as its sleep's, are its
// too) and while it works (ls, echo and sleep in the pod, its smoke test,
// loadRounds times); then Ctrl-C (SIGINT) ends the recording, so that the
// report covers the whole load however slow the node is (--duration only
// caps it). It returns the pod it recorded.
func discover(t *testing.T, c *Cluster, kscmp, rep string, old *corev1.Pod) *corev1.Pod {
	t.Helper()
	const loadRounds = 5
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kscmp, "discover", "--duration", "90s", "--namespace", loopNS,
		"--kubeconfig", c.Kubeconfig, "--node", NodeName, "-o", rep)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Its first progress line says the recorder is attached.
	for !strings.Contains(stderr.String(), "discover:") {
		select {
		case err := <-done:
			t.Fatalf("kscmp discover ended before it recorded: %v\n%s", err, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.MustKubectl(t, time.Minute, "-n", loopNS, "rollout", "restart", "deployment/busybox-demo")
	c.MustKubectl(t, time.Minute, "-n", loopNS, "rollout", "status", "deployment/busybox-demo", "--timeout", "1m")
	pod := waitBoundPod(t, c, loopNS, "", old)
	for i := 0; i < loadRounds; i++ {
		out, err := c.KubectlOutput(30*time.Second, "-n", loopNS, "exec", pod.Name, "--", "sh", "-c", smokeTest)
		if err != nil || !strings.Contains(string(out), smokeOutput) {
			t.Fatalf("the load in %s pod %s: %v\n%s", loopNS, pod.Name, err, out)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("kscmp discover: %v\n%s", err, stderr.String())
	}
	t.Logf("kscmp discover:\n%s", stderr.String())
	return pod
}

// syncBuffer is a strings.Builder safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// checkReport: the report has the pod's container (by its id in the pod's
// status), named from the API server: namespace, pod, container, labels and
// the owning Deployment, with the calls of the smoke test; and nothing else
// of that pod: its sandbox (the pause process) is the runtime's, not the
// workload's, and is left out.
func checkReport(t *testing.T, path string, pod *corev1.Pod) {
	t.Helper()
	if len(pod.Status.ContainerStatuses) != 1 {
		t.Fatalf("pod %s: %d container statuses, want 1", pod.Name, len(pod.Status.ContainerStatuses))
	}
	_, cid, _ := strings.Cut(pod.Status.ContainerStatuses[0].ContainerID, "://")
	r, err := report.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	found := false
	defer func() { t.Logf("report: workloads:\n%s", strings.Join(seen, "\n")) }()
	for _, w := range r.Workloads {
		id := w.Identity
		seen = append(seen, fmt.Sprintf("%s %s/%s/%s owner %v cgroup %s exe %s calls %v", id.Kind, id.Namespace, id.Pod, id.Container, id.Owner, id.Cgroup, id.Exe, w.Syscalls))
		if id.Pod == pod.Name && id.ContainerID != cid {
			t.Errorf("report: pod %s: a workload that is not its container %.12s: %+v (the sandbox?)", pod.Name, cid, id)
		}
		if id.ContainerID != cid {
			continue
		}
		if id.Kind != report.KindPod || id.Namespace != loopNS || id.Pod != pod.Name || id.Container != "bb" || id.PodUID != string(pod.UID) || id.Labels["app"] != "busybox-demo" ||
			id.Owner == nil || *id.Owner != (report.Owner{Kind: "Deployment", Name: "busybox-demo"}) || id.ContainerID == "" {
			t.Errorf("report: pod %s's container bb: identity %+v, want kind pod, UID %s, label app=busybox-demo, owner Deployment busybox-demo, a container id",
				pod.Name, id, pod.UID)
		}
		// ls reads directories, echo writes, sleep sleeps.
		for _, want := range []string{"getdents64", "write", "clock_nanosleep"} {
			if !hasCall(w.Syscalls, want) {
				t.Errorf("report: pod %s's container bb: no %s among %v", pod.Name, want, w.Syscalls)
			}
		}
		found = true
	}
	if found {
		return
	}
	t.Fatalf("report %s: no workload for %s/%s container bb (id %s)", path, loopNS, pod.Name, cid)
}

func hasCall(syscalls map[string][]string, name string) bool {
	for _, calls := range syscalls {
		for _, s := range calls {
			if s == name {
				return true
			}
		}
	}
	return false
}

// waitBoundPod waits until ns runs exactly one busybox-demo pod, not old,
// running, ready and bound to profile, and returns it.
func waitBoundPod(t *testing.T, c *Cluster, ns, profile string, old *corev1.Pod) *corev1.Pod {
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
		if len(pods.Items) != 1 {
			return false, nil
		}
		p := &pods.Items[0]
		return p.UID != old.UID && p.DeletionTimestamp == nil && podStarted(p, time.Time{}, false) && localhostProfile(p) == profile, nil
	})
	if err != nil {
		t.Fatalf("%s: no rolled pod bound to %s: %v; pods: %v", ns, profile, err, statuses(last))
	}
	return &last[0]
}
