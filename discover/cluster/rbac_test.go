package cluster_test

import (
	"context"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubearmor/kscmp/discover/cluster"
	"github.com/kubearmor/kscmp/discover/cluster/sim"
	"github.com/kubearmor/kscmp/internal/apitest"
)

// TestRBAC: a user with only the shipped bindings (group kscmp-discover)
// can plan, start, stop, collect and clean up a run; the recorders'
// ServiceAccount can read pods and do nothing else.
func TestRBAC(t *testing.T) {
	srv := apitest.Start(t)
	admin := srv.Client
	srv.CreateNamespace(t, "kscmp-system")
	srv.CreateNamespace(t, "shop")
	e := &env{srv: srv, cs: admin}
	e.node(t, "n1", corev1.ConditionTrue)
	e.node(t, "n2", corev1.ConditionTrue)
	e.pod(t, "shop", "web-a", "n1", map[string]string{"app": "web"})
	e.pod(t, "shop", "web-b", "n2", map[string]string{"app": "web"})
	srv.ApplyRBAC(t, "deploy/manifests/recorder/rbac.yaml")

	user, err := kubernetes.NewForConfig(srv.UserConfig(t, "alice", "kscmp-discover"))
	if err != nil {
		t.Fatal(err)
	}
	// The kubelets act as the admin; the CLI as alice.
	k := simulate(t, admin, "kscmp-system", map[string]*sim.Node{
		"n1": {Report: nodeReport("web-a", "read")},
		"n2": {Report: nodeReport("web-b", "write")},
	})
	o := &cluster.Options{Namespace: "shop", Selector: "app=web", Duration: time.Hour, Interval: time.Second, ProfileName: profile, Logs: k}
	if err := o.Defaults(user); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o.Progress = func(s cluster.Status) {
		if s.Phases[cluster.PhaseRecording] == 2 {
			cancel()
		}
	}
	plan, err := cluster.MakePlan(ctx, user, o, "rbac")
	if err != nil {
		t.Fatalf("plan as alice: %v", err)
	}
	res, err := cluster.Run(ctx, user, o, plan)
	if err != nil {
		t.Fatalf("run as alice: %v", err)
	}
	if !res.Stopped || !res.Complete() || len(k.Stopped()) != 2 {
		t.Errorf("as alice: stopped %v, coverage %+v, annotated %v: want stopped, complete, both annotated", res.Stopped, res.Report.Nodes, k.Stopped())
	}
	if jobs, _ := admin.BatchV1().Jobs("kscmp-system").List(context.Background(), metav1.ListOptions{}); len(jobs.Items) != 0 {
		t.Errorf("as alice: %d Jobs left after the run", len(jobs.Items))
	}
	if _, err := cluster.ListRuns(context.Background(), user, "kscmp-system"); err != nil {
		t.Errorf("list runs as alice: %v", err)
	}

	sa := "system:serviceaccount:kscmp-system:kscmp-recorder"
	for _, c := range []struct {
		user, verb, resource, sub, ns string
		allowed                       bool
	}{
		{sa, "list", "pods", "", "", true},
		{sa, "watch", "pods", "", "", true},
		{sa, "get", "pods", "", "kscmp-system", true},
		{sa, "patch", "pods", "", "kscmp-system", false},
		{sa, "get", "pods", "log", "kscmp-system", false},
		{sa, "create", "configmaps", "", "kscmp-system", false},
		{sa, "get", "secrets", "", "kscmp-system", false},
		{sa, "list", "nodes", "", "", false},
		{sa, "create", "events", "", "kscmp-system", false},
		{"alice", "get", "pods", "log", "kscmp-system", true},
		{"alice", "get", "pods", "log", "shop", false},
		{"alice", "create", "jobs", "", "shop", false},
		{"alice", "patch", "pods", "", "shop", false},
		{"alice", "get", "secrets", "", "kscmp-system", false},
		{"alice", "list", "nodes", "", "", true},
	} {
		groups := []string{"kscmp-discover"}
		if strings.HasPrefix(c.user, "system:serviceaccount:") {
			groups = []string{"system:serviceaccounts", "system:serviceaccounts:kscmp-system"}
		}
		group := ""
		if c.resource == "jobs" {
			group = "batch"
		}
		r, err := admin.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: c.user, Groups: groups,
			ResourceAttributes: &authzv1.ResourceAttributes{Namespace: c.ns, Verb: c.verb, Group: group, Resource: c.resource, Subresource: c.sub},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status.Allowed != c.allowed {
			t.Errorf("%s %s %s/%s in %q: allowed %v, want %v", c.user, c.verb, c.resource, c.sub, c.ns, r.Status.Allowed, c.allowed)
		}
	}
}
