package agent

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/api/violation"
	"github.com/kubearmor/kscmp/discover/violations"
	"github.com/kubearmor/kscmp/internal/apitest"
)

// countingTransport counts the PATCH requests (server-side applies) made
// to the node statuses.
type countingTransport struct {
	rt      http.RoundTripper
	patches *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPatch && strings.Contains(r.URL.Path, "/"+api.NodeStatusPlural+"/") {
		c.patches.Add(1)
	}
	return c.rt.RoundTrip(r)
}

// TestViolationsInPolicyStatus runs two agents for two simulated nodes
// against a real API server, each fed its interval reports by a stand-in
// monitor: each node's status object carries, per policy, the calls
// refused or logged under the policy's profile on that node, and the
// aggregator sums them across the nodes into the policy's
// status.violations (count, latest lastSeen, nodes), largest first. A node
// status is applied only when an interval's report changed its counts.
func TestViolationsInPolicyStatus(t *testing.T) {
	srv := apitest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv.InstallPolicyCRD(t)
	srv.CreateNamespace(t, "shop")
	dyn := dynamic.NewForConfigOrDie(srv.Config)

	for _, node := range []string{"node-a", "node-b"} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-" + node, Namespace: "shop", Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}
		if _, err := srv.Client.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorSeccompPolicy
metadata: {name: web, namespace: shop}
spec: {selector: {matchLabels: {app: web}}, seccomp: {defaultAction: Audit, rules: [{syscalls: [read, write], action: Allow}, {syscalls: [ptrace], action: Block}]}}
`), &u.Object); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(PolicyResource).Namespace("shop").Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	var patchesA atomic.Int64
	feeds := map[string]chan *violation.Report{}
	start := func(node, dir string, aggregate bool) {
		feed := make(chan *violation.Report)
		feeds[node] = feed
		monitor := func(ctx context.Context, o violations.Options) (*violation.Report, error) {
			for {
				select {
				case <-ctx.Done():
					return nil, nil
				case r := <-feed:
					o.Update(r)
				}
			}
		}
		cfg := rest.CopyConfig(srv.Config)
		if node == "node-a" {
			cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt, &patchesA} })
		}
		a, err := New(srv.Client, dynamic.NewForConfigOrDie(cfg), Options{Node: node, SeccompDir: dir, Aggregate: aggregate,
			Violations: &ViolationOptions{Interval: 100 * time.Millisecond, Monitor: monitor}})
		if err != nil {
			t.Fatal(err)
		}
		actx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(actx) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("agent %s: %v", node, err)
			}
		})
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	start("node-a", dirA, true)
	start("node-b", dirB, false)
	prof := ProfilePath("shop", "web")
	waitFor(ctx, t, "both nodes get the policy's profile", func() bool { return exists(dirA, prof) && exists(dirB, prof) })

	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	viol := func(pod, syscall, action string, n uint64, last time.Time) violation.Violation {
		return violation.Violation{Identity: report.Identity{Kind: report.KindPod, Namespace: "shop", Pod: pod, PodUID: "uid-" + pod, Container: "main"},
			Syscall: syscall, ABI: "x86_64", Action: action, Count: n, FirstSeen: t0, LastSeen: last, Profile: "localhost/" + prof}
	}
	send := func(node string, vs ...violation.Violation) {
		r := violation.New()
		r.Start = time.Now()
		r.Violations = vs
		select {
		case feeds[node] <- r:
		case <-ctx.Done():
			t.Fatal("monitor not fed")
		}
	}
	send("node-a", viol("web-node-a", "mkdir", violation.ActionAudit, 3, t0.Add(time.Second)),
		viol("web-node-a", "chmod", violation.ActionAudit, 1, t0),
		// Not under a profile of the agent's: no policy's.
		violation.Violation{Identity: report.Identity{Kind: report.KindPod, Namespace: "shop", Pod: "other", Container: "x"},
			Syscall: "mount", Action: violation.ActionBlock, Count: 50, Profile: "runtime/default"})
	send("node-b", viol("web-node-b", "mkdir", violation.ActionAudit, 4, t0.Add(3*time.Second)))

	nodeViolations := func(node string) []api.PolicyViolation {
		u, err := dyn.Resource(NodeStatusResource).Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		var ns api.KubeArmorSeccompNodeStatus
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ns); err != nil || len(ns.Policies) != 1 {
			return nil
		}
		return ns.Policies[0].Violations
	}
	policyViolations := func() []api.PolicyViolation {
		u, err := dyn.Resource(PolicyResource).Namespace("shop").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return nil
		}
		var st api.PolicyStatus
		m, _ := u.Object["status"].(map[string]any)
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &st); err != nil {
			t.Fatal(err)
		}
		return st.Violations
	}
	line := func(syscall string, n int64, last time.Time, nodes int32) api.PolicyViolation {
		return api.PolicyViolation{Syscall: syscall, Action: violation.ActionAudit, Count: n, LastSeen: metav1.NewTime(last), Nodes: nodes}
	}
	same := func(got, want []api.PolicyViolation) bool {
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			g, w := got[i], want[i]
			if g.Syscall != w.Syscall || g.Action != w.Action || g.Count != w.Count || !g.LastSeen.Equal(&w.LastSeen) || g.Nodes != w.Nodes {
				return false
			}
		}
		return true
	}
	var got []api.PolicyViolation
	waitFor(ctx, t, "node-a's status carries its violations", func() bool {
		got = nodeViolations("node-a")
		return same(got, []api.PolicyViolation{line("mkdir", 3, t0.Add(time.Second), 0), line("chmod", 1, t0, 0)})
	})
	waitFor(ctx, t, "policy status sums both nodes", func() bool {
		got = policyViolations()
		return same(got, []api.PolicyViolation{line("mkdir", 7, t0.Add(3*time.Second), 2), line("chmod", 1, t0, 1)})
	})

	// An interval with nothing new applies nothing; the next one with a
	// new count applies once (the two may be folded into one write).
	before := patchesA.Load()
	send("node-a")
	send("node-a", viol("web-node-a", "mkdir", violation.ActionAudit, 2, t0.Add(5*time.Second)))
	waitFor(ctx, t, "node-a's grown count", func() bool {
		got = nodeViolations("node-a")
		return same(got, []api.PolicyViolation{line("mkdir", 5, t0.Add(5*time.Second), 0), line("chmod", 1, t0, 0)})
	})
	if n := patchesA.Load() - before; n != 1 {
		t.Errorf("node-a's status applied %d times for an empty and a changed interval, want 1", n)
	}
	waitFor(ctx, t, "policy status follows", func() bool {
		got = policyViolations()
		return same(got, []api.PolicyViolation{line("mkdir", 9, t0.Add(5*time.Second), 2), line("chmod", 1, t0, 1)})
	})
}

// TestSumViolations: the policy's lines are bounded, largest first, and
// count the nodes; only grown counts are deferred to the violation
// interval, never a first list or another change.
func TestSumViolations(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))
	entries := map[string]api.NodePolicy{}
	for i := range 30 {
		var vs []api.PolicyViolation
		for j := range api.MaxViolations {
			vs = append(vs, api.PolicyViolation{Syscall: "call" + string(rune('a'+(i+j)%26)), Action: "Block", Count: int64(j + 1), LastSeen: t0})
		}
		entries["node-"+string(rune('a'+i%26))+string(rune('a'+i/26))] = api.NodePolicy{Policy: "ns/p", Generation: 1, Violations: vs}
	}
	st := Summarize(entries, 1, "")
	if len(st.Violations) != api.MaxViolations {
		t.Fatalf("%d lines, want %d", len(st.Violations), api.MaxViolations)
	}
	for i := 1; i < len(st.Violations); i++ {
		a, b := st.Violations[i-1], st.Violations[i]
		if a.Count < b.Count || a.Count == b.Count && a.Syscall > b.Syscall {
			t.Fatalf("not sorted: %+v", st.Violations)
		}
	}
	for _, v := range st.Violations {
		n, nodes := int64(0), int32(0)
		for _, e := range entries {
			for _, l := range e.Violations {
				if l.Syscall == v.Syscall && l.Action == v.Action {
					n += l.Count
					nodes++
				}
			}
		}
		if v.Count != n || v.Nodes != nodes || !v.LastSeen.Equal(&t0) {
			t.Errorf("%+v: want count %d on %d nodes", v, n, nodes)
		}
	}

	grown := st
	grown.Violations = append([]api.PolicyViolation(nil), st.Violations...)
	grown.Violations[0].Count++
	if !violationsAgain(st, grown) {
		t.Error("a grown count alone is not deferred")
	}
	first := st
	first.Violations = nil
	if violationsAgain(first, st) {
		t.Error("the first violations are deferred")
	}
	other := grown
	other.FailedNodes++
	if violationsAgain(st, other) {
		t.Error("a change beside the violations is deferred")
	}
}
