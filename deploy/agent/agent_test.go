package agent

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/merge"
)

func policy(ns, name string, labels map[string]string, containers []string, rules ...api.Rule) *api.KubeArmorSeccompPolicy {
	p := &api.KubeArmorSeccompPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: api.APIVersion, Kind: api.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: api.PolicySpec{Selector: api.Selector{MatchLabels: labels}, Containers: containers,
			Seccomp: api.SeccompSpec{Rules: rules}},
	}
	if errs := api.Validate(p); len(errs) > 0 {
		panic(errs)
	}
	return p
}

func pod(ns, name string, labels map[string]string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
	}
	return p
}

func TestProfileName(t *testing.T) {
	if a, b := ProfileName([]string{"ns/b", "ns/a"}), ProfileName([]string{"ns/a", "ns/b", "ns/a"}); a != b || a != "a+b" {
		t.Errorf("names %q %q: the same set must give the same name", a, b)
	}
	var many []string
	for _, c := range "abcdefghijklmnopqrstuvwxyz" {
		many = append(many, "ns/policy-with-a-long-name-"+string(c))
	}
	n := ProfileName(many)
	if !strings.HasPrefix(n, "merged-") || len(n) != len("merged-")+16 {
		t.Errorf("long set: %q", n)
	}
	if ProfileName(many[1:]) == n {
		t.Error("different sets, same hash name")
	}
}

// TestDesiredAndSync follows a policy's deletion on disk (the profile is a
// function of the current policies, no history): two policies select a
// container; deleting one recomputes the profile under a new name; the old
// file stays while a pod still runs with it, and goes when none does.
func TestDesiredAndSync(t *testing.T) {
	web := map[string]string{"app": "web"}
	k1 := policy("shop", "kscmp1", web, nil, api.Rule{Syscalls: []string{"read", "write", "getpid"}, Action: api.ActionAllow}, api.Rule{Syscalls: []string{"mkdir"}, Action: api.ActionBlock})
	k2 := policy("shop", "kscmp2", web, nil, api.Rule{Syscalls: []string{"read", "mkdir"}, Action: api.ActionAllow}, api.Rule{Syscalls: []string{"write"}, Action: api.ActionDeny})
	sidecar := policy("shop", "sidecar-only", web, []string{"sidecar"}, api.Rule{Syscalls: []string{"nanosleep"}, Action: api.ActionAllow})
	pods := []*corev1.Pod{pod("shop", "web-1", web, "nginx", "sidecar"), pod("shop", "db-1", map[string]string{"app": "db"}, "pg")}

	files, assigned, err := Desired(merge.NewSet([]*api.KubeArmorSeccompPolicy{k1, k2, sidecar}), pods, api.FamilyAMD64, merge.RuntimeRunc, nil)
	if err != nil {
		t.Fatal(err)
	}
	both := ProfilePath("shop", "kscmp1+kscmp2")
	withSidecar := ProfilePath("shop", "kscmp1+kscmp2+sidecar-only")
	if len(files) != 2 || files[both] == nil || files[withSidecar] == nil || len(assigned) != 2 {
		t.Fatalf("files %v, assigned %+v", keys(files), assigned)
	}
	rs, err := merge.ParseOCI(files[both], both)
	if err != nil {
		t.Fatal(err)
	}
	if e := rs.Lookup("write"); e == nil || e.Action != api.ActionBlock {
		t.Errorf("deny wins: write is %+v", e)
	}

	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "other"), 0o755)
	os.WriteFile(filepath.Join(dir, "other", "theirs.json"), []byte("{}"), 0o644)
	res, err := Sync(dir, files, nil)
	if err != nil || res.Written != 2 {
		t.Fatalf("first sync: %+v %v", res, err)
	}
	if res, _ = Sync(dir, files, nil); res.Written != 0 || res.Unchanged != 2 {
		t.Errorf("unchanged profiles rewritten: %+v", res)
	}

	// kscmp2 is deleted while web-1 runs with the profile of both.
	pods[0].Spec.SecurityContext = &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &both}}
	files, _, err = Desired(merge.NewSet([]*api.KubeArmorSeccompPolicy{k1, sidecar}), pods, api.FamilyAMD64, merge.RuntimeRunc, nil)
	if err != nil {
		t.Fatal(err)
	}
	only1 := ProfilePath("shop", "kscmp1")
	if files[only1] == nil {
		t.Fatalf("after the deletion: %v", keys(files))
	}
	rs, _ = merge.ParseOCI(files[only1], only1)
	if e := rs.Lookup("write"); e == nil || e.Action != api.ActionAllow {
		t.Errorf("deleting kscmp2 must allow write again: %+v", e)
	}
	res, err = Sync(dir, files, InUse(pods))
	if err != nil || res.KeptInUse != 1 || res.Removed != 1 {
		t.Errorf("sync after deletion: %+v %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(both))); err != nil {
		t.Error("the file a running pod was started with was removed under it")
	}
	// The pod is gone: so is the file. Files outside kubearmor/ stay.
	res, _ = Sync(dir, files, InUse(pods[1:]))
	if res.Removed != 1 {
		t.Errorf("stale profile not removed: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(dir, "other", "theirs.json")); err != nil {
		t.Error("a file outside kubearmor/ was touched")
	}
	// A temporary file of a killed write never survives a sync.
	tmp := filepath.Join(dir, ProfileDir, "shop", ".kscmp1.json.tmp-123")
	os.WriteFile(tmp, []byte("{\"def"), 0o644)
	Sync(dir, files, nil)
	if _, err := os.Stat(tmp); err == nil {
		t.Error("partial temporary file left")
	}
	// Paths that would leave the directory are refused.
	if _, err := Sync(dir, map[string][]byte{"kubearmor/../../etc/x.json": []byte("{}")}, nil); err == nil {
		t.Error("a path outside kubearmor/ was written")
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestDesiredMemo(t *testing.T) {
	web := map[string]string{"app": "web"}
	p := policy("shop", "p", web, nil, api.Rule{Syscalls: []string{"read"}, Action: api.ActionAllow})
	p.ResourceVersion = "1"
	pods := []*corev1.Pod{pod("shop", "web-1", web, "main")}
	var memo Memo
	a, _, err := Desired(merge.NewSet([]*api.KubeArmorSeccompPolicy{p}), pods, api.FamilyAMD64, merge.RuntimeRunc, &memo)
	if err != nil {
		t.Fatal(err)
	}
	// A changed policy with the same version would be wrong to merge again
	// only if versions were not bumped: the API server bumps them.
	changed := p.DeepCopy()
	changed.Spec.Seccomp.Rules[0].Syscalls = []string{"read", "flock"}
	changed.ResourceVersion = "2"
	b, _, err := Desired(merge.NewSet([]*api.KubeArmorSeccompPolicy{changed}), pods, api.FamilyAMD64, merge.RuntimeRunc, &memo)
	if err != nil {
		t.Fatal(err)
	}
	path := ProfilePath("shop", "p")
	if strings.Contains(string(a[path]), "flock") || !strings.Contains(string(b[path]), "flock") {
		t.Error("a new resourceVersion did not recompute the profile")
	}
	c, _, _ := Desired(merge.NewSet([]*api.KubeArmorSeccompPolicy{changed}), pods, api.FamilyAMD64, merge.RuntimeRunc, &memo)
	if &c[path][0] != &b[path][0] {
		t.Error("an unchanged policy set was merged again")
	}
}

// TestMergedGenerations: the node's status gets the generation each
// installed policy was merged at, and nothing for the policies no
// container here is made of.
func TestMergedGenerations(t *testing.T) {
	pol := func(ns, name string, gen int64) *api.KubeArmorSeccompPolicy {
		p := &api.KubeArmorSeccompPolicy{}
		p.Namespace, p.Name, p.Generation = ns, name, gen
		return p
	}
	policies := []*api.KubeArmorSeccompPolicy{pol("a", "p", 3), pol("b", "p", 7), pol("a", "q", 1), pol("a", "unused", 9)}
	assigned := []Assignment{{Path: "kubearmor/a/p+q.json", Policies: []string{"a/p", "a/q"}}, {Path: "kubearmor/b/p.json", Policies: []string{"b/p"}}}
	got := mergedGenerations(policies, assigned)
	want := map[string]int64{"a/p": 3, "a/q": 1, "b/p": 7}
	if !maps.Equal(got, want) {
		t.Fatalf("mergedGenerations = %v, want %v", got, want)
	}
}
