package cluster_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/discover/cluster"
	"github.com/kubearmor/kscmp/discover/cluster/sim"
	"github.com/kubearmor/kscmp/internal/apitest"
	"github.com/kubearmor/kscmp/recommend"
)

const profile = "kscmp/recorder-0123456789ab.json"

// env is one API server shared by the subtests; each subtest records in a
// recorder namespace of its own.
type env struct {
	srv *apitest.Server
	cs  kubernetes.Interface
}

func newEnv(t *testing.T) *env {
	srv := apitest.Start(t)
	e := &env{srv: srv, cs: srv.Client}
	for _, n := range []struct {
		name  string
		ready corev1.ConditionStatus
	}{{"n1", corev1.ConditionTrue}, {"n2", corev1.ConditionTrue}, {"n3", corev1.ConditionTrue}, {"n4", corev1.ConditionTrue}, {"n5", corev1.ConditionFalse}} {
		e.node(t, n.name, n.ready)
	}
	srv.CreateNamespace(t, "shop")
	srv.CreateNamespace(t, "other")
	e.pod(t, "shop", "web-a", "n1", map[string]string{"app": "web"})
	e.pod(t, "shop", "web-b", "n2", map[string]string{"app": "web"})
	e.pod(t, "other", "db-0", "n3", map[string]string{"app": "db"})
	e.pod(t, "other", "web-c", "n5", map[string]string{"app": "web"})
	return e
}

func (e *env) node(t *testing.T, name string, ready corev1.ConditionStatus) {
	ctx := context.Background()
	n, err := e.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}
	if _, err := e.cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) pod(t *testing.T, ns, name, node string, labels map[string]string) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}}
	if _, err := e.cs.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// recorderNS creates a recorder namespace with the recorders' ServiceAccount.
func (e *env) recorderNS(t *testing.T, name string) {
	e.srv.CreateNamespace(t, name)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: cluster.ServiceAccount, Namespace: name}}
	if _, err := e.cs.CoreV1().ServiceAccounts(name).Create(context.Background(), sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func opts(ns string, d time.Duration) *cluster.Options {
	return &cluster.Options{RecorderNamespace: ns, Duration: d, Interval: time.Second, ProfileName: profile, Keep: 90 * time.Second}
}

// nodeReport is a recorder's report: pod of Deployment web in shop, with
// the calls given.
func nodeReport(pod string, calls ...string) *report.Report {
	r := report.New()
	r.Kernel, r.Arch = "6.8.0", "x86_64"
	r.Start = time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	r.End = r.Start.Add(time.Minute)
	r.Workloads = append(r.Workloads, report.Workload{
		Identity: report.Identity{Kind: report.KindPod, Namespace: "shop", Pod: pod, PodUID: "uid-" + pod, Container: "app",
			Labels: map[string]string{"app": "web", "pod-template-hash": "abc"}, Owner: &report.Owner{Kind: "Deployment", Name: "web"},
			ContainerID: strings.Repeat("a", 64), Runtime: "containerd"},
		Syscalls:  map[string][]string{"x86_64": calls},
		FirstSeen: r.Start, LastSeen: r.End,
	})
	return r
}

func TestCluster(t *testing.T) {
	e := newEnv(t)
	t.Run("Plan", e.testPlan)
	t.Run("Jobs", e.testJobs)
	t.Run("Union", e.testUnion)
	t.Run("Stop", e.testStop)
	t.Run("Coverage", e.testCoverage)
}

// testPlan: the selected pods' nodes; all Ready nodes when nothing is
// selected; --node restricts; an active run refuses a second one.
func (e *env) testPlan(t *testing.T) {
	ctx := context.Background()
	e.recorderNS(t, "rec-plan")
	for _, c := range []struct {
		ns, sel string
		nodes   []string
		want    []string
	}{
		{"shop", "", nil, []string{"n1", "n2"}},
		{"", "app=web", nil, []string{"n1", "n2", "n5"}},
		{"", "", nil, []string{"n1", "n2", "n3", "n4"}},
		{"", "", []string{"n3", "n2"}, []string{"n2", "n3"}},
		{"shop", "", []string{"n2", "n3"}, []string{"n2"}},
	} {
		o := opts("rec-plan", time.Minute)
		o.Namespace, o.Selector, o.Nodes = c.ns, c.sel, c.nodes
		if err := o.Defaults(e.cs); err != nil {
			t.Fatal(err)
		}
		p, err := cluster.MakePlan(ctx, e.cs, o, "r1")
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if !slices.Equal(p.Nodes, c.want) {
			t.Errorf("namespace %q selector %q nodes %v: plan %v, want %v", c.ns, c.sel, c.nodes, p.Nodes, c.want)
		}
	}
	o := opts("rec-plan", time.Minute)
	o.Defaults(e.cs)
	o.Nodes = []string{"nope"}
	if _, err := cluster.MakePlan(ctx, e.cs, o, "r1"); !errors.Is(err, cluster.ErrInvalid) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("--node nope: %v, want ErrInvalid naming it", err)
	}
	o.Nodes, o.Namespace = nil, "empty"
	if _, err := cluster.MakePlan(ctx, e.cs, o, "r1"); !errors.Is(err, cluster.ErrNoNodes) {
		t.Errorf("a namespace without pods: %v, want ErrNoNodes", err)
	}
	o.Namespace = ""
	if _, err := cluster.MakePlan(ctx, e.cs, o, "Bad_Run"); !errors.Is(err, cluster.ErrInvalid) {
		t.Errorf("run Bad_Run: %v, want ErrInvalid", err)
	}
	// An active run: a Job without a finished condition.
	if err := cluster.Start(ctx, e.cs, o, &cluster.Plan{Run: "busy", Nodes: []string{"n1"}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.MakePlan(ctx, e.cs, o, "r2"); !errors.Is(err, cluster.ErrRunActive) || !strings.Contains(err.Error(), "busy") {
		t.Errorf("with run busy active: %v, want ErrRunActive naming busy", err)
	}
	o.Force = true
	if _, err := cluster.MakePlan(ctx, e.cs, o, "r2"); err != nil {
		t.Errorf("--force with run busy active: %v", err)
	}
	runs, err := cluster.ListRuns(ctx, e.cs, "rec-plan")
	if err != nil || len(runs) != 1 || runs[0].Name != "busy" || runs[0].Active != 1 || runs[0].Nodes != 1 {
		t.Errorf("ListRuns: %+v, %v; want busy with 1 active Job", runs, err)
	}
}

// testJobs: the Jobs are what the contract with the recorder says.
func (e *env) testJobs(t *testing.T) {
	ctx := context.Background()
	e.recorderNS(t, "rec-jobs")
	o := opts("rec-jobs", 10*time.Minute)
	o.Namespace, o.Selector, o.KubeletRoot, o.Image = "shop", "app=web", "/data/kubelet", "reg/kscmp:v1"
	if err := o.Defaults(e.cs); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Start(ctx, e.cs, o, &cluster.Plan{Run: "jobs", Nodes: []string{"n1", "n2"}}, nil); err != nil {
		t.Fatal(err)
	}
	jobs, err := e.cs.BatchV1().Jobs("rec-jobs").List(ctx, metav1.ListOptions{LabelSelector: "kscmp.io/run=jobs"})
	if err != nil || len(jobs.Items) != 2 {
		t.Fatalf("jobs of run: %d, %v; want 2", len(jobs.Items), err)
	}
	for _, j := range jobs.Items {
		checkJob(t, &j, o)
	}
}

func checkJob(t *testing.T, j *batchv1.Job, o *cluster.Options) {
	t.Helper()
	node := j.Annotations[cluster.AnnotationNode]
	s := j.Spec.Template.Spec
	want := func(what string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("job %s: %s = %v, want %v", j.Name, what, got, want)
		}
	}
	want("name", j.Name, cluster.JobName("jobs", node))
	want("label app", j.Labels[cluster.LabelApp], "kscmp-recorder")
	want("pod label run", j.Spec.Template.Labels[cluster.LabelRun], "jobs")
	want("backoffLimit", *j.Spec.BackoffLimit, int32(0))
	want("activeDeadlineSeconds", *j.Spec.ActiveDeadlineSeconds, int64(600+300))
	want("ttlSecondsAfterFinished", *j.Spec.TTLSecondsAfterFinished, int32(90))
	want("nodeName", s.NodeName, node)
	want("restartPolicy", s.RestartPolicy, corev1.RestartPolicyNever)
	want("serviceAccountName", s.ServiceAccountName, "kscmp-recorder")
	want("hostPID", s.HostPID, false)
	want("privileged anywhere", strings.Contains(j.String(), "Privileged:*true"), false)
	want("tolerations", len(s.Tolerations) == 1 && s.Tolerations[0].Operator == corev1.TolerationOpExists && s.Tolerations[0].Key == "", true)
	want("volumes", len(s.Volumes), 1)
	want("seccomp hostPath", s.Volumes[0].HostPath.Path, "/data/kubelet/seccomp")
	init, rec := s.InitContainers[0], s.Containers[0]
	want("init args", strings.Join(init.Args, " "), "discover --recorder-profile /seccomp")
	want("init image", init.Image, "reg/kscmp:v1")
	want("init seccomp", init.SecurityContext.SeccompProfile.Type, corev1.SeccompProfileTypeRuntimeDefault)
	want("recorder args", strings.Join(rec.Args, " "), "discover --node-recorder --run jobs --duration 10m0s --interval 1s --namespace shop --selector app=web")
	want("recorder seccomp", rec.SecurityContext.SeccompProfile.Type, corev1.SeccompProfileTypeLocalhost)
	want("recorder profile", *rec.SecurityContext.SeccompProfile.LocalhostProfile, profile)
	want("recorder mounts", len(rec.VolumeMounts), 0)
	want("recorder caps add", strings.Join(capNames(rec.SecurityContext.Capabilities.Add), ","), "BPF,PERFMON")
	want("termination message policy", rec.TerminationMessagePolicy, corev1.TerminationMessageFallbackToLogsOnError)
	want("memory limit", rec.Resources.Limits.Memory().String(), "512Mi")
	want("cpu request", rec.Resources.Requests.Cpu().String(), "50m")
	for _, c := range []corev1.Container{init, rec} {
		sc := c.SecurityContext
		want(c.Name+" caps drop", strings.Join(capNames(sc.Capabilities.Drop), ","), "ALL")
		want(c.Name+" runAsUser", *sc.RunAsUser, int64(0))
		want(c.Name+" readOnlyRootFilesystem", *sc.ReadOnlyRootFilesystem, true)
		want(c.Name+" allowPrivilegeEscalation", *sc.AllowPrivilegeEscalation, false)
	}
	env := map[string]string{}
	for _, v := range rec.Env {
		env[v.Name] = v.ValueFrom.FieldRef.FieldPath
	}
	want("env", len(env) == 3 && env["NODE_NAME"] == "spec.nodeName" && env["POD_NAME"] == "metadata.name" && env["POD_NAMESPACE"] == "metadata.namespace", true)
}

func capNames(cs []corev1.Capability) []string {
	var out []string
	for _, c := range cs {
		out = append(out, string(c))
	}
	return out
}

// simulate runs the simulated kubelets of ns until the test ends.
func simulate(t *testing.T, cs kubernetes.Interface, ns string, nodes map[string]*sim.Node) *sim.Kubelets {
	k := &sim.Kubelets{Client: cs, Namespace: ns, Nodes: nodes}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sim: %v", err)
		}
	})
	return k
}

// run plans and runs with the simulated kubelets as the log source.
func (e *env) run(t *testing.T, ctx context.Context, o *cluster.Options, k *sim.Kubelets, run string) *cluster.Result {
	t.Helper()
	o.Logs = k
	if err := o.Defaults(e.cs); err != nil {
		t.Fatal(err)
	}
	plan, err := cluster.MakePlan(context.Background(), e.cs, o, run)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cluster.Run(ctx, e.cs, o, plan)
	if err != nil {
		t.Fatalf("run %s: %v", run, err)
	}
	jobs, err := e.cs.BatchV1().Jobs(o.RecorderNamespace).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(jobs.Items) != 0 {
		t.Errorf("after run %s: %d jobs left (%v), want all deleted", run, len(jobs.Items), err)
	}
	return res
}

// testUnion: two nodes' streams of one Deployment's replicas become one
// workload with both pods and nodes, and kscmp recommend makes one
// policy for it from the union report as it is.
func (e *env) testUnion(t *testing.T) {
	e.recorderNS(t, "rec-union")
	k := simulate(t, e.cs, "rec-union", map[string]*sim.Node{
		"n1": {Report: nodeReport("web-a", "read", "write")},
		"n2": {Report: nodeReport("web-b", "read", "openat")},
	})
	o := opts("rec-union", 2*time.Second)
	o.Namespace = "shop"
	var statuses []cluster.Status
	o.Progress = func(s cluster.Status) { statuses = append(statuses, s) }
	res := e.run(t, context.Background(), o, k, "union")
	r := res.Report
	if !res.Complete() || res.Stopped {
		t.Errorf("coverage %+v stopped %v: want complete", r.Nodes, res.Stopped)
	}
	if len(r.Workloads) != 1 {
		t.Fatalf("%d workloads, want 1: %+v", len(r.Workloads), r.Workloads)
	}
	w := r.Workloads[0]
	if got := strings.Join(w.Syscalls["x86_64"], ","); got != "openat,read,write" {
		t.Errorf("union calls %s, want openat,read,write", got)
	}
	if !slices.Equal(w.Pods, []string{"web-a", "web-b"}) || !slices.Equal(w.Nodes, []string{"n1", "n2"}) {
		t.Errorf("pods %v nodes %v, want web-a web-b on n1 n2", w.Pods, w.Nodes)
	}
	if w.Identity.Pod != "" || w.Identity.ContainerID != "" || w.Identity.Owner.Name != "web" {
		t.Errorf("identity %+v: want no pod or container id, owner web", w.Identity)
	}
	if r.Run != "union" || r.Kernel != "6.8.0" || len(r.Nodes) != 2 || r.Nodes[0].Pod == "" || r.Nodes[0].Workloads != 1 {
		t.Errorf("report run %q kernel %q nodes %+v", r.Run, r.Kernel, r.Nodes)
	}
	seen := map[string]bool{}
	for _, s := range statuses {
		for p := range s.Phases {
			seen[p] = true
		}
	}
	if !seen[cluster.PhaseRecording] || !seen[cluster.PhaseDone] {
		t.Errorf("progress phases seen %v: want recording and done", seen)
	}
	// The union report goes to recommend unchanged, through its file form.
	data, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := report.Read(strings.NewReader(string(data)), "union.json")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := recommend.Recommend([]report.Source{{Name: "union.json", Report: back}}, recommend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Files) != 1 || rec.Files[0].Path != "shop/web.yaml" {
		t.Fatalf("recommend: files %v skipped %v, want one policy shop/web.yaml", paths(rec.Files), rec.Skipped)
	}
	for _, c := range []string{"openat", "read", "write"} {
		if !strings.Contains(string(rec.Files[0].Data), c) {
			t.Errorf("policy has no %s:\n%s", c, rec.Files[0].Data)
		}
	}
}

func paths(fs []recommend.File) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Path)
	}
	return out
}

// testStop: a cancelled context (Ctrl-C) annotates every recorder pod
// kscmp.io/stop, still collects what they then write, and deletes the
// Jobs.
func (e *env) testStop(t *testing.T) {
	e.recorderNS(t, "rec-stop")
	k := simulate(t, e.cs, "rec-stop", map[string]*sim.Node{
		"n1": {Report: nodeReport("web-a", "read")},
		"n2": {Report: nodeReport("web-b", "write")},
	})
	o := opts("rec-stop", time.Hour)
	o.Namespace = "shop"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o.Progress = func(s cluster.Status) {
		if s.Phases[cluster.PhaseRecording] == 2 {
			cancel()
		}
	}
	res := e.run(t, ctx, o, k, "stop")
	if !res.Stopped || !res.Complete() {
		t.Errorf("stopped %v coverage %+v: want stopped and complete", res.Stopped, res.Report.Nodes)
	}
	if got := k.Stopped(); len(got) != 2 {
		t.Errorf("pods annotated kscmp.io/stop: %v, want both", got)
	}
	if len(res.Report.Workloads) != 1 || len(res.Report.Workloads[0].Pods) != 2 {
		t.Errorf("workloads %+v: want one of both pods", res.Report.Workloads)
	}
}

// testCoverage: a node whose pod never starts, one whose pod was never
// created, one whose recorder failed and one whose log was cut are named
// in the report's coverage with their state and why; the others'
// workloads are still collected.
func (e *env) testCoverage(t *testing.T) {
	e.recorderNS(t, "rec-cov")
	cut := nodeReport("x", "read")
	k := simulate(t, e.cs, "rec-cov", map[string]*sim.Node{
		"n1": {Report: nodeReport("web-a", "read")},
		"n2": {Report: cut, Cut: 300},
		"n3": {NeverStarts: true},
		"n4": {Report: nodeReport("web-c", "write"), Fail: "BPF: operation not permitted"},
	})
	o := opts("rec-cov", 2*time.Second)
	o.StartTimeout = time.Second
	res := e.run(t, context.Background(), o, k, "cov")
	if res.Complete() {
		t.Errorf("coverage complete, want partial: %+v", res.Report.Nodes)
	}
	want := map[string]string{"n1": report.NodeCollected, "n2": report.NodeIncomplete, "n3": report.NodeNotStarted, "n4": report.NodeFailed}
	for _, n := range res.Report.Nodes {
		if n.State != want[n.Name] {
			t.Errorf("node %s: state %s (%s), want %s", n.Name, n.State, n.Error, want[n.Name])
		}
		if n.State != report.NodeCollected && n.Error == "" {
			t.Errorf("node %s: state %s without an error", n.Name, n.State)
		}
	}
	if len(res.Report.Nodes) != 4 {
		t.Fatalf("nodes %+v: want n1 to n4 (n5 is not Ready)", res.Report.Nodes)
	}
	if !strings.Contains(res.Report.Nodes[3].Error, "BPF: operation not permitted") {
		t.Errorf("failed recorder: error %q, want its termination message", res.Report.Nodes[3].Error)
	}
	if !strings.Contains(res.Report.Nodes[1].Error, "no complete report") {
		t.Errorf("cut log: error %q, want the stream's ErrStreamIncomplete", res.Report.Nodes[1].Error)
	}
	// n4's recorder failed after writing a complete report: its
	// workloads are kept, its node is still named failed.
	if len(res.Report.Workloads) != 1 || !slices.Equal(res.Report.Workloads[0].Pods, []string{"web-a", "web-c"}) {
		t.Errorf("workloads %+v: want n1's and n4's", res.Report.Workloads)
	}
}
