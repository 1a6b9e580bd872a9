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
// the default action: an allow-list refuses them.
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
	for _, act := range api.Actions {
		if act == api.ActionAllow && !r.AllowList() {
			continue
		}
		var names []string
		for _, n := range r.Names(act) {
			if _, ok := native.SyscallNames[n]; ok {
				names = append(names, n)
			} else {
				skipped = append(skipped, n)
			}
		}
		if len(names) > 0 {
			f.Policy.Syscalls = append(f.Policy.Syscalls, seccomp.SyscallGroup{Names: names, Action: actions[act]})
		}
	}
	if len(f.Policy.Syscalls) == 0 {
		return f, skipped, fmt.Errorf("in-process filter: no system call of the %s ABI in the profile", native.Name)
	}
	return f, skipped, nil
}
