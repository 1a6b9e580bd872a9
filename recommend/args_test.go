package recommend

import (
	"slices"
	"strings"
	"testing"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
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
