package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubearmor/kscmp/api/violation"
	"github.com/kubearmor/kscmp/internal/apitest"
)

// getViolations is the agent's /violations answer: status and body.
func getViolations(t *testing.T, a *Agent, method string) (int, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	a.ViolationsHandler().ServeHTTP(rec, httptest.NewRequest(method, ViolationsPath, nil))
	return rec.Code, rec.Body.Bytes()
}

// TestViolationReportCumulative: the agent's /violations is every
// interval's report summed since the watch began, a valid ViolationReport
// of its node; entries past the bound are counted as overflow, not kept.
func TestViolationReportCumulative(t *testing.T) {
	w := newViolationWatch(fake.NewClientset(), Options{Node: "node-a", Logger: slog.New(slog.DiscardHandler),
		Violations: &ViolationOptions{MaxEvents: 1}})
	a := &Agent{viol: w}
	if code, body := getViolations(t, a, "GET"); code != http.StatusOK || !strings.Contains(string(body), `"violations": []`) {
		t.Fatalf("before any interval: %d %s, want 200 and an empty report", code, body)
	}
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	interval := func(start time.Time, lost uint64, vs ...violation.Violation) *violation.Report {
		r := violation.New()
		r.Start, r.Source, r.Kernel, r.Arch = start, "audit", "6.18", "x86_64"
		r.Lost.Unattributed = lost
		r.Violations = vs
		return r
	}
	later := podViolation("web-1", "bb", "mkdir", violation.ActionBlock, 5)
	later.LastSeen = t0.Add(time.Hour)
	w.handle(context.Background(), interval(t0, 1, podViolation("web-1", "bb", "mkdir", violation.ActionBlock, 12),
		podViolation("web-2", "bb", "mkdir", violation.ActionAudit, 2)))
	w.handle(context.Background(), interval(t0.Add(time.Minute), 2, later))

	code, body := getViolations(t, a, "GET")
	if code != http.StatusOK {
		t.Fatalf("GET: %d %s", code, body)
	}
	r, err := violation.Read(bytes.NewReader(body), "/violations")
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if r.Node != "node-a" || !r.Start.Equal(t0) || r.End.Before(t0) || r.Lost.Unattributed != 3 || r.Source != "audit" {
		t.Errorf("node %q start %v end %v lost %+v source %q; want node-a, %v, later, 3 unattributed, audit", r.Node, r.Start, r.End, r.Lost, r.Source, t0)
	}
	got := map[string]string{}
	for _, v := range r.Violations {
		got[v.Identity.Pod+" "+v.Action] = fmt.Sprintf("%d %s", v.Count, v.LastSeen.Sub(t0))
	}
	want := map[string]string{"web-1 Block": "17 1h0m0s", "web-2 Audit": "2 1s"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("entries %v, want %v", got, want)
	}
	// The query's filter: only what it keeps is sent.
	for query, want := range map[string]string{
		"?namespace=shop&container=bb":                          "2",
		"?namespace=bank":                                       "0",
		"?selector=app%3Dweb":                                   "0",
		"?since=" + t0.Add(30*time.Minute).Format(time.RFC3339): "1",
		"?since=yesterday":                                      "400",
		"?selector=%3Dx":                                        "400",
	} {
		rec := httptest.NewRecorder()
		a.ViolationsHandler().ServeHTTP(rec, httptest.NewRequest("GET", ViolationsPath+query, nil))
		got := fmt.Sprint(rec.Code)
		if rec.Code == http.StatusOK {
			r, err := violation.Read(rec.Body, query)
			if err != nil {
				t.Fatal(err)
			}
			got = fmt.Sprint(len(r.Violations))
		}
		if got != want {
			t.Errorf("GET %s: %s, want %s", query, got, want)
		}
	}
	if code, _ := getViolations(t, a, "POST"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", code)
	}

	// The bound: maxReport entries kept, the rest's counts in overflow.
	var many []violation.Violation
	for i := range maxReport + 3 {
		many = append(many, podViolation(fmt.Sprintf("p-%d", i), "bb", "chmod", violation.ActionAudit, 2))
	}
	w.handle(context.Background(), interval(t0.Add(2*time.Minute), 0, many...))
	if r := a.ViolationReport(); len(r.Violations) != maxReport || r.Lost.Overflow != 2*(3+2) {
		// 2 entries were there: maxReport-2 of the new ones fit, 5 do not.
		t.Errorf("%d entries, overflow %d; want %d and 10", len(r.Violations), r.Lost.Overflow, maxReport)
	}

	if code, _ := getViolations(t, &Agent{}, "GET"); code != http.StatusNotFound {
		t.Errorf("violations not watched: %d, want 404", code)
	}
}

// agentPod is an agent pod on node in kscmp-system.
func agentPod(name, node string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kscmp-system",
		Labels: map[string]string{"app.kubernetes.io/name": "kscmp-agent"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "agent", Image: "kscmp",
			Ports: []corev1.ContainerPort{{Name: MetricsPortName, ContainerPort: 9999}}}}},
		Status: corev1.PodStatus{Phase: phase}}
}

// TestCollectViolations: the union of the agents that answer with their
// node's valid report; every other agent pod (not running, a report of
// another node, not a report, too large, not reachable) is a node entry
// that says why, and changes nothing in the union.
func TestCollectViolations(t *testing.T) {
	call := func(pod, syscall, action string, n uint64) violation.Violation {
		v := podViolation(pod, "bb", syscall, action, n)
		v.Number = map[string]int{"mkdir": 83, "chmod": 90, "ptrace": 101}[syscall]
		return v
	}
	nodeReport := func(node string, vs ...violation.Violation) string {
		r := violation.New()
		r.Node, r.Start, r.End = node, time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		r.Lost.Audit = 1
		r.Violations = vs
		data, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	answers := map[string]func() (io.ReadCloser, error){
		"agent-a": text(nodeReport("node-a", call("web-1", "mkdir", violation.ActionBlock, 3))),
		"agent-b": text(nodeReport("node-b", call("web-2", "mkdir", violation.ActionBlock, 4),
			call("web-2", "chmod", violation.ActionAudit, 1))),
		"agent-d": text(nodeReport("node-a", call("evil", "ptrace", violation.ActionBlock, 9))),
		"agent-e": text(`{"apiVersion": "kscmp/v1", "kind": "ViolationReport", "violations": [{"identity": {"kind": "pod"}, "syscall": "write", "number": 1, "abi": "x86_64", "action": "Allow", "count": 1}]}`),
		"agent-f": func() (io.ReadCloser, error) {
			return io.NopCloser(io.LimitReader(zeros{}, maxReportBytes+10)), nil
		},
		"agent-g": func() (io.ReadCloser, error) { return nil, errors.New("dial tcp 10.0.0.7:9999: connection refused") },
	}
	kube := fake.NewClientset(
		agentPod("agent-a", "node-a", corev1.PodRunning), agentPod("agent-b", "node-b", corev1.PodRunning),
		agentPod("agent-c", "node-c", corev1.PodPending), agentPod("agent-d", "node-d", corev1.PodRunning),
		agentPod("agent-e", "node-e", corev1.PodRunning), agentPod("agent-f", "node-f", corev1.PodRunning),
		agentPod("agent-g", "node-g", corev1.PodRunning))
	other := agentPod("not-an-agent", "node-a", corev1.PodRunning)
	other.Labels = nil
	if _, err := kube.CoreV1().Pods("kscmp-system").Create(context.Background(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ports []int
	r, err := CollectViolations(context.Background(), kube, CollectOptions{Fetch: func(_ context.Context, pod *corev1.Pod, port int) (io.ReadCloser, error) {
		ports = append(ports, port)
		if pod.Name == "not-an-agent" {
			t.Errorf("asked %s", pod.Name)
		}
		return answers[pod.Name]()
	}, Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range r.Violations {
		got = append(got, fmt.Sprintf("%s/%s/%s/%d", v.Identity.Pod, v.Syscall, v.Action, v.Count))
	}
	if want := "[web-1/mkdir/Block/3 web-2/mkdir/Block/4 web-2/chmod/Audit/1]"; fmt.Sprint(got) != want {
		t.Errorf("union %v, want %s", got, want)
	}
	if r.Node != "" || r.Lost.Audit != 2 {
		t.Errorf("node %q lost %+v: want no node, the two collected nodes' lost summed (2)", r.Node, r.Lost)
	}
	wantNodes := map[string]string{
		"node-a": "collected", "node-b": "collected",
		"node-c": "agent pod agent-c is Pending, not Running",
		"node-d": `its report is of node "node-a", the pod runs on "node-d"`,
		"node-e": `violations[0].action: "Allow"`,
		"node-f": "more than 67108864 bytes",
		"node-g": "connection refused",
	}
	if len(r.Nodes) != len(wantNodes) {
		t.Fatalf("nodes %+v, want %d", r.Nodes, len(wantNodes))
	}
	for i, n := range r.Nodes {
		if i > 0 && r.Nodes[i-1].Name > n.Name {
			t.Errorf("nodes not sorted: %s after %s", n.Name, r.Nodes[i-1].Name)
		}
		want := wantNodes[n.Name]
		if ok := n.Collected == (want == "collected") && (n.Collected || strings.Contains(n.Error, want)); !ok {
			t.Errorf("node %s: collected %v error %q, want %s", n.Name, n.Collected, n.Error, want)
		}
	}
	if len(ports) != 6 || ports[0] != 9999 {
		t.Errorf("ports asked %v: want the pods' metrics port (9999) for the 6 running agents", ports)
	}

	_, err = CollectViolations(context.Background(), fake.NewClientset(), CollectOptions{})
	if !errors.Is(err, ErrNoAgents) {
		t.Errorf("no agents: %v, want ErrNoAgents", err)
	}
}

func text(s string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
}

// zeros reads as an endless run of '[' bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '['
	}
	return len(p), nil
}

// TestViolationsRBAC: on a real API server, a member of the group the
// shipped Role kscmp-violations is bound to reaches the agents' report
// through the pod proxy (the API server lets the request through and
// fails only to dial the pod, which is not there); a user outside it is
// refused the pod list; the role grants nothing beyond the agents'
// namespace or beyond reading.
func TestViolationsRBAC(t *testing.T) {
	srv := apitest.Start(t)
	admin := srv.Client
	srv.CreateNamespace(t, "kscmp-system")
	srv.CreateNamespace(t, "shop")
	srv.ApplyRBAC(t, "deploy/manifests/agent/rbac.yaml")
	ctx := context.Background()
	pod, err := admin.CoreV1().Pods("kscmp-system").Create(ctx, agentPod("kscmp-agent-x", "n1", ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A documentation address (RFC 5737): the proxy's dial fails there.
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "192.0.2.1", PodIPs: []corev1.PodIP{{IP: "192.0.2.1"}}}
	if _, err := admin.CoreV1().Pods("kscmp-system").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	member, err := kubernetes.NewForConfig(srv.UserConfig(t, "alice", "kscmp-violations"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := CollectViolations(ctx, member, CollectOptions{Timeout: 3 * time.Second})
	if err != nil {
		t.Fatalf("as a member: %v", err)
	}
	if len(r.Nodes) != 1 || r.Nodes[0].Collected || r.Nodes[0].Error == "" || strings.Contains(strings.ToLower(r.Nodes[0].Error), "forbidden") {
		t.Errorf("as a member: nodes %+v, want the one agent not collected for want of the pod, not forbidden", r.Nodes)
	}
	t.Logf("as a member: %s", r.Nodes[0].Error)
	outsider, err := kubernetes.NewForConfig(srv.UserConfig(t, "bob"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CollectViolations(ctx, outsider, CollectOptions{}); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("as an outsider: %v, want the pod list forbidden", err)
	}
	for _, c := range []struct {
		verb, resource, sub, ns string
		allowed                 bool
	}{
		{"list", "pods", "", "kscmp-system", true},
		{"get", "pods", "proxy", "kscmp-system", true},
		{"create", "pods", "proxy", "kscmp-system", false},
		{"get", "pods", "proxy", "shop", false},
		{"list", "pods", "", "shop", false},
		{"get", "pods", "exec", "kscmp-system", false},
		{"get", "secrets", "", "kscmp-system", false},
		{"get", "services", "proxy", "kscmp-system", false},
	} {
		sar, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: "alice", Groups: []string{"kscmp-violations"},
			ResourceAttributes: &authzv1.ResourceAttributes{Namespace: c.ns, Verb: c.verb, Resource: c.resource, Subresource: c.sub},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed != c.allowed {
			t.Errorf("kscmp-violations %s %s/%s in %s: allowed %v, want %v", c.verb, c.resource, c.sub, c.ns, sar.Status.Allowed, c.allowed)
		}
	}
}
