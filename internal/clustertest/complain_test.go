package clustertest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubearmor/kscmp/api/violation"
)

// complainNS is the opted-in namespace of testComplain.
const complainNS = "complain"

// complainPolicy is workload's policy in complainNS without its Block rule,
// with the default action given: Audit (complain mode: what it does not
// allow, mkdir among it, runs and is logged) or Block (enforce).
func complainPolicy(defaultAction string) string {
	p := policyYAML(complainNS, `{kscmp.kubearmor.com/enforce: "true"}`, true)
	p = p[:strings.Index(p, "      - action: Block")]
	return strings.Replace(p, "  seccomp:\n    rules:\n", "  seccomp:\n    defaultAction: "+defaultAction+"\n    rules:\n", 1)
}

// testComplain: issue #16's proof on the real cluster. A Deployment under a
// complain-mode policy (defaultAction: Audit) runs mkdir, which its
// allow-list lacks, successfully; the agent of its node names the call in
// an Event on the pod, in its /metrics (on the node's IP, port 9476) and,
// through its node status and the aggregator, in the policy's
// status.violations. Then the policy is switched to enforce: the agent
// (--restart-workloads) rolls the Deployment and the new pod's mkdir fails
// with EPERM, which the agent names in a SeccompBlock Event and its
// metrics (runc's refusals through --exit-errors). The five complain-mode
// mkdirs are each a process that exits at once: every one must be counted
// under the pod (the agent's --attribute-exited). The cluster's agents sum
// violations every 5 s (hack/cluster.sh: --violation-interval).
func testComplain(t *testing.T, c *Cluster) {
	start := time.Now()
	dir := filepath.Join(c.Dir, "test")
	// Idempotent: Enforce applied them already when it ran.
	c.MustKubectl(t, time.Minute, "apply", "-k", filepath.Join(c.Dir, "manifests"))
	c.MustKubectl(t, 2*time.Minute, "-n", "kscmp-system", "rollout", "status", "daemonset/kscmp-agent", "--timeout", "2m")
	c.MustKubectl(t, 2*time.Minute, "-n", "kscmp-system", "rollout", "status", "deployment/kscmp-webhook", "--timeout", "2m")
	profile := "kubearmor/" + complainNS + "/busybox-demo.json"
	// Gone, its profile file too, before the next subtest (Faults compares
	// the kubelet directory's files before and after each fault).
	defer func() {
		c.MustKubectl(t, 2*time.Minute, "delete", "namespace", complainNS, "--wait", "--timeout", "2m")
		waitGone(t, filepath.Join(c.KubeletSeccompDir(), profile))
	}()

	apply := func(name, body string) {
		f := filepath.Join(dir, name)
		write(t, f, body)
		c.MustKubectl(t, time.Minute, "apply", "-f", f)
	}
	apply("complain.yaml", complainPolicy("Audit"))
	waitBoundIn(t, c, complainNS, "busybox-demo", profile)
	apply("complain-deployment.yaml", strings.ReplaceAll(deployment, "{{NS}}", complainNS))
	c.MustKubectl(t, 2*time.Minute, "-n", complainNS, "rollout", "status", "deployment/busybox-demo", "--timeout", "2m")
	pod := onePod(t, c, complainNS, "app=busybox-demo")
	if got := localhostProfile(pod); got != profile {
		t.Fatalf("pod %s: Localhost profile %q, want %q", pod.Name, got, profile)
	}
	out, err := c.KubectlOutput(time.Minute, "-n", complainNS, "exec", pod.Name, "--", "sh", "-c", "mkdir /tmp/made && echo made")
	if err != nil || !strings.Contains(string(out), "made") {
		t.Fatalf("pod %s: mkdir in complain mode: %v %q, want it made", pod.Name, err, out)
	}
	// Each mkdir above and here is a process of its own that exits at
	// once, gone (reaped) before the agent reads its audit record: the
	// agent names it from where its eBPF program saw it exit
	// (--attribute-exited, on by default). Every one must be counted
	// under the pod, none unattributed.
	const made = 5
	for i := 2; i <= made; i++ {
		if out, err := c.KubectlOutput(time.Minute, "-n", complainNS, "exec", pod.Name, "--", "mkdir", fmt.Sprintf("/tmp/made-%d", i)); err != nil {
			t.Fatalf("pod %s: mkdir %d in complain mode: %v %q", pod.Name, i, err, out)
		}
	}

	// The three places people look, all naming mkdir, the metrics and the
	// status with all five.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var event, series, status string
	nodeIP := map[string]string{NodeName: NodeIP, Node2Name: Node2IP}[pod.Spec.NodeName]
	wantStatus := fmt.Sprintf(" mkdir/Audit/%d/", made)
	err = wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		if event == "" {
			event = agentEvent(ctx, c, pod.Name, "SeccompAudit", corev1.EventTypeNormal, "mkdir")
		}
		series = metricsLine(ctx, nodeIP, `namespace="`+complainNS+`"`, `syscall="mkdir"`, `action="Audit"`)
		out, err := c.KubectlOutput(time.Minute, "-n", complainNS, "get", "kscmp", "busybox-demo", "-o",
			`jsonpath={range .status.violations[*]}{.syscall}/{.action}/{.count}/{.nodes} {end}`)
		if err == nil {
			status = strings.TrimSpace(string(out))
		}
		return event != "" && strings.HasSuffix(series, fmt.Sprintf("} %d", made)) && strings.Contains(" "+status, wantStatus), nil
	})
	if err != nil {
		t.Fatalf("complain mode's %d mkdirs: Event %q, metrics %q (want a count of %d), policy status.violations %q (want %q): %v; unattributed: %q",
			made, event, series, made, status, wantStatus, err, lostLine(nodeIP))
	}
	t.Logf("Event: %s; metrics: %s; status.violations: %s", event, series, status)

	// The fourth place: the ViolationReport, as a person gets it from a
	// workstation (kscmp violations --cluster, the admin's kubeconfig):
	// every agent's report through the API server's pod proxy, united.
	kscmp := filepath.Join(dir, "complain", "kscmp")
	if err := os.MkdirAll(filepath.Dir(kscmp), 0o755); err != nil {
		t.Fatal(err)
	}
	c.run(t, 5*time.Minute, "go", "build", "-o", kscmp, "./cmd/kscmp")
	audited := clusterViolations(t, c, kscmp, filepath.Join(dir, "complain", "audit.json"))
	if got := violationCount(audited, pod.Name, "mkdir", "Audit"); got != made {
		t.Errorf("kscmp violations --cluster: mkdir Audit under pod %s counted %d times, want %d:\n%+v", pod.Name, got, made, audited.Violations)
	}
	// The agent filters what it sends (the query reaches it through the
	// pod proxy): the pod's node's agent, asked for another namespace,
	// sends nothing.
	gctx, gcancel := context.WithTimeout(context.Background(), time.Minute)
	defer gcancel()
	agentPods, err := c.Client.CoreV1().Pods("kscmp-system").List(gctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/name=kscmp-agent", FieldSelector: "spec.nodeName=" + pod.Spec.NodeName})
	if err != nil || len(agentPods.Items) != 1 {
		t.Fatalf("the agent pod of node %s: %v", pod.Spec.NodeName, err)
	}
	for ns, want := range map[string]uint64{complainNS: made, "elsewhere": 0} {
		body, err := c.Client.CoreV1().Pods("kscmp-system").ProxyGet("http", agentPods.Items[0].Name, "9476", "/violations",
			map[string]string{"namespace": ns}).DoRaw(gctx)
		if err != nil {
			t.Fatalf("GET /violations?namespace=%s of %s: %v", ns, agentPods.Items[0].Name, err)
		}
		r, err := violation.Read(bytes.NewReader(body), "/violations?namespace="+ns)
		if err != nil {
			t.Fatal(err)
		}
		var all uint64
		for _, v := range r.Violations {
			all += v.Count
		}
		if got := violationCount(r, pod.Name, "mkdir", "Audit"); got != want || all != want {
			t.Errorf("GET /violations?namespace=%s of %s: mkdir Audit %d, all %d; want %d", ns, agentPods.Items[0].Name, got, all, want)
		}
	}

	// Enforce: the profile file changes, the agent rolls the Deployment,
	// the new pod runs under the refusing profile.
	apply("complain-enforce.yaml", complainPolicy("Block"))
	rolled := waitRolledIn(t, c, complainNS, pod)
	out, _ = c.KubectlOutput(time.Minute, "-n", complainNS, "exec", rolled.Name, "--", "sh", "-c", "mkdir /tmp/made && echo made")
	if !strings.Contains(string(out), "Operation not permitted") {
		t.Fatalf("rolled pod %s: mkdir under the enforcing profile: %q, want EPERM", rolled.Name, out)
	}

	// The refusal is named too. The cluster runs runc, which cannot log an
	// EPERM refusal to audit: the agents run with --exit-errors
	// (hack/cluster.sh, as the chart's agent.exitErrors), whose eBPF
	// program counts it at sys_exit once the agent watches the new
	// container's cgroup (from its next interval, 5 s here; a refusal
	// before that is not seen, as documented): so mkdir is refused again,
	// from a new process each time, until the Event is there.
	nodeIP = map[string]string{NodeName: NodeIP, Node2Name: Node2IP}[rolled.Spec.NodeName]
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	refused := 1
	event, series = "", ""
	err = wait.PollUntilContextCancel(ctx, 2*time.Second, false, func(ctx context.Context) (bool, error) {
		if event = agentEvent(ctx, c, rolled.Name, "SeccompBlock", corev1.EventTypeWarning, "mkdir"); event == "" {
			refused++
			c.KubectlOutput(time.Minute, "-n", complainNS, "exec", rolled.Name, "--", "mkdir", fmt.Sprintf("/tmp/refused-%d", refused))
		}
		series = metricsLine(ctx, nodeIP, `namespace="`+complainNS+`"`, `syscall="mkdir"`, `action="Block"`)
		return event != "" && series != "", nil
	})
	if err != nil {
		t.Fatalf("enforce mode's refused mkdir (%d made): Event %q, metrics %q: %v", refused, event, series, err)
	}
	t.Logf("refused: Event: %s; metrics: %s (mkdir refused %d times)", event, series, refused)

	// The refusal in the ViolationReport, and back into the loop: kscmp
	// recommend --from it widens the reviewed policy by mkdir, listed as
	// refused in production.
	vfile := filepath.Join(dir, "complain", "refused.json")
	if got := violationCount(clusterViolations(t, c, kscmp, vfile), rolled.Name, "mkdir", "Block"); got == 0 {
		t.Errorf("kscmp violations --cluster: no mkdir Block under the rolled pod %s", rolled.Name)
	}
	policies := filepath.Join(dir, "complain", "policies")
	// The reviewed policy as in a repository: the policy document alone
	// (complainPolicy's YAML starts with its Namespace).
	reviewed := complainPolicy("Block")
	write(t, filepath.Join(policies, complainNS, "busybox-demo.yaml"), reviewed[strings.LastIndex(reviewed, "---\n")+4:])
	summary := filepath.Join(dir, "complain", "summary.md")
	c.run(t, time.Minute, kscmp, "recommend", "--from", vfile, "-o", policies, "--summary", summary)
	widened, _ := os.ReadFile(filepath.Join(policies, complainNS, "busybox-demo.yaml"))
	md, _ := os.ReadFile(summary)
	if !strings.Contains(string(widened), "- mkdir") || !strings.Contains(string(md), "`mkdir`: refused in production") {
		t.Errorf("kscmp recommend --from the cluster's violations: policy\n%s\nsummary\n%s\nwant mkdir added, refused in production", widened, md)
	}
	t.Logf("kscmp recommend --from the cluster's violations: the summary says %q", strings.TrimSpace(string(md)))
	t.Logf("complain → enforce on the cluster: %s", time.Since(start).Round(time.Second))
}

// clusterViolations runs kscmp violations --cluster for complainNS into
// file and returns the report, each of the two nodes' agents collected.
func clusterViolations(t *testing.T, c *Cluster, kscmp, file string) *violation.Report {
	t.Helper()
	c.run(t, time.Minute, kscmp, "violations", "--cluster", "--kubeconfig", c.Kubeconfig, "-n", complainNS, "-o", file)
	r, err := violation.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var collected []string
	for _, n := range r.Nodes {
		if n.Collected {
			collected = append(collected, n.Name)
		}
	}
	if len(collected) != 2 || len(r.Nodes) != 2 {
		t.Errorf("kscmp violations --cluster: nodes %+v, want both collected", r.Nodes)
	}
	var entries []string
	for _, v := range r.Violations {
		entries = append(entries, fmt.Sprintf("%s %s %s %d", v.Identity, v.Syscall, v.Action, v.Count))
	}
	t.Logf("kscmp violations --cluster: from %v: %s", collected, strings.Join(entries, "; "))
	return r
}

// violationCount sums r's entries of pod (in complainNS) with call and
// action.
func violationCount(r *violation.Report, pod, call, action string) uint64 {
	var n uint64
	for _, v := range r.Violations {
		if v.Identity.Namespace == complainNS && v.Identity.Pod == pod && v.Syscall == call && v.Action == action {
			n += v.Count
		}
	}
	return n
}

// agentEvent is the message of the agent's Event of reason and type on pod
// (in complainNS) naming call, "" when there is none yet.
func agentEvent(ctx context.Context, c *Cluster, pod, reason, typ, call string) string {
	evs, err := c.Client.CoreV1().Events(complainNS).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		return ""
	}
	for _, e := range evs.Items {
		if e.Reason == reason && e.Source.Component == "kscmp-agent" && e.Type == typ &&
			strings.Contains(e.Message, " "+call+" ") {
			return e.Message
		}
	}
	return ""
}

// metricsLine is the line of the /metrics of the agent on the node at
// nodeIP counting violations with every one of labels, "" when there is
// none.
func metricsLine(ctx context.Context, nodeIP string, labels ...string) string {
	return metricLine(ctx, nodeIP, "kscmp_agent_violations_total", labels...)
}

// lostLine is the agent's count of unattributed records on the node at
// nodeIP, "" when it has none.
func lostLine(nodeIP string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return metricLine(ctx, nodeIP, "kscmp_agent_audit_lost_total", `reason="unattributed"`)
}

// metricLine is the first line of the metric name on the agent's /metrics
// at nodeIP that has all the labels, "" when there is none.
func metricLine(ctx context.Context, nodeIP, name string, labels ...string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+nodeIP+":9476/metrics", nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(l, name+"{") {
			continue
		}
		all := true
		for _, want := range labels {
			all = all && strings.Contains(l, want)
		}
		if all {
			return l
		}
	}
	return ""
}

// waitGone waits until path does not exist.
func waitGone(t *testing.T, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		_, err := os.Stat(path)
		return os.IsNotExist(err), nil
	})
	if err != nil {
		t.Errorf("%s still there: %v", path, err)
	}
}
