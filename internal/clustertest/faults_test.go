package clustertest

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubearmor/kscmp/internal/fsutil"
)

const agentSelector = "app.kubernetes.io/name=kscmp-agent"

// testFaults: with demo's policy and Deployment in place (bound, enforcing,
// pinned to the first node, kscmp-node), each fault of issue #14 in turn on
// that node — its agent pod deleted (after a killed write: the profile gone,
// its temporary file left), its kubelet restarted, its containerd restarted,
// the whole cluster (both nodes) stopped and started again from its state
// directory — and after each: the profiles are there byte for byte,
// no temporary file is left, the agent runs under its own profile, demo's
// pod runs again under its profile (Seccomp: 2), echo and ls work and mkdir
// fails with EPERM.
func testFaults(t *testing.T, c *Cluster) {
	dir := filepath.Join(c.Dir, "test")
	f := filepath.Join(dir, "demo-faults.yaml")
	write(t, f, policyYAML("demo", `{kscmp.kubearmor.com/enforce: "true"}`, true))
	c.MustKubectl(t, time.Minute, "apply", "-f", f)
	waitBound(t, c)
	c.MustKubectl(t, time.Minute, "apply", "-f", filepath.Join(dir, "demo-deployment.yaml"))
	c.MustKubectl(t, 2*time.Minute, "-n", "demo", "rollout", "status", "deployment/busybox-demo", "--timeout", "2m")
	profile := filepath.Join(c.KubeletSeccompDir(), profileName)
	waitFile(t, profile)
	want := profiles(t, c)
	checkWorkload(t, c, "demo", true)

	t.Run("AgentPodDeleted", func(t *testing.T) {
		agent := onePodOn(t, c, "kscmp-system", agentSelector, NodeName)
		// What a write killed before its rename leaves: no profile, a
		// temporary file.
		if err := os.Remove(profile); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(filepath.Dir(profile), fsutil.TempName(filepath.Base(profile)))
		write(t, tmp, `{"defaultAction": "SCMP_ACT_ALLOW"`)
		since := time.Now()
		c.MustKubectl(t, time.Minute, "-n", "kscmp-system", "delete", "pod", agent.Name, "--wait=false")
		converged(t, c, want, time.Time{}, since, map[string]bool{agentSelector: true})
	})
	t.Run("KubeletRestarted", func(t *testing.T) {
		since := time.Now()
		if out, err := c.script(3*time.Minute, "restart", "kubelet"); err != nil {
			t.Fatalf("hack/cluster.sh restart kubelet: %v\n%s", err, out)
		}
		converged(t, c, want, since, since, nil)
	})
	t.Run("ContainerdRestarted", func(t *testing.T) {
		since := time.Now()
		if out, err := c.script(3*time.Minute, "restart", "containerd"); err != nil {
			t.Fatalf("hack/cluster.sh restart containerd: %v\n%s", err, out)
		}
		converged(t, c, want, time.Time{}, since, nil)
	})
	t.Run("NodeRestarted", func(t *testing.T) {
		since := time.Now()
		if out, err := c.script(3*time.Minute, "down"); err != nil {
			t.Fatalf("hack/cluster.sh down: %v\n%s", err, out)
		}
		if out, err := c.script(5*time.Minute, "up"); err != nil {
			t.Fatalf("hack/cluster.sh up (same state directory): %v\n%s", err, out)
		}
		// Every container was killed, on both nodes: all of them start again.
		waitNodeReady(t, c, Node2Name, since)
		waitStarted(t, c, "kscmp-system", agentSelector, Node2Name, since, true)
		converged(t, c, want, since, since, map[string]bool{agentSelector: true, "app=busybox-demo": true})
	})
}

// converged waits until the node is Ready (in a heartbeat after
// kubeletSince when the kubelet started again: it posts its status when it
// starts, and otherwise only on a change or every few minutes) and the
// agent's and demo's pods run and are ready (those in restarted with
// containers started after since), then checks the profiles against want,
// the agent and demo's workload.
func converged(t *testing.T, c *Cluster, want map[string][]byte, kubeletSince, since time.Time, restarted map[string]bool) {
	t.Helper()
	waitNodeReady(t, c, NodeName, kubeletSince)
	waitStarted(t, c, "kscmp-system", agentSelector, NodeName, since, restarted[agentSelector])
	waitStarted(t, c, "demo", "app=busybox-demo", NodeName, since, restarted["app=busybox-demo"])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got map[string][]byte
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		got = profiles(t, c)
		return sameFiles(got, want), nil
	})
	if err != nil {
		t.Errorf("profiles after the fault: %v, want %v byte for byte (and no temporary file)", names(got), names(want))
	}
	checkAgent(t, c)
	waitExec(t, c, "demo", "app=busybox-demo")
	checkWorkload(t, c, "demo", true)
}

// waitExec waits until kubectl exec reaches the selector's pod: a kubelet
// just started answers "pod does not exist" until it has taken its pods up
// again, though the API server still shows them running and ready.
func waitExec(t *testing.T, c *Cluster, ns, selector string) {
	t.Helper()
	pod := onePod(t, c, ns, selector)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []byte
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(context.Context) (bool, error) {
		var err error
		out, err = c.KubectlOutput(30*time.Second, "-n", ns, "exec", pod.Name, "--", "true")
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("%s pod %s: kubectl exec never reached it after the fault: %v\n%s", ns, pod.Name, err, out)
	}
}

// profiles reads every file under the kubelet's seccomp directory, by path
// relative to it; a temporary file fails the test (nothing partial).
func profiles(t *testing.T, c *Cluster) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	root := c.KubeletSeccompDir()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if fsutil.IsTemp(d.Name()) {
			rel = "TEMPORARY:" + rel
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[rel] = data
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", root, err)
	}
	return files
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

func names(files map[string][]byte) string {
	var n []string
	for k := range files {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

// waitNodeReady waits until node reports Ready in a heartbeat sent after
// since: the condition from before the fault says nothing.
func waitNodeReady(t *testing.T, c *Cluster, node string, since time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var last []corev1.NodeCondition
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = n.Status.Conditions
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue && !cond.LastHeartbeatTime.Time.Before(since.Truncate(time.Second)), nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("node %s: no Ready heartbeat after the fault: %v; conditions: %+v", node, err, last)
	}
}

// waitStarted waits until the selector picks exactly one pod in ns on node
// that runs, is ready, and — when restarted — whose containers all started
// after since (the pod's status is the kubelet's word after the fault, not
// the one from before it).
func waitStarted(t *testing.T, c *Cluster, ns, selector, node string, since time.Time, restarted bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var last []corev1.Pod
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector, FieldSelector: "spec.nodeName=" + node})
		if err != nil {
			return false, nil
		}
		last = pods.Items
		if len(pods.Items) != 1 || pods.Items[0].DeletionTimestamp != nil {
			return false, nil
		}
		return podStarted(&pods.Items[0], since, restarted), nil
	})
	if err != nil {
		t.Fatalf("%s pods %s on %s: not one running and ready after the fault: %v; pods: %+v", ns, selector, node, err, statuses(last))
	}
}

func podStarted(p *corev1.Pod, since time.Time, restarted bool) bool {
	if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, s := range p.Status.ContainerStatuses {
		if !s.Ready || s.State.Running == nil {
			return false
		}
		// StartedAt has a second's resolution.
		if restarted && s.State.Running.StartedAt.Time.Before(since.Truncate(time.Second)) {
			return false
		}
	}
	return true
}

func statuses(pods []corev1.Pod) []string {
	var s []string
	for _, p := range pods {
		s = append(s, p.Name+" "+string(p.Status.Phase))
	}
	return s
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		_, err := os.Stat(path)
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("%s: not written: %v", path, err)
	}
}
