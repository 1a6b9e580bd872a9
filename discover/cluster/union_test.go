package cluster_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/discover/cluster"
)

// TestUnion: replicas of one owner and container become one workload
// (labels those all share, contributors listed); a second container, a
// second owner and a bare pod stay apart; call sets are unions.
func TestUnion(t *testing.T) {
	pod := func(name, owner, container string, labels map[string]string, calls ...string) report.Workload {
		id := report.Identity{Kind: report.KindPod, Namespace: "shop", Pod: name, Container: container, Labels: labels, ContainerID: "id-" + name}
		if owner != "" {
			id.Owner = &report.Owner{Kind: "Deployment", Name: owner}
		}
		return report.Workload{Identity: id, Syscalls: map[string][]string{"x86_64": calls}}
	}
	n1, n2 := report.New(), report.New()
	n1.Workloads = []report.Workload{
		pod("web-1", "web", "app", map[string]string{"app": "web", "pod-template-hash": "a"}, "read", "write"),
		pod("web-1", "web", "sidecar", nil, "poll"),
		pod("api-1", "api", "app", nil, "bind"),
		pod("lonely", "", "app", map[string]string{"x": "y"}, "open"),
	}
	n2.Workloads = []report.Workload{
		pod("web-2", "web", "app", map[string]string{"app": "web", "pod-template-hash": "b"}, "read", "openat"),
		pod("web-3", "web", "app", map[string]string{"app": "web", "pod-template-hash": "b"}, "close"),
	}
	u := cluster.NewUnion("r")
	u.Add("n1", n1)
	u.Add("n2", n2)
	r := u.Report(nil)
	if u.Len() != 4 || len(r.Workloads) != 4 {
		t.Fatalf("%d workloads, want 4 (web/app, web/sidecar, api/app, lonely)", len(r.Workloads))
	}
	var web *report.Workload
	for i, w := range r.Workloads {
		if w.Identity.Owner != nil && w.Identity.Owner.Name == "web" && w.Identity.Container == "app" {
			web = &r.Workloads[i]
		}
		if w.Identity.Pod == "lonely" && (len(w.Pods) != 1 || w.Identity.ContainerID == "") {
			t.Errorf("bare pod: %+v, want itself, pods [lonely]", w)
		}
	}
	if web == nil {
		t.Fatal("no web/app workload")
	}
	if got := strings.Join(web.Syscalls["x86_64"], ","); got != "close,openat,read,write" {
		t.Errorf("web/app calls %s", got)
	}
	if !slices.Equal(web.Pods, []string{"web-1", "web-2", "web-3"}) || !slices.Equal(web.Nodes, []string{"n1", "n2"}) {
		t.Errorf("web/app pods %v nodes %v", web.Pods, web.Nodes)
	}
	if len(web.Identity.Labels) != 1 || web.Identity.Labels["app"] != "web" || web.Identity.Pod != "" || web.Identity.ContainerID != "" {
		t.Errorf("web/app identity %+v: want only the shared label app=web, no pod or container id", web.Identity)
	}
	if u.Calls() != 4+1+1+1 {
		t.Errorf("calls %d, want 7", u.Calls())
	}
	// The same input in another order gives the same bytes.
	v := cluster.NewUnion("r")
	v.Add("n2", n2)
	v.Add("n1", n1)
	a, _ := r.Marshal()
	b, _ := v.Report(nil).Marshal()
	if string(a) != string(b) {
		t.Errorf("the union depends on the order of the nodes:\n%s\n%s", a, b)
	}
}

// TestUnionArgs: the recorded arguments of the replicas are unioned too
// (the cluster report lost them, so recommend wrote no conditions from a
// cluster recording); a replica that made a call without recorded
// arguments makes the union's "any arguments" for it.
func TestUnionArgs(t *testing.T) {
	pod := func(name string, calls []string, args map[string]report.CallArgs) report.Workload {
		return report.Workload{Identity: report.Identity{Kind: report.KindPod, Namespace: "shop", Pod: name, Container: "app",
			Owner: &report.Owner{Kind: "Deployment", Name: "web"}},
			Syscalls: map[string][]string{"x86_64": calls}, Args: map[string]map[string]report.CallArgs{"x86_64": args}}
	}
	n1, n2, n3 := report.New(), report.New(), report.New()
	n1.Workloads = []report.Workload{pod("web-1", []string{"clone", "socket"}, map[string]report.CallArgs{"clone": {}, "socket": {Families: []string{"AF_INET"}}})}
	n2.Workloads = []report.Workload{pod("web-2", []string{"socket", "prctl"}, map[string]report.CallArgs{"socket": {Families: []string{"AF_UNIX"}}, "prctl": {Options: []string{"PR_SET_NAME"}}})}
	u := cluster.NewUnion("r")
	u.Add("n1", n1)
	u.Add("n2", n2)
	r := u.Report(nil)
	if len(r.Workloads) != 1 {
		t.Fatalf("%d workloads, want 1", len(r.Workloads))
	}
	args := r.Workloads[0].Args["x86_64"]
	if fam := args["socket"].Families; !slices.Equal(fam, []string{"AF_INET", "AF_UNIX"}) {
		t.Errorf("socket families %v, want both replicas'", fam)
	}
	if _, ok := args["clone"]; !ok || !slices.Equal(args["prctl"].Options, []string{"PR_SET_NAME"}) {
		t.Errorf("args %+v: clone (no namespaces) or prctl lost", args)
	}
	// A third replica made socket with its arguments unrecorded.
	n3.Workloads = []report.Workload{pod("web-3", []string{"socket"}, nil)}
	u.Add("n3", n3)
	if _, ok := u.Report(nil).Workloads[0].Args["x86_64"]["socket"]; ok {
		t.Error("socket keeps conditions though one replica's arguments were not recorded")
	}
}
