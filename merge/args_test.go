package merge

import (
	"strings"
	"testing"

	"github.com/kubearmor/kscmp/api"
)

// condPolicy builds a valid policy of rules, each "Action:call,call" with
// optional conditions.
func condPolicy(t *testing.T, name string, rules ...api.Rule) *api.KubeArmorSeccompPolicy {
	t.Helper()
	p := policy("ns", name, web, nil, "Allow:read")
	p.Spec.Seccomp.Rules = rules
	if errs := api.Validate(p); len(errs) > 0 {
		t.Fatal(errs)
	}
	return p
}

func cond(op api.ArgOperator, value string, mask ...string) []api.ArgCondition {
	c := api.ArgCondition{Index: 0, Operator: op, Value: api.ArgValue(value)}
	if len(mask) > 0 {
		c.Mask = api.ArgValue(mask[0])
	}
	return []api.ArgCondition{c}
}

const newUser, newNet = 0x10000000, 0x40000000

// TestConditionalMergeRules checks the rules of docs/architecture.md "How
// policies merge" with their examples, on the rule set and on the
// compiled OCI profile.
func TestConditionalMergeRules(t *testing.T) {
	userNS := cond(api.OpMaskedEqual, "CLONE_NEWUSER", "CLONE_NEWUSER")
	for _, tc := range []struct {
		name     string
		policies []*api.KubeArmorSeccompPolicy
		call     string
		want     map[uint64]api.Action // arg0 → action
		oci      string                // in the profile
	}{
		{"a refusal under a condition beats an unconditional allow for the arguments it matches",
			[]*api.KubeArmorSeccompPolicy{
				condPolicy(t, "a", api.Rule{Syscalls: []string{"clone"}, Action: api.ActionAllow}),
				condPolicy(t, "b", api.Rule{Syscalls: []string{"clone"}, Action: api.ActionBlock, Args: userNS})},
			"clone", map[uint64]api.Action{0: api.ActionAllow, newNet: api.ActionAllow, newUser: api.ActionBlock, newUser | newNet: api.ActionBlock},
			`"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":268435456,"op":"SCMP_CMP_MASKED_EQ"}]`},
		{"two allows under conditions are their union",
			[]*api.KubeArmorSeccompPolicy{
				condPolicy(t, "a", api.Rule{Syscalls: []string{"socket"}, Action: api.ActionAllow, Args: cond(api.OpEqual, "AF_INET")}),
				condPolicy(t, "b", api.Rule{Syscalls: []string{"socket"}, Action: api.ActionAllow, Args: cond(api.OpEqual, "AF_UNIX")})},
			"socket", map[uint64]api.Action{1: api.ActionAllow, 2: api.ActionAllow, 10: api.ActionBlock, 16: api.ActionBlock},
			`"names":["socket"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"}]`},
		{"an allow under a condition does not narrow an unconditional refusal",
			[]*api.KubeArmorSeccompPolicy{
				condPolicy(t, "a", api.Rule{Syscalls: []string{"ptrace"}, Action: api.ActionBlock}),
				condPolicy(t, "b", api.Rule{Syscalls: []string{"ptrace"}, Action: api.ActionAllow, Args: cond(api.OpEqual, "0")})},
			"ptrace", map[uint64]api.Action{0: api.ActionBlock, 1: api.ActionBlock},
			`"names":["ptrace"],"action":"SCMP_ACT_ERRNO"`},
		{"one policy may refine its own allow",
			[]*api.KubeArmorSeccompPolicy{
				condPolicy(t, "a", api.Rule{Syscalls: []string{"unshare"}, Action: api.ActionAllow},
					api.Rule{Syscalls: []string{"unshare"}, Action: api.ActionKill, Args: cond(api.OpMaskedEqual, "CLONE_NEWNET", "CLONE_NEWNET")})},
			"unshare", map[uint64]api.Action{0: api.ActionAllow, newNet: api.ActionKill, newUser: api.ActionAllow},
			`"names":["unshare"],"action":"SCMP_ACT_KILL_PROCESS","args":[{"index":0,"value":1073741824,"valueTwo":1073741824,"op":"SCMP_CMP_MASKED_EQ"}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Merge(tc.policies, Target{Namespace: "ns", Labels: web, Runtime: RuntimeNone})
			if err != nil {
				t.Fatal(err)
			}
			for arg, want := range tc.want {
				if got := rs.Decide(tc.call, [6]uint64{arg}); got != want {
					t.Errorf("%s(%#x): %s, want %s", tc.call, arg, got, want)
				}
			}
			out, err := rs.MarshalOCI()
			if err != nil {
				t.Fatal(err)
			}
			flat := strings.Join(strings.Fields(string(out)), "")
			if !strings.Contains(flat, tc.oci) {
				t.Errorf("profile lacks %s:\n%s", tc.oci, out)
			}
		})
	}
}

// TestClone3RefusedWithENOSYS: when clone's flags are filtered, clone3
// (whose flags seccomp cannot read) is refused with ENOSYS so libc falls
// back to clone, even if a policy allows it (with a warning).
func TestClone3RefusedWithENOSYS(t *testing.T) {
	p := condPolicy(t, "a", api.Rule{Syscalls: []string{"clone3", "read"}, Action: api.ActionAllow},
		api.Rule{Syscalls: []string{"clone"}, Action: api.ActionAllow, Args: cond(api.OpMaskedEqual, "0", "CLONE_NEWUSER")})
	rs, err := Merge([]*api.KubeArmorSeccompPolicy{p}, Target{Namespace: "ns", Labels: web, Runtime: RuntimeNone})
	if err != nil {
		t.Fatal(err)
	}
	if e := rs.Lookup("clone3"); e == nil || e.Action != api.ActionBlock || e.Errno != ENOSYS {
		t.Fatalf("clone3: %+v", e)
	}
	if len(rs.Warnings) != 1 || !strings.Contains(rs.Warnings[0], "clone3 is allowed by policy") {
		t.Errorf("warnings: %q", rs.Warnings)
	}
	out, err := rs.MarshalOCI()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(strings.Fields(string(out)), ""), `"names":["clone3"],"action":"SCMP_ACT_ERRNO","errnoRet":38`) {
		t.Errorf("profile:\n%s", out)
	}
	back, err := ParseOCI(out, "p.json")
	if err != nil {
		t.Fatal(err)
	}
	if e := back.Lookup("clone3"); e == nil || e.Errno != ENOSYS {
		t.Errorf("read back: %+v", e)
	}
	again, _ := back.MarshalOCI()
	if string(again) != string(out) {
		t.Errorf("profile → rule set → profile differs:\n%s\n%s", out, again)
	}
}

// TestSystemdDirectives: conditions that mean what a systemd directive does
// become it; others are warned about, in the drop-in and by the merge of a
// unit.
func TestSystemdDirectives(t *testing.T) {
	noNS := cond(api.OpMaskedEqual, "0", "CLONE_NEWUSER|CLONE_NEWNET")
	p := condPolicy(t, "a", api.Rule{Syscalls: []string{"read", "write"}, Action: api.ActionAllow},
		api.Rule{Syscalls: []string{"clone", "unshare"}, Action: api.ActionAllow, Args: noNS},
		api.Rule{Syscalls: []string{"socket"}, Action: api.ActionAllow, Args: cond(api.OpEqual, "AF_INET")},
		api.Rule{Syscalls: []string{"socket"}, Action: api.ActionAllow, Args: cond(api.OpEqual, "AF_UNIX")},
		api.Rule{Syscalls: []string{"personality"}, Action: api.ActionAllow, Args: cond(api.OpEqual, "PER_LINUX")},
		api.Rule{Syscalls: []string{"personality"}, Action: api.ActionAllow, Args: cond(api.OpEqual, "PER_QUERY")},
		api.Rule{Syscalls: []string{"ioctl"}, Action: api.ActionAllow, Args: cond(api.OpEqual, "1")})
	unit := selPolicy("ns", "u", api.Selector{SystemdUnits: []string{"web.service"}}, nil, "Allow:read")
	unit.Spec.Seccomp.Rules = p.Spec.Seccomp.Rules
	rs, err := Merge([]*api.KubeArmorSeccompPolicy{unit}, Target{Unit: "web.service"})
	if err != nil {
		t.Fatal(err)
	}
	got := string(rs.Systemd())
	for _, want := range []string{
		"# Warning: systemd cannot check the arguments of ioctl (Allow if arg0 == 0x1): the drop-in refuses it whatever its arguments.\n",
		"SystemCallFilter=clone clone3 personality read restart_syscall rt_sigreturn socket unshare write\n", // clone3: RestrictNamespaces= refuses it with ENOSYS
		"LockPersonality=yes\nRestrictAddressFamilies=AF_INET AF_UNIX\nRestrictNamespaces=cgroup ipc mnt pid uts\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("drop-in lacks %q:\n%s", want, got)
		}
	}
	if len(rs.Warnings) != 1 || !strings.Contains(rs.Warnings[0], "arguments of ioctl") {
		t.Errorf("merge warnings: %q", rs.Warnings)
	}
	// Conditions systemd cannot say exactly get no directive: socket by
	// type, and a personality Docker's profile allows (PER_LINUX32).
	q := condPolicy(t, "b", api.Rule{Syscalls: []string{"read"}, Action: api.ActionAllow},
		api.Rule{Syscalls: []string{"socket"}, Action: api.ActionAllow, Args: []api.ArgCondition{{Index: 1, Operator: api.OpEqual, Value: "1"}}},
		api.Rule{Syscalls: []string{"personality"}, Action: api.ActionAllow, Args: cond(api.OpLessEqual, "PER_LINUX32")})
	rs, err = Merge([]*api.KubeArmorSeccompPolicy{q}, Target{Namespace: "ns", Labels: web, Runtime: RuntimeNone})
	if err != nil {
		t.Fatal(err)
	}
	got = string(rs.Systemd())
	if strings.Contains(got, "RestrictAddressFamilies") || strings.Contains(got, "LockPersonality") ||
		!strings.Contains(got, "arguments of socket") || !strings.Contains(got, "arguments of personality") {
		t.Errorf("inexact conditions mapped:\n%s", got)
	}
}

// TestExplainAndDenyFamilies: a hardening policy that refuses netlink
// beside an unconditional allow of socket becomes a "~" family list, and
// --explain shows each conditional action on a line of its own.
func TestExplainAndDenyFamilies(t *testing.T) {
	app := condPolicy(t, "app", api.Rule{Syscalls: []string{"read", "socket"}, Action: api.ActionAllow})
	harden := condPolicy(t, "harden", api.Rule{Syscalls: []string{"socket"}, Action: api.ActionBlock, Args: cond(api.OpEqual, "AF_NETLINK")})
	rs, err := Merge([]*api.KubeArmorSeccompPolicy{app, harden}, Target{Namespace: "ns", Labels: web, Runtime: RuntimeNone})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(rs.Systemd()); !strings.Contains(got, "\nRestrictAddressFamilies=~AF_NETLINK\n") {
		t.Errorf("drop-in:\n%s", got)
	}
	var b strings.Builder
	if err := rs.Explain(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "\n  if arg0 == 0x10  Block   policy ns/harden\n") {
		t.Errorf("explain:\n%s", b.String())
	}
}
