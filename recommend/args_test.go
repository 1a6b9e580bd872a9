package recommend

import (
	"slices"
	"strings"
	"testing"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/internal/escape"
	"github.com/kubearmor/kscmp/merge"
)

// TestExistingArgConditions: a reviewed policy's argument conditions stay
// as written. An allow under a condition is not widened to any arguments
// by observing the call; a refusal under a condition does not remove the
// call's allow, even with --prune.
func TestExistingArgConditions(t *testing.T) {
	first, err := Recommend([]report.Source{reportOf("a", pod("ns", "p", "c", map[string]string{"app": "x"}, nil, "read", "unshare"))}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := first.Files[0].Policy
	noUser := []api.ArgCondition{{Index: 0, Operator: api.OpMaskedEqual, Mask: "CLONE_NEWUSER", Value: "0"}}
	user := []api.ArgCondition{{Index: 0, Operator: api.OpMaskedEqual, Mask: "CLONE_NEWUSER", Value: "CLONE_NEWUSER"}}
	old.Spec.Seccomp.Rules = []api.Rule{{Syscalls: []string{"read", "unshare"}, Action: api.ActionAllow},
		{Syscalls: []string{"clone"}, Action: api.ActionAllow, Args: noUser},
		{Syscalls: []string{"unshare"}, Action: api.ActionBlock, Args: user}}
	old.Spec.Seccomp.Syscalls, old.Spec.Seccomp.Action = nil, ""
	again := []report.Source{reportOf("b", pod("ns", "p", "c", map[string]string{"app": "x"}, nil, "read", "clone", "unshare", "write"))}
	for _, prune := range []bool{false, true} {
		res, err := Recommend(again, Options{Existing: []api.Document{{Policy: old}}, Prune: prune})
		if err != nil {
			t.Fatal(err)
		}
		rules := res.Files[0].Policy.Spec.Seccomp.Rules
		if len(rules) != 3 || strings.Join(rules[0].Syscalls, ",") != "read,unshare,write" ||
			!slices.EqualFunc(rules[1:], old.Spec.Seccomp.Rules[1:], func(a, b api.Rule) bool {
				return slices.Equal(a.Syscalls, b.Syscalls) && a.Action == b.Action && slices.Equal(a.Args, b.Args)
			}) {
			t.Errorf("prune=%v: rules %+v", prune, rules)
		}
	}
}

// argsPod is a web server that forks and makes threads (clone without a
// namespace flag), opens TCP and Unix sockets, queries its persona and
// names its threads, with arguments recorded.
func argsPod() report.Workload {
	w := pod("ns", "web-1", "c", map[string]string{"app": "web"}, nil,
		"read", "clone", "clone3", "unshare", "socket", "socketpair", "personality", "prctl", "setns")
	w.Args = map[string]map[string]report.CallArgs{"x86_64": {
		"clone":       {},
		"unshare":     {Namespaces: []string{"CLONE_NEWNS"}},
		"socket":      {Families: []string{"AF_INET", "AF_INET6", "AF_UNIX"}, Types: []string{"SOCK_STREAM"}},
		"socketpair":  {Families: []string{"AF_UNIX"}},
		"personality": {Values: []uint32{0xffffffff}},
		"prctl":       {Options: []string{"PR_SET_NAME", "PR_SET_NO_NEW_PRIVS"}},
		// setns made without recorded arguments: no condition.
	}}
	return w
}

// TestRecommendArgs: the recorded calls are allowed only with the observed
// arguments; merged with runc's, crun's or both start-up sets, the profile
// still refuses a
// user or network namespace and a netlink socket, refuses clone3 with
// ENOSYS, and allows what was observed. --no-args (NoArgs) writes none.
func TestRecommendArgs(t *testing.T) {
	res, err := Recommend([]report.Source{reportOf("a", argsPod())}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := res.Files[0]
	for _, rt := range []merge.Runtime{merge.RuntimeRunc, merge.RuntimeCrun, merge.RuntimeAny} {
		rs, err := merge.Merge([]*api.KubeArmorSeccompPolicy{f.Policy}, merge.Target{Namespace: "ns", Labels: map[string]string{"app": "web"}, Container: "c", Runtime: rt})
		if err != nil {
			t.Fatal(err)
		}
		checkDecisions(t, rt, rs)
	}
	// Without the runtime's set prctl keeps its options.
	bare, err := merge.Merge([]*api.KubeArmorSeccompPolicy{f.Policy}, merge.Target{Namespace: "ns", Labels: map[string]string{"app": "web"}, Container: "c", Runtime: merge.RuntimeNone})
	if err != nil {
		t.Fatal(err)
	}
	if bare.Decide("prctl", [6]uint64{38}) != api.ActionAllow || bare.Decide("prctl", [6]uint64{4}) != api.ActionBlock {
		t.Errorf("prctl: PR_SET_NO_NEW_PRIVS %s, PR_SET_DUMPABLE %s", bare.Decide("prctl", [6]uint64{38}), bare.Decide("prctl", [6]uint64{4}))
	}
	for _, want := range []string{"socket: AF_INET, AF_INET6, AF_UNIX only", "clone: no new namespaces",
		"unshare: no new namespaces but CLONE_NEWNS", "clone3: refused with ENOSYS"} {
		if !strings.Contains(string(res.Summary), string(escape.Text(want))) || !strings.Contains(string(f.Data), want) {
			t.Errorf("summary lacks %q:\n%s", want, res.Summary)
		}
	}
	again, err := Recommend([]report.Source{reportOf("a", argsPod())}, Options{})
	if err != nil || string(again.Files[0].Data) != string(f.Data) {
		t.Errorf("not deterministic: %v\n%s\n%s", err, f.Data, again.Files[0].Data)
	}
	off, err := Recommend([]report.Source{reportOf("a", argsPod())}, Options{NoArgs: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range off.Files[0].Policy.Spec.Seccomp.AllRules() {
		if len(r.Args) > 0 {
			t.Errorf("NoArgs: rule %+v has conditions", r)
		}
	}
}

// TestRecommendArgsUnrecorded: a call made without recorded arguments, in
// one replica only, or with an overflowing set, gets no condition.
func TestRecommendArgsUnrecorded(t *testing.T) {
	other := pod("ns", "web-2", "c", map[string]string{"app": "web"}, nil, "clone", "socket", "prctl")
	other.Args = map[string]map[string]report.CallArgs{"x86_64": {"prctl": {Overflow: true}}}
	res, err := Recommend([]report.Source{reportOf("a", argsPod(), other)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var conditioned []string
	for _, r := range res.Files[0].Policy.Spec.Seccomp.AllRules() {
		if len(r.Args) > 0 {
			conditioned = append(conditioned, r.Syscalls...)
		}
	}
	slices.Sort(conditioned)
	if got := strings.Join(slices.Compact(conditioned), ","); got != "personality,socketpair,unshare" {
		t.Errorf("conditioned %s, want personality,socketpair,unshare", got)
	}
}

// TestRecommendArgsClone3Only: a workload that made threads with clone3
// only (glibc 2.34+), with arguments recorded, gets clone without
// namespace flags instead, and merge refuses clone3 with ENOSYS (the C
// library falls back to clone). Without recorded arguments clone3 stays.
func TestRecommendArgsClone3Only(t *testing.T) {
	w := pod("ns", "py-1", "c", map[string]string{"app": "py"}, nil, "read", "clone3", "socket")
	w.Args = map[string]map[string]report.CallArgs{"x86_64": {"socket": {Families: []string{"AF_INET"}}}}
	res, err := Recommend([]report.Source{reportOf("a", w)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := merge.Merge([]*api.KubeArmorSeccompPolicy{res.Files[0].Policy}, merge.Target{Namespace: "ns", Labels: map[string]string{"app": "py"}, Container: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if rs.Decide("clone", [6]uint64{0x3d0f00}) != api.ActionAllow || rs.Decide("clone", [6]uint64{0x10000000}) != api.ActionBlock {
		t.Errorf("clone: threads %s, CLONE_NEWUSER %s", rs.Decide("clone", [6]uint64{0x3d0f00}), rs.Decide("clone", [6]uint64{0x10000000}))
	}
	if e := rs.Lookup("clone3"); e == nil || e.Errno != merge.ENOSYS || len(rs.Warnings) > 0 {
		t.Errorf("clone3 %+v, warnings %v; want refused with ENOSYS, no warning", e, rs.Warnings)
	}
	w.Args = nil
	res, err = Recommend([]report.Source{reportOf("a", w)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p := res.Files[0].Policy.Spec.Seccomp; !slices.Equal(p.Syscalls, []string{"clone3", "read", "socket"}) {
		t.Errorf("unrecorded: %+v, want clone3 read socket allowed with any arguments", p)
	}
}

// checkDecisions decides argsPod's calls on its profile merged for a
// runtime: the start-up set adds no condition-free clone, unshare or
// socket, and only prctl of the conditioned calls.
func checkDecisions(t *testing.T, rt merge.Runtime, rs *merge.RuleSet) {
	t.Helper()
	const (
		newUser, newNet, newNS, sigchld              = 0x10000000, 0x40000000, 0x20000, 17
		afInet, afUnix, afInet6, afNetlink, afPacket = 2, 1, 10, 16, 17
	)
	for _, c := range []struct {
		call string
		arg  [6]uint64
		want api.Action
	}{
		{"clone", [6]uint64{sigchld | 0x100}, api.ActionAllow},
		{"clone", [6]uint64{newUser | sigchld}, api.ActionBlock},
		{"clone", [6]uint64{newNet}, api.ActionBlock},
		{"unshare", [6]uint64{newNS}, api.ActionAllow},
		{"unshare", [6]uint64{newUser}, api.ActionBlock},
		{"unshare", [6]uint64{newNet}, api.ActionBlock},
		{"socket", [6]uint64{afInet, 1}, api.ActionAllow},
		{"socket", [6]uint64{afInet6, 2}, api.ActionAllow},
		{"socket", [6]uint64{afUnix, 1}, api.ActionAllow},
		{"socket", [6]uint64{afNetlink, 3}, api.ActionBlock},
		{"socket", [6]uint64{afPacket, 3}, api.ActionBlock},
		{"socketpair", [6]uint64{afUnix, 1}, api.ActionAllow},
		{"socketpair", [6]uint64{afInet, 1}, api.ActionBlock},
		{"personality", [6]uint64{0xffffffff}, api.ActionAllow},
		{"personality", [6]uint64{0x40000}, api.ActionBlock},
		{"setns", [6]uint64{3, newUser}, api.ActionAllow},
		{"clone3", [6]uint64{}, api.ActionBlock},
		{"prctl", [6]uint64{15}, api.ActionAllow}, // the runtimes' start-up sets allow any prctl
	} {
		if got := rs.Decide(c.call, c.arg); got != c.want {
			t.Errorf("%s: %s(%#x): %s, want %s", rt, c.call, c.arg[:2], got, c.want)
		}
	}
	if e := rs.Lookup("clone3"); e == nil || e.Errno != merge.ENOSYS {
		t.Errorf("%s: clone3: %+v, want refused with ENOSYS", rt, e)
	}
	if len(rs.Warnings) > 0 {
		t.Errorf("%s: merge warns: %v", rt, rs.Warnings)
	}
}

// TestRecommendArgsReviewed: a call a reviewed policy allows with any
// arguments stays so (a recommendation never narrows an approval), unless
// pruned; a call the recommendation adds is conditioned.
func TestRecommendArgsReviewed(t *testing.T) {
	w := argsPod()
	first, err := Recommend([]report.Source{reportOf("a", w)}, Options{NoArgs: true})
	if err != nil {
		t.Fatal(err)
	}
	old := first.Files[0].Policy
	old.Spec.Seccomp.Syscalls = slices.DeleteFunc(old.Spec.Seccomp.Syscalls, func(n string) bool { return n == "socketpair" })
	for _, c := range []struct {
		prune bool
		want  string
	}{{false, "socketpair"}, {true, "clone,personality,prctl,socket,socketpair,unshare"}} {
		res, err := Recommend([]report.Source{reportOf("b", w)}, Options{Existing: []api.Document{{Policy: old}}, Prune: c.prune})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range res.Files[0].Policy.Spec.Seccomp.AllRules() {
			if len(r.Args) > 0 {
				got = append(got, r.Syscalls...)
			}
		}
		slices.Sort(got)
		if g := strings.Join(slices.Compact(got), ","); g != c.want {
			t.Errorf("prune=%v: conditioned %s, want %s", c.prune, g, c.want)
		}
	}
}
