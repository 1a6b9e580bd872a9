package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/internal/apitest"
)

func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return time.Since(start)
}

func exists(dir, rel string) bool {
	_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(rel)))
	return err == nil
}

// TestAgentsConverge runs two agents for two simulated nodes against a real
// API server: policies created, then one deleted, reach both nodes' kubelet
// directories for the pods each node runs; each node's status object
// holds what it installed, and the aggregator (both agents run one, one
// leads) summarises them into the policies' status with one Event per
// policy; a restarted agent reloads and removes what is stale.
func TestAgentsConverge(t *testing.T) {
	srv := apitest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv.InstallPolicyCRD(t)
	srv.CreateNamespace(t, "shop")
	dyn := dynamic.NewForConfigOrDie(srv.Config)

	mkPod := func(name, node string, labels map[string]string) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: labels},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}
		if _, err := srv.Client.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkPod("web-a", "node-a", map[string]string{"app": "web"})
	mkPod("web-b", "node-b", map[string]string{"app": "web"})
	mkPod("db-a", "node-a", map[string]string{"app": "db"})

	start := func(node, dir string) context.CancelFunc {
		a, err := New(srv.Client, dyn, Options{Node: node, SeccompDir: dir, Aggregate: true})
		if err != nil {
			t.Fatal(err)
		}
		actx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(actx) }()
		return func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("agent %s: %v", node, err)
			}
		}
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	stopA := start("node-a", dirA)
	stopB := start("node-b", dirB)
	defer func() { stopB() }()

	policy := func(name, body string) {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: "+name+", namespace: shop}\n"+body), &u.Object); err != nil {
			t.Fatal(err)
		}
		if _, err := dyn.Resource(PolicyResource).Namespace("shop").Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	policy("kscmp1", "spec: {selector: {matchLabels: {app: web}}, seccomp: {rules: [{syscalls: [read, write, getpid], action: Allow}, {syscalls: [mkdir], action: Block}]}}")
	policy("kscmp2", "spec: {selector: {matchLabels: {app: web}}, seccomp: {rules: [{syscalls: [read, mkdir], action: Allow}, {syscalls: [write], action: Deny}]}}")
	both := ProfilePath("shop", "kscmp1+kscmp2")
	// kscmp1 alone may have been installed for a moment, before kscmp2
	// arrived: it must go once the merged profile is there.
	took := waitFor(ctx, t, "both nodes get the merged profile, and only it", func() bool {
		return exists(dirA, both) && exists(dirB, both) && !exists(dirA, ProfilePath("shop", "kscmp1")) && !exists(dirB, ProfilePath("shop", "kscmp1"))
	})
	t.Logf("policies → files on two nodes: %s", took)

	// Each node's own status object names the policies it installed.
	waitFor(ctx, t, "node status objects", func() bool {
		for _, node := range []string{"node-a", "node-b"} {
			u, err := dyn.Resource(NodeStatusResource).Get(ctx, node, metav1.GetOptions{})
			if err != nil {
				return false
			}
			ps, _, _ := unstructured.NestedSlice(u.Object, "policies")
			if len(ps) != 2 || ps[0].(map[string]any)["policy"] != "shop/kscmp1" || ps[1].(map[string]any)["policy"] != "shop/kscmp2" {
				return false
			}
		}
		return true
	})
	// Status: installed on 2 of 2 nodes (the deprecated list still names
	// them in a cluster this small), one Event for the policy.
	waitFor(ctx, t, "status: installed on 2 of 2 nodes", func() bool {
		u, err := dyn.Resource(PolicyResource).Namespace("shop").Get(ctx, "kscmp1", metav1.GetOptions{})
		if err != nil {
			return false
		}
		nodes, _, _ := unstructured.NestedStringSlice(u.Object, "status", "installedNodes")
		n, _, _ := unstructured.NestedInt64(u.Object, "status", "nodes")
		sel, _, _ := unstructured.NestedInt64(u.Object, "status", "selectedNodes")
		return n == 2 && sel == 2 && len(nodes) == 2 && nodes[0] == "node-a" && nodes[1] == "node-b" &&
			condition(u, "Installed") == "True"
	})
	waitFor(ctx, t, "Installed event", func() bool { return countEvents(ctx, srv, "kscmp1", "Installed") >= 1 })
	// A policy the schema lets through but kscmp refuses (an unknown
	// syscall name): not used, an Event and Accepted=False say why.
	policy("typo", "spec: {selector: {matchLabels: {app: web}}, seccomp: {syscalls: [red], action: Allow}}")
	waitFor(ctx, t, "refused policy reported", func() bool {
		u, err := dyn.Resource(PolicyResource).Namespace("shop").Get(ctx, "typo", metav1.GetOptions{})
		if err != nil {
			return false
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			if m, _ := c.(map[string]any); m["type"] == "Accepted" && m["status"] == "False" && strings.Contains(fmt.Sprint(m["message"]), "unknown system call") {
				return countEvents(ctx, srv, "typo", "Refused") >= 1
			}
		}
		return false
	})
	if exists(dirA, ProfilePath("shop", "kscmp1+kscmp2+typo")) {
		t.Error("a refused policy was used")
	}

	// Deleting kscmp2 recomputes: kscmp1 alone; the old file goes, since no
	// pod was started with it.
	if err := dyn.Resource(PolicyResource).Namespace("shop").Delete(ctx, "kscmp2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	only1 := ProfilePath("shop", "kscmp1")
	took = waitFor(ctx, t, "deletion recomputed on both nodes", func() bool {
		return exists(dirA, only1) && exists(dirB, only1) && !exists(dirA, both) && !exists(dirB, both)
	})
	t.Logf("policy deletion → files on two nodes: %s", took)
	waitFor(ctx, t, "Deleted event", func() bool { return countEvents(ctx, srv, "kscmp2", "Deleted") >= 1 })

	// Restart: the agent reloads everything and removes what is stale.
	stopA()
	stale := filepath.Join(dirA, ProfileDir, "shop", "stale.json")
	os.WriteFile(stale, []byte("{}"), 0o644)
	os.Remove(filepath.Join(dirA, filepath.FromSlash(only1)))
	stopA = start("node-a", dirA)
	defer func() { stopA() }()
	waitFor(ctx, t, "restarted agent reloads", func() bool {
		_, err := os.Stat(stale)
		return exists(dirA, only1) && os.IsNotExist(err)
	})
}

func countEvents(ctx context.Context, srv *apitest.Server, object, reason string) int {
	evs, err := srv.Client.CoreV1().Events("shop").List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range evs.Items {
		if e.InvolvedObject.Name == object && e.Reason == reason {
			n++
		}
	}
	return n
}

// condition is the status of the object's condition of type t, "" when it
// has none.
func condition(u *unstructured.Unstructured, t string) string {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] == t {
			return fmt.Sprint(m["status"])
		}
	}
	return ""
}
