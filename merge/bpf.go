package merge

import (
	"fmt"
	"runtime"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"

	"github.com/kubearmor/kscmp/api"
)

// Filter returns the rule set as an in-process seccomp filter for this
// process's native ABI (elastic/go-seccomp-bpf). System calls the native ABI
// does not have are left out and returned in skipped. Calls of other ABIs get
// the default action: an allow-list refuses them. Calls with argument
// conditions are left out: Program compiles them (the library's own
// conditions misbehave, see Program).
func (r *RuleSet) Filter() (f seccomp.Filter, skipped []string, err error) {
	native, err := arch.GetInfo(runtime.GOARCH)
	if err != nil {
		return f, nil, fmt.Errorf("in-process filter: %w", err)
	}
	actions := map[api.Action]seccomp.Action{
		api.ActionAllow: seccomp.ActionAllow,
		api.ActionAudit: seccomp.ActionLog,
		api.ActionBlock: seccomp.ActionErrno, // go-seccomp-bpf returns EPERM
		api.ActionKill:  seccomp.ActionKillProcess,
	}
	f.NoNewPrivs = true
	f.Flag = seccomp.FilterFlagTSync
	f.Policy.DefaultAction = actions[r.DefaultAction]
	groups := make(map[api.Action]*seccomp.SyscallGroup)
	for i := range r.Syscalls {
		s := &r.Syscalls[i]
		regs, err := s.regions(r.DefaultAction)
		if err != nil {
			return f, nil, fmt.Errorf("in-process filter: %w", err)
		}
		if s.Errno != 0 || len(regs) != 1 || len(regs[0].terms) != 1 || len(regs[0].terms[0]) != 0 {
			continue // with conditions (Program), or nothing to list
		}
		if _, ok := native.SyscallNames[s.Name]; !ok {
			if len(regs) > 0 {
				skipped = append(skipped, s.Name)
			}
			continue
		}
		for _, reg := range regs {
			g := groups[reg.action]
			if g == nil {
				g = &seccomp.SyscallGroup{Action: actions[reg.action]}
				groups[reg.action] = g
			}
			g.Names = append(g.Names, s.Name)
		}
	}
	for _, act := range api.Actions {
		if g := groups[act]; g != nil {
			f.Policy.Syscalls = append(f.Policy.Syscalls, *g)
		}
	}
	if len(f.Policy.Syscalls) == 0 {
		return f, skipped, fmt.Errorf("in-process filter: no system call of the %s ABI in the profile", native.Name)
	}
	return f, skipped, nil
}
