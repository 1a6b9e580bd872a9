package merge

import (
	"fmt"
	"slices"

	"github.com/kubearmor/kscmp/api"
)

// ComponentProfile compiles the own profile of one of kscmp's components
// (the agent, the node recorder) from its built-in policy p, for a node of
// the family, as OCI JSON: the policy's allow-list without the calls the
// family's ABIs do not have (one policy serves both families: arch_prctl
// is amd64's only), plus the start-up sets of every runtime kscmp knows
// (RuntimeAny: the profile is installed before anything on the node could
// say which runtime starts the container). container is the component's
// container in its pod; what names the component in errors. p is not
// changed.
func ComponentProfile(p *api.KubeArmorSeccompPolicy, family api.Family, container, what string) ([]byte, error) {
	arches, err := family.Arches()
	if err != nil {
		return nil, err
	}
	p = p.DeepCopy()
	rules := p.Spec.Seccomp.AllRules()
	for i := range rules {
		rules[i].Syscalls = slices.DeleteFunc(slices.Clone(rules[i].Syscalls), func(s string) bool { return !api.SyscallKnown(s, arches) })
	}
	p.Spec.Seccomp = api.SeccompSpec{Arch: p.Spec.Seccomp.Arch, Rules: rules}
	rs, err := Merge([]*api.KubeArmorSeccompPolicy{p}, Target{Namespace: p.Namespace,
		Labels: p.Spec.Selector.MatchLabels, Container: container, Family: family, Runtime: RuntimeAny})
	if err != nil {
		return nil, fmt.Errorf("%s's own profile (%s): %w", what, family, err)
	}
	if len(rs.Policies) != 1 || !rs.AllowList() {
		return nil, fmt.Errorf("%s's own profile (%s): the policy does not select the %s container", what, family, container)
	}
	return rs.MarshalOCI()
}
