package agent

import (
	"encoding/json"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/internal/apitest"
	"github.com/kubearmor/kscmp/merge"
	"github.com/kubearmor/kscmp/recommend"
)

// TestOwnProfile: the agent's own profile is the embedded policy compiled
// by the shared merger: an allow-list of the policy's calls, the kernel's,
// and the start-up calls of both runc and crun, for either family.
func TestOwnProfile(t *testing.T) {
	if OwnProfile != ProfilePath(OwnNamespace, OwnName) {
		t.Fatalf("OwnProfile %q is not ProfilePath(%q, %q)", OwnProfile, OwnNamespace, OwnName)
	}
	p, err := OwnPolicy()
	if err != nil {
		t.Fatal(err)
	}
	var calls, conditioned []string
	for _, r := range p.Spec.Seccomp.AllRules() {
		if r.Action != api.ActionAllow {
			t.Errorf("rule %v: the agent's policy is an allow-list", r)
		}
		if len(r.Args) > 0 {
			conditioned = append(conditioned, r.Syscalls...)
			continue
		}
		calls = append(calls, r.Syscalls...)
	}
	if slices.Sort(conditioned); !slices.Equal(slices.Compact(conditioned), []string{"clone", "socket"}) {
		t.Errorf("conditioned calls %v, want clone and socket", conditioned)
	}
	for _, fam := range []api.Family{api.FamilyAMD64, api.FamilyARM64} {
		data, err := OwnProfileJSON(fam)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := merge.ParseOCI(data, "own.json")
		if err != nil {
			t.Fatal(err)
		}
		arches, _ := fam.Arches()
		if !rs.AllowList() || !slices.Equal(rs.Arches, arches) {
			t.Errorf("%s: default %s, arches %v", fam, rs.DefaultAction, rs.Arches)
		}
		want := append(append(slices.Clone(calls), merge.KernelSyscalls()...), merge.RuntimeRunc.StartupSyscalls()...)
		want = append(want, merge.RuntimeCrun.StartupSyscalls()...)
		for _, s := range want {
			if e := rs.Lookup(s); (e == nil || e.Action != api.ActionAllow) && api.SyscallKnown(s, arches) {
				t.Errorf("%s: %s not allowed", fam, s)
			}
		}
		// The conditions: threads but no namespaces (clone3, whose flags
		// cannot be read, refused with ENOSYS for glibc to fall back to
		// clone), TCP and the audit netlink socket of the violations
		// monitor (AF_NETLINK) but no unix or packet sockets.
		const sigchld, threadFlags, newUser, newNet = 17, 0x3d0f00, 0x10000000, 0x40000000
		for _, c := range []struct {
			call string
			arg0 uint64
			want api.Action
		}{
			{"clone", threadFlags, api.ActionAllow}, {"clone", sigchld, api.ActionAllow},
			{"clone", newUser | sigchld, api.ActionBlock}, {"clone", newNet, api.ActionBlock},
			{"socket", 2, api.ActionAllow}, {"socket", 10, api.ActionAllow},
			{"socket", 16, api.ActionAllow},
			{"socket", 1, api.ActionBlock}, {"socket", 17, api.ActionBlock},
			{"clone3", 0, api.ActionBlock}, {"unshare", 0, api.ActionBlock},
		} {
			if got := rs.Decide(c.call, [6]uint64{c.arg0}); got != c.want {
				t.Errorf("%s: %s(%#x): %s, want %s", fam, c.call, c.arg0, got, c.want)
			}
		}
		if e := rs.Lookup("clone3"); e == nil || e.Errno != merge.ENOSYS {
			t.Errorf("%s: clone3 %+v, want refused with ENOSYS", fam, e)
		}
		if again, _ := OwnProfileJSON(fam); string(again) != string(data) {
			t.Errorf("%s: not deterministic", fam)
		}
	}
	// Measured on amd64: the policy also lists what the same program calls
	// on arm64, as 'kscmp recommend --portable' would.
	eq, _ := recommend.Equivalents(api.ArchX86_64, api.ArchAARCH64, calls)
	for _, e := range eq {
		if !slices.Contains(calls, e.Name) {
			t.Errorf("%s (arm64's %s) is missing from the policy", e.Name, e.For)
		}
	}

	dir := t.TempDir()
	path, changed, err := InstallOwnProfile(dir, api.FamilyAMD64)
	if err != nil || !changed || path != filepath.Join(dir, filepath.FromSlash(OwnProfile)) {
		t.Fatalf("install: %s %v %v", path, changed, err)
	}
	if _, changed, err := InstallOwnProfile(dir, api.FamilyAMD64); err != nil || changed {
		t.Errorf("second install: changed %v, %v; want unchanged", changed, err)
	}
}

// daemonSetPod is the pod the manifests' DaemonSet makes on node-a.
func daemonSetPod(t *testing.T) *corev1.Pod {
	t.Helper()
	ds := apitest.AgentDaemonSet(t)
	p := &corev1.Pod{ObjectMeta: ds.Spec.Template.ObjectMeta, Spec: ds.Spec.Template.Spec}
	p.Name, p.Namespace, p.Spec.NodeName = "kscmp-agent-x7k2p", ds.Namespace, "node-a"
	yes := true
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: "u1", Controller: &yes}}
	return p
}

// TestOwnProfileKept: the agent's garbage collection never removes its own
// profiles. The DaemonSet's pod on the node is seen as using the one it
// names (OwnBPFProfile, for its default --attribute-exited) (InUse), and
// the file is kept even without that pod (say, between its deletion and
// its replacement's start); the agent never writes it from policies, never
// rolls its own DaemonSet because of it, and refuses a policy named like it.
func TestOwnProfileKept(t *testing.T) {
	own := daemonSetPod(t)
	if !InUse([]*corev1.Pod{own})[OwnBPFProfile] {
		t.Errorf("the agent's pod is not seen as using %s: %v", OwnBPFProfile, InUse([]*corev1.Pod{own}))
	}
	var agentC corev1.Container
	for _, c := range own.Spec.Containers {
		if c.Name == "agent" {
			agentC = c
		}
	}
	if got := boundProfile(own, agentC); got != OwnBPFProfile {
		t.Fatalf("the DaemonSet's agent container runs with %q, want %q", got, OwnBPFProfile)
	}

	dir := t.TempDir()
	if _, _, err := InstallOwnProfile(dir, api.FamilyAMD64); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, ProfileDir, OwnNamespace, "other.json")
	os.WriteFile(other, []byte("{}"), 0o644)
	for _, c := range []struct {
		name string
		sync func() (SyncResult, error)
	}{
		{"all, agent's pod here", func() (SyncResult, error) { return Sync(dir, nil, InUse([]*corev1.Pod{own})) }},
		{"all, no pod", func() (SyncResult, error) { return Sync(dir, nil, nil) }},
		{"namespace, no pod", func() (SyncResult, error) { return SyncNamespace(dir, OwnNamespace, nil, nil) }},
	} {
		if _, err := c.sync(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, p := range []string{OwnProfile, OwnBPFProfile} {
			if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p))); err != nil {
				t.Fatalf("%s: the agent's own profile %s was removed: %v", c.name, p, err)
			}
		}
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("another unused file beside it was kept: %v", err)
	}
	if _, err := SyncNamespace(dir, OwnNamespace, map[string][]byte{OwnProfile: []byte("{}")}, nil); err == nil {
		t.Error("a sync wrote the agent's own profile")
	}

	// --restart-workloads: no policy gives the agent's container a profile,
	// which must not read as "runs with a stale profile".
	if got := restartTargets([]*corev1.Pod{own}, nil, nil, nil, false); len(got) != 0 {
		t.Errorf("the agent would roll its own DaemonSet: %v", got)
	}
	if got := restartTargets([]*corev1.Pod{own}, nil, nil, []string{OwnProfile, OwnBPFProfile}, false); len(got) != 0 {
		t.Errorf("the agent would roll its own DaemonSet: %v", got)
	}

	// A policy that would be written to OwnProfile is refused (the agent's
	// and the webhook's policy cache).
	c := &PolicyCache{log: slog.New(slog.DiscardHandler), invalid: map[string]string{}, parsed: map[string]parsed{}}
	u := &unstructured.Unstructured{}
	yaml.Unmarshal([]byte("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: "+OwnName+", namespace: "+OwnNamespace+", resourceVersion: '1'}\nspec: {selector: {matchLabels: {app.kubernetes.io/name: kscmp-agent}}, seccomp: {syscalls: [read], action: Allow}}\n"), &u.Object)
	if c.parse(u) != nil || !strings.Contains(c.Refused()[OwnNamespace+"/"+OwnName], OwnProfile) {
		t.Errorf("a policy named like the agent's own was accepted: %v", c.Refused())
	}
	u.SetName("kscmp-agent-extra")
	if c.parse(u) == nil {
		t.Errorf("another policy in %s was refused: %v", OwnNamespace, c.Refused())
	}
}

// TestOwnBPFProfile: the agent's own profile when it loads eBPF programs is
// the default one plus bpf, and only that; install-profile writes both,
// the agent keeps both, and a policy named like the variant is refused.
func TestOwnBPFProfile(t *testing.T) {
	allowed := func(data []byte) map[string]int {
		var prof struct {
			Syscalls []struct {
				Names  []string `json:"names"`
				Action string   `json:"action"`
			} `json:"syscalls"`
		}
		if err := json.Unmarshal(data, &prof); err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, s := range prof.Syscalls {
			if s.Action == "SCMP_ACT_ALLOW" {
				for _, n := range s.Names {
					out[n]++
				}
			}
		}
		return out
	}
	for _, fam := range []api.Family{api.FamilyAMD64, api.FamilyARM64} {
		def, err := OwnProfileJSON(fam)
		if err != nil {
			t.Fatal(err)
		}
		ee, err := OwnBPFProfileJSON(fam)
		if err != nil {
			t.Fatal(err)
		}
		a, b := allowed(def), allowed(ee)
		if a["bpf"] != 0 || b["bpf"] == 0 {
			t.Errorf("%s: bpf allowed %d times in the default profile, %d in the eBPF one; want 0 and some", fam, a["bpf"], b["bpf"])
		}
		delete(b, "bpf")
		if !maps.Equal(a, b) {
			t.Errorf("%s: the eBPF profile differs from the default one beyond bpf", fam)
		}
	}
	if OwnBPFProfile != ProfilePath(OwnNamespace, OwnBPFName) || !IsOwnProfile(OwnBPFProfile) || !IsOwnProfile(OwnProfile) {
		t.Errorf("OwnBPFProfile %q", OwnBPFProfile)
	}
	dir := t.TempDir()
	if _, changed, err := InstallOwnProfile(dir, api.FamilyAMD64); err != nil || !changed {
		t.Fatalf("install: %v %v", changed, err)
	}
	if _, err := Sync(dir, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{OwnProfile, OwnBPFProfile} {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(rel))); err != nil {
			t.Errorf("%s: %v", rel, err)
		}
	}
	c := &PolicyCache{log: slog.New(slog.DiscardHandler), invalid: map[string]string{}, parsed: map[string]parsed{}}
	u := &unstructured.Unstructured{}
	yaml.Unmarshal([]byte("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: "+OwnBPFName+", namespace: "+OwnNamespace+", resourceVersion: '1'}\nspec: {selector: {matchLabels: {app.kubernetes.io/name: kscmp-agent}}, seccomp: {syscalls: [read], action: Allow}}\n"), &u.Object)
	if c.parse(u) != nil || !strings.Contains(c.Refused()[OwnNamespace+"/"+OwnBPFName], OwnBPFProfile) {
		t.Errorf("a policy named like the agent's eBPF profile was accepted: %v", c.Refused())
	}
}
