package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/discover/cluster"
	"github.com/kubearmor/kscmp/discover/cluster/sim"
	"github.com/kubearmor/kscmp/internal/apitest"
)

// simCluster is an API server with nodes n1-n3 (Ready), pods of
// Deployment web in shop on n1 and n2, and simulated kubelets per recorder
// namespace, which the CLI reads logs from.
type simCluster struct {
	srv        *apitest.Server
	kubeconfig string
	logs       map[string]*sim.Kubelets
}

func newSimCluster(t *testing.T) *simCluster {
	srv := apitest.Start(t)
	c := &simCluster{srv: srv, kubeconfig: srv.Kubeconfig(t), logs: map[string]*sim.Kubelets{}}
	ctx := context.Background()
	for _, name := range []string{"n1", "n2", "n3"} {
		n, err := srv.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		if _, err := srv.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	srv.CreateNamespace(t, "shop")
	for i, node := range []string{"n1", "n2"} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-" + node, Namespace: "shop", Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}}
		if _, err := srv.Client.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(i, err)
		}
	}
	oldLogs, oldProfile := clusterLogs, recorderProfileName
	clusterLogs = func(kubernetes.Interface) cluster.LogSource { return c }
	recorderProfileName = func() string { return "kscmp/recorder-0123456789ab.json" }
	t.Cleanup(func() { clusterLogs, recorderProfileName = oldLogs, oldProfile })
	return c
}

// Log implements cluster.LogSource with the kubelets of the namespace.
func (c *simCluster) Log(ctx context.Context, ns, pod string, tail int64) (io.ReadCloser, error) {
	return c.logs[ns].Log(ctx, ns, pod, tail)
}

// recorders makes a recorder namespace whose kubelets do what nodes say.
func (c *simCluster) recorders(t *testing.T, ns string, nodes map[string]*sim.Node) *sim.Kubelets {
	c.srv.CreateNamespace(t, ns)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: cluster.ServiceAccount, Namespace: ns}}
	if _, err := c.srv.Client.CoreV1().ServiceAccounts(ns).Create(context.Background(), sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k := &sim.Kubelets{Client: c.srv.Client, Namespace: ns, Nodes: nodes}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sim: %v", err)
		}
	})
	c.logs[ns] = k
	return k
}

func webReport(pod string, calls ...string) *report.Report {
	r := report.New()
	r.Kernel, r.Arch = "6.8.0", "x86_64"
	r.Workloads = append(r.Workloads, report.Workload{
		Identity: report.Identity{Kind: report.KindPod, Namespace: "shop", Pod: pod, Container: "app",
			Labels: map[string]string{"app": "web"}, Owner: &report.Owner{Kind: "Deployment", Name: "web"}},
		Syscalls: map[string][]string{"x86_64": calls},
	})
	return r
}

// runCtx runs the CLI with ctx (a Ctrl-C is its cancellation).
func runCtx(ctx context.Context, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(ctx, args, streams{in: strings.NewReader(""), out: &out, err: &errb})
	return code, out.String(), errb.String()
}

// TestDiscoverCluster: the CLI on a real API server with simulated
// kubelets: a complete run exits 0 with one union report that recommend
// turns into one policy; a node that never starts exits 6 and is named
// (0 with --allow-partial); --list-runs and --collect read a run started
// earlier; a Ctrl-C before anything could be collected exits 130; flags
// of the node-local discover are refused.
func TestDiscoverCluster(t *testing.T) {
	c := newSimCluster(t)
	dir := t.TempDir()
	kc := "--kubeconfig=" + c.kubeconfig
	c.recorders(t, "rec-ok", map[string]*sim.Node{
		"n1": {Report: webReport("web-n1", "read")}, "n2": {Report: webReport("web-n2", "write")}})
	out := filepath.Join(dir, "r.json")
	code, _, errs := runCLI(t, "discover", "--cluster", "--duration", "2s", "-n", "shop", kc, "--recorder-namespace", "rec-ok", "-o", out)
	if code != exitOK || !strings.Contains(errs, "1 workloads from 2 of 2 nodes") {
		t.Fatalf("complete run: exit %d, stderr:\n%s", code, errs)
	}
	code, _, errs = runCLI(t, "recommend", "--from", out, "-o", filepath.Join(dir, "policies"))
	if _, err := os.Stat(filepath.Join(dir, "policies", "shop", "web.yaml")); code != exitOK || err != nil {
		t.Errorf("recommend --from the union: exit %d, %v: %s", code, err, errs)
	}

	c.recorders(t, "rec-partial", map[string]*sim.Node{
		"n1": {Report: webReport("web-n1", "read")}, "n2": {Report: webReport("web-n2", "write")}, "n3": {NeverStarts: true}})
	for _, allow := range []bool{false, true} {
		args := []string{"discover", "--cluster", "--duration", "2s", kc, "--recorder-namespace", "rec-partial", "-o", out}
		want := exitPartial
		if allow {
			args, want = append(args, "--allow-partial"), exitOK
		}
		code, _, errs = runCLI(t, args...)
		if code != want || !strings.Contains(errs, "node n3: not-started") {
			t.Errorf("a node that never starts, --allow-partial %v: exit %d (want %d), stderr:\n%s", allow, code, want, errs)
		}
		if r, err := report.ReadFile(out); err != nil || len(r.Nodes) != 3 || r.Nodes[2].State != report.NodeNotStarted {
			t.Errorf("partial report: %v, %+v", err, r)
		}
	}

	c.recorders(t, "rec-later", map[string]*sim.Node{"n1": {Report: webReport("web-n1", "read"), RecordFor: time.Second}})
	o := &cluster.Options{RecorderNamespace: "rec-later", Duration: time.Hour, ProfileName: "p.json"}
	o.Defaults(c.srv.Client)
	if err := cluster.Start(context.Background(), c.srv.Client, o, &cluster.Plan{Run: "earlier", Nodes: []string{"n1"}}, nil); err != nil {
		t.Fatal(err)
	}
	code, stdout, errs := runCLI(t, "discover", "--list-runs", kc, "--recorder-namespace", "rec-later")
	if code != exitOK || !strings.Contains(stdout, "earlier") {
		t.Errorf("--list-runs: exit %d, stdout %q, stderr %s", code, stdout, errs)
	}
	code, _, errs = runCLI(t, "discover", "--collect", "earlier", kc, "--recorder-namespace", "rec-later", "-o", out)
	if r, err := report.ReadFile(out); code != exitOK || err != nil || r.Run != "earlier" || len(r.Workloads) != 1 {
		t.Errorf("--collect earlier: exit %d, stderr %s, report %v %+v", code, errs, err, r)
	}
	code, _, errs = runCLI(t, "discover", "--collect", "earlier", kc, "--recorder-namespace", "rec-later", "-o", out)
	if code != exitUsage || !strings.Contains(errs, "no recorder jobs of run earlier") {
		t.Errorf("--collect of a run cleaned up: exit %d, stderr %s", code, errs)
	}

	c.recorders(t, "rec-int", map[string]*sim.Node{"n1": {NoPod: true}, "n2": {NoPod: true}})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(time.Second, cancel)
	code, _, errs = runCtx(ctx, "discover", "--cluster", "--duration", "1h", "-n", "shop", kc, "--recorder-namespace", "rec-int", "-o", out)
	if code != 130 || !strings.Contains(errs, "interrupted before any node's report") {
		t.Errorf("Ctrl-C with nothing collected: exit %d, stderr:\n%s", code, errs)
	}

	for _, args := range [][]string{
		{"discover", "--cluster", "--all", kc},
		{"discover", "--cluster", "--duration", "0", kc},
		{"discover", "--node", "a", "--node", "b", "--duration", "1s"},
	} {
		if code, _, errs := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, code, exitUsage, errs)
		}
	}
}
