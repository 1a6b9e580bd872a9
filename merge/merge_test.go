package merge

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubearmor/kscmp/api"
)

// policy builds a valid policy: rules are "Action:name,name".
func policy(ns, name string, labels map[string]string, arch []api.Arch, rules ...string) *api.KubeArmorSeccompPolicy {
	return selPolicy(ns, name, api.Selector{MatchLabels: labels}, arch, rules...)
}

// exprPolicy builds a valid policy selecting by one label expression.
func exprPolicy(ns, name, key string, op metav1.LabelSelectorOperator, values []string, rules ...string) *api.KubeArmorSeccompPolicy {
	sel := api.Selector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
	return selPolicy(ns, name, sel, nil, rules...)
}

func selPolicy(ns, name string, sel api.Selector, arch []api.Arch, rules ...string) *api.KubeArmorSeccompPolicy {
	p := &api.KubeArmorSeccompPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: api.APIVersion, Kind: api.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: api.PolicySpec{
			Selector: sel,
			Seccomp:  api.SeccompSpec{Arch: arch},
		},
	}
	for _, r := range rules {
		act, names, _ := strings.Cut(r, ":")
		p.Spec.Seccomp.Rules = append(p.Spec.Seccomp.Rules, api.Rule{Action: api.Action(act), Syscalls: strings.Split(names, ",")})
	}
	if errs := api.Validate(p); len(errs) > 0 {
		panic(errs)
	}
	return p
}

var web = map[string]string{"app": "web"}

func names(rs *RuleSet, a api.Action) string { return strings.Join(rs.Names(a), ",") }

// TestDesignNoteExample is the merge rule, deny wins
// (docs/architecture.md#how-policies-merge), with real names:
// kscmp1 allow{s1,s2,s4} deny{s3} + kscmp2 allow{s1,s3} deny{s2}
// → allow{s1,s4} deny{s2,s3}; deleting kscmp2 → allow{s1,s2,s4} deny{s3}.
func TestDesignNoteExample(t *testing.T) {
	const s1, s2, s3, s4 = "read", "write", "mkdir", "getpid"
	k1 := policy("demo", "kscmp1", web, nil, "Allow:"+s1+","+s2+","+s4, "Block:"+s3)
	k2 := policy("demo", "kscmp2", web, nil, "Allow:"+s1+","+s3, "Deny:"+s2)
	target := Target{Namespace: "demo", Labels: map[string]string{"app": "web", "pod-template-hash": "abc"}, Runtime: RuntimeNone}

	tests := []struct {
		name          string
		policies      []*api.KubeArmorSeccompPolicy
		allow, denied string
	}{
		{"both", []*api.KubeArmorSeccompPolicy{k1, k2}, "getpid,read", "mkdir,write"},
		{"kscmp2 deleted", []*api.KubeArmorSeccompPolicy{k1}, "getpid,read,write", "mkdir"},
		{"kscmp1 deleted", []*api.KubeArmorSeccompPolicy{k2}, "mkdir,read", "write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Merge(tt.policies, target)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(rs, api.ActionAllow); got != tt.allow {
				t.Errorf("allow = %s, want %s", got, tt.allow)
			}
			if got := names(rs, api.ActionBlock); got != tt.denied {
				t.Errorf("deny = %s, want %s", got, tt.denied)
			}
			if rs.DefaultAction != api.ActionBlock {
				t.Errorf("default = %s, want Block (allow-list)", rs.DefaultAction)
			}
		})
	}

	rs, _ := Merge([]*api.KubeArmorSeccompPolicy{k1, k2}, target)
	// Provenance: write is blocked by kscmp2 and allowed (overridden) by kscmp1.
	w := rs.Lookup(s2)
	want := []Source{{Kind: SourcePolicy, Name: "demo/kscmp1", Action: api.ActionAllow}, {Kind: SourcePolicy, Name: "demo/kscmp2", Action: api.ActionBlock}}
	if w == nil || !slices.Equal(w.Sources, want) {
		t.Errorf("provenance of write = %+v, want %+v", w, want)
	}
	if !slices.Equal(rs.Policies, []string{"demo/kscmp1", "demo/kscmp2"}) {
		t.Errorf("policies = %v", rs.Policies)
	}
}

// TestDesignNoteProfile checks how the example allow-list policy
// (examples/wordpress.yaml) maps to the OCI profile: default SCMP_ACT_ERRNO,
// its three architectures, its calls allowed (--runtime none: nothing added).
func TestDesignNoteProfile(t *testing.T) {
	p := policy("wordpress-mysql", "ksp-wordpress-block-process", map[string]string{"app": "wordpress"},
		[]api.Arch{api.ArchX86_64, api.ArchX86, api.ArchX32}, "Allow:accept4,epoll_wait,pselect6,futex,madvise")
	rs, err := Merge([]*api.KubeArmorSeccompPolicy{p}, Target{Namespace: "wordpress-mysql", Labels: map[string]string{"app": "wordpress"}, Runtime: RuntimeNone})
	if err != nil {
		t.Fatal(err)
	}
	got, err := rs.MarshalOCI()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],` +
		`"syscalls":[{"names":["accept4","epoll_wait","futex","madvise","pselect6"],"action":"SCMP_ACT_ALLOW"}]}`
	if compact(t, got) != want {
		t.Errorf("profile\n got %s\nwant %s", compact(t, got), want)
	}
	if !bytes.HasSuffix(got, []byte("}\n")) {
		t.Error("no trailing newline")
	}
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var out bytes.Buffer
	for _, line := range strings.Split(string(b), "\n") {
		out.WriteString(strings.TrimSpace(line))
	}
	return strings.ReplaceAll(out.String(), `": `, `":`)
}

func TestPrecedenceAndDefaults(t *testing.T) {
	tg := Target{Namespace: "ns", Labels: web, Runtime: RuntimeNone}
	cases := []struct {
		name     string
		policies []*api.KubeArmorSeccompPolicy
		def      api.Action
		want     map[string]api.Action
	}{
		{"kill beats block beats audit beats allow", []*api.KubeArmorSeccompPolicy{
			policy("ns", "a", web, nil, "Allow:read,ptrace,mkdir,chown"),
			policy("ns", "b", web, nil, "Audit:ptrace,mkdir,chown"),
			policy("ns", "c", web, nil, "Block:ptrace,mkdir"),
			policy("ns", "d", web, nil, "Kill:ptrace"),
		}, api.ActionBlock, map[string]api.Action{"read": api.ActionAllow, "chown": api.ActionAudit, "mkdir": api.ActionBlock, "ptrace": api.ActionKill}},
		{"deny-list without allow rules", []*api.KubeArmorSeccompPolicy{
			policy("ns", "a", web, nil, "Block:mkdir", "Audit:open"),
		}, api.ActionAllow, map[string]api.Action{"mkdir": api.ActionBlock, "open": api.ActionAudit}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs, err := Merge(c.policies, tg)
			if err != nil {
				t.Fatal(err)
			}
			if rs.DefaultAction != c.def {
				t.Errorf("default %s, want %s", rs.DefaultAction, c.def)
			}
			if len(rs.Syscalls) != len(c.want) {
				t.Errorf("got %d syscalls, want %d", len(rs.Syscalls), len(c.want))
			}
			for n, a := range c.want {
				if e := rs.Lookup(n); e == nil || e.Action != a {
					t.Errorf("%s = %+v, want %s", n, e, a)
				}
			}
			// Explicit Block/Kill/Audit stay listed in the OCI profile.
			prof, _ := rs.OCI()
			listed := map[string]string{}
			for _, g := range prof.Syscalls {
				for _, n := range g.Names {
					listed[n] = string(g.Action)
				}
			}
			for n, a := range c.want {
				if listed[n] != a.SeccompAction() {
					t.Errorf("profile lists %s as %q, want %s", n, listed[n], a.SeccompAction())
				}
			}
		})
	}
}

func TestSelection(t *testing.T) {
	ps := []*api.KubeArmorSeccompPolicy{
		policy("ns", "web", web, nil, "Allow:read"),
		policy("ns", "web-tier", map[string]string{"app": "web", "tier": "front"}, nil, "Allow:write"),
		policy("other", "web", web, nil, "Allow:mkdir"),
	}
	nginxOnly := policy("ns", "nginx-only", web, nil, "Allow:chown")
	nginxOnly.Spec.Containers = []string{"nginx"}
	expr := exprPolicy("ns", "expr", "app", metav1.LabelSelectorOpIn, []string{"web", "api"}, "Allow:getpid")
	notDB := exprPolicy("ns", "not-db", "role", metav1.LabelSelectorOpDoesNotExist, nil, "Allow:fchown")
	ps = append(ps, nginxOnly, expr, notDB)
	set := NewSet(ps)

	cases := []struct {
		t    Target
		want []string
	}{
		{Target{Namespace: "ns", Labels: web}, []string{"ns/expr", "ns/not-db", "ns/web"}},
		{Target{Namespace: "ns", Labels: web, Container: "nginx"}, []string{"ns/expr", "ns/nginx-only", "ns/not-db", "ns/web"}},
		{Target{Namespace: "ns", Labels: map[string]string{"app": "web", "tier": "front", "role": "db"}}, []string{"ns/expr", "ns/web", "ns/web-tier"}},
		{Target{Namespace: "ns", Labels: map[string]string{"app": "api"}}, []string{"ns/expr", "ns/not-db"}},
		{Target{Namespace: "other", Labels: web}, []string{"other/web"}},
		{Target{Namespace: "none", Labels: web}, nil},
	}
	for _, c := range cases {
		a, err := Merge(ps, c.t)
		if err != nil {
			t.Fatal(err)
		}
		b, err := set.Merge(c.t)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.Policies, c.want) {
			t.Errorf("%s: policies %v, want %v", c.t, a.Policies, c.want)
		}
		ja, _ := a.MarshalOCI()
		jb, _ := b.MarshalOCI()
		if !bytes.Equal(ja, jb) || !slices.Equal(a.Policies, b.Policies) {
			t.Errorf("%s: Set.Merge differs from Merge", c.t)
		}
		if len(c.want) == 0 && !a.Empty() {
			t.Errorf("%s: want an empty rule set", c.t)
		}
	}
}

func TestArchitectures(t *testing.T) {
	tg := Target{Namespace: "ns", Labels: web}
	cases := []struct {
		name     string
		policies []*api.KubeArmorSeccompPolicy
		family   api.Family
		want     []api.Arch
	}{
		{"none given: amd64 family", []*api.KubeArmorSeccompPolicy{policy("ns", "a", web, nil, "Allow:read")}, api.FamilyAMD64, []api.Arch{api.ArchX86_64, api.ArchX86, api.ArchX32}},
		{"none given: arm64 family", []*api.KubeArmorSeccompPolicy{policy("ns", "a", web, nil, "Allow:read")}, api.FamilyARM64, []api.Arch{api.ArchAARCH64, api.ArchARM}},
		{"union, canonical order", []*api.KubeArmorSeccompPolicy{
			policy("ns", "a", web, []api.Arch{api.ArchX32}, "Allow:read"),
			policy("ns", "b", web, []api.Arch{api.ArchAARCH64, api.ArchX86_64}, "Allow:read"),
			policy("ns", "c", web, nil, "Allow:read"),
		}, api.FamilyAMD64, []api.Arch{api.ArchX86_64, api.ArchX32, api.ArchAARCH64}},
	}
	for _, c := range cases {
		tg.Family = c.family
		rs, err := Merge(c.policies, tg)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rs.Arches, c.want) {
			t.Errorf("%s: arches %v, want %v", c.name, rs.Arches, c.want)
		}
	}
	if _, err := Merge(nil, Target{Family: "sparc"}); err == nil {
		t.Error("unknown family accepted")
	}
	if _, err := Merge(nil, Target{Runtime: "docker"}); err == nil {
		t.Error("unknown runtime accepted")
	}
}

func TestRuntimeStartupSet(t *testing.T) {
	allow := policy("ns", "a", web, nil, "Allow:read", "Block:write")
	deny := policy("ns", "d", web, nil, "Block:mkdir")
	for _, r := range Runtimes {
		rs, err := Merge([]*api.KubeArmorSeccompPolicy{allow}, Target{Namespace: "ns", Labels: web, Runtime: r})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range r.StartupSyscalls() {
			e := rs.Lookup(n)
			if e == nil || !slices.Contains(e.Sources, Source{Kind: SourceRuntime, Name: string(r), Action: api.ActionAllow}) {
				t.Errorf("%s: %s not added from the runtime: %+v", r, n, e)
			}
		}
		// A blocked start-up call stays blocked (deny wins) and is warned about.
		if slices.Contains(r.StartupSyscalls(), "write") {
			if e := rs.Lookup("write"); e.Action != api.ActionBlock || len(rs.Warnings) != 1 {
				t.Errorf("%s: write %+v, warnings %v", r, e, rs.Warnings)
			}
		}
		// A deny-list needs nothing from the runtime.
		rs, _ = Merge([]*api.KubeArmorSeccompPolicy{deny}, Target{Namespace: "ns", Labels: web, Runtime: r})
		if len(rs.Syscalls) != 1 || rs.Runtime != "" {
			t.Errorf("%s: deny-list got runtime calls: %+v", r, rs.Syscalls)
		}
	}
	if !slices.Contains(RuntimeRunc.StartupSyscalls(), "execve") || !slices.Contains(RuntimeCrun.StartupSyscalls(), "execve") {
		t.Error("execve missing from a start-up set")
	}
	// RuntimeAny: exactly the union of runc's and crun's sets, required
	// when either requires it.
	union := append(RuntimeRunc.StartupSyscalls(), RuntimeCrun.StartupSyscalls()...)
	slices.Sort(union)
	if got := RuntimeAny.StartupSyscalls(); !slices.Equal(got, slices.Compact(union)) {
		t.Errorf("any: %v, want the union %v", got, slices.Compact(union))
	}
	req := append(RuntimeRunc.RequiredStartupSyscalls(), RuntimeCrun.RequiredStartupSyscalls()...)
	slices.Sort(req)
	if got := RuntimeAny.RequiredStartupSyscalls(); !slices.Equal(got, slices.Compact(req)) {
		t.Errorf("any required: %v, want %v", got, slices.Compact(req))
	}
	if r, err := ParseRuntime("any"); err != nil || r != RuntimeAny {
		t.Errorf("ParseRuntime(any) = %q, %v", r, err)
	}
}

// TestOrderIndependence shuffles the policies and their rules: the compiled
// output must be byte-identical.
func TestOrderIndependence(t *testing.T) {
	ps := randomPolicies(rand.New(rand.NewPCG(1, 2)), 40, 30)
	tg := Target{Namespace: "ns", Labels: map[string]string{"app": "a1", "tier": "t1"}}
	ref, err := Merge(ps, tg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ref.Policies) < 3 {
		t.Fatalf("test needs several matching policies, got %d", len(ref.Policies))
	}
	refJSON, _ := ref.MarshalOCI()
	refSD := ref.Systemd()
	var refExplain bytes.Buffer
	_ = ref.Explain(&refExplain)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 50 {
		shuffled := slices.Clone(ps)
		r.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		rs, err := NewSet(shuffled).Merge(tg)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := rs.MarshalOCI()
		var ex bytes.Buffer
		_ = rs.Explain(&ex)
		if !bytes.Equal(got, refJSON) || !bytes.Equal(rs.Systemd(), refSD) || ex.String() != refExplain.String() {
			t.Fatalf("round %d: output depends on the order of the policies", i)
		}
	}
}

// randomPolicies makes n valid policies in namespace ns with labels app=a0..a2
// and sometimes tier=t0..t1, each with up to k syscalls in random rules.
func randomPolicies(r *rand.Rand, n, k int) []*api.KubeArmorSeccompPolicy {
	table := api.ArchX86_64.Table().SyscallNames
	all := make([]string, 0, len(table))
	for name := range table {
		all = append(all, name)
	}
	slices.Sort(all)
	var out []*api.KubeArmorSeccompPolicy
	for i := range n {
		labels := map[string]string{"app": fmt.Sprintf("a%d", r.IntN(3))}
		if r.IntN(2) == 0 {
			labels["tier"] = fmt.Sprintf("t%d", r.IntN(2))
		}
		seen := map[string]bool{}
		groups := map[api.Action][]string{}
		for range 1 + r.IntN(k) {
			name := all[r.IntN(len(all))]
			if seen[name] {
				continue
			}
			seen[name] = true
			act := api.Actions[r.IntN(len(api.Actions))]
			if r.IntN(3) > 0 {
				act = api.ActionAllow
			}
			groups[act] = append(groups[act], name)
		}
		var rules []string
		for _, a := range api.Actions {
			if len(groups[a]) > 0 {
				rules = append(rules, string(a)+":"+strings.Join(groups[a], ","))
			}
		}
		out = append(out, policy("ns", fmt.Sprintf("p%d", i), labels, nil, rules...))
	}
	return out
}

func TestHostSelection(t *testing.T) {
	unit := selPolicy("ops", "nginx", api.Selector{SystemdUnits: []string{"nginx"}}, nil, "Allow:read")
	ctr := selPolicy("ops", "web", api.Selector{ContainerNames: []string{"web-1"}}, nil, "Allow:write")
	pod := policy("ops", "pod", web, nil, "Allow:mkdir")
	ps := []*api.KubeArmorSeccompPolicy{unit, ctr, pod}
	set := NewSet(ps)
	cases := []struct {
		t    Target
		want []string
	}{
		{Target{Unit: "nginx.service"}, []string{"ops/nginx"}},
		{Target{Unit: "nginx"}, []string{"ops/nginx"}},
		{Target{Unit: "redis.service"}, nil},
		{Target{ContainerName: "web-1"}, []string{"ops/web"}},
		// A pod target is never selected by a host policy, and the other way round.
		{Target{Namespace: "ops", Labels: web}, []string{"ops/pod"}},
		{Target{ContainerName: "web-1", Namespace: "ops", Labels: web}, []string{"ops/web"}},
	}
	for _, c := range cases {
		a, err := Merge(ps, c.t)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := set.Merge(c.t)
		if !slices.Equal(a.Policies, c.want) || !slices.Equal(b.Policies, c.want) {
			t.Errorf("%s: Merge %v, Set.Merge %v, want %v", c.t, a.Policies, b.Policies, c.want)
		}
	}
}
