package merge

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kubearmor/kscmp/api"
)

// systemdArgs is what a drop-in says for the calls with argument
// conditions, which SystemCallFilter= cannot: systemd's own directives
// where a call's conditions mean exactly what one does, else a warning.
type systemdArgs struct {
	directives []string // RestrictNamespaces=, RestrictAddressFamilies=, LockPersonality=
	allow      []string // calls the filter allows because a directive checks their arguments
	warnings   []string
}

// namespaceFlags are the CLONE_NEW* flags and systemd's names for them
// (RestrictNamespaces=). CLONE_NEWTIME is left out: systemd 252 has no
// name for it.
var namespaceFlags = []struct {
	flag uint64
	name string
}{{0x2000000, "cgroup"}, {0x8000000, "ipc"}, {0x20000, "mnt"}, {0x40000000, "net"}, {0x20000000, "pid"}, {0x10000000, "user"}, {0x4000000, "uts"}}

// runs reports whether the action lets the call run.
func runs(a api.Action) bool { return a == api.ActionAllow || a == api.ActionAudit }

// systemdArgs maps each call with conditions: clone, unshare and setns to
// RestrictNamespaces=, socket to RestrictAddressFamilies=, personality to
// LockPersonality=yes, each only when probing the rule set with every
// combination shows the directive refuses exactly what the conditions do.
// Any other call keeps its action for arguments no condition matches,
// and a warning says so: systemd cannot check its arguments.
func (r *RuleSet) systemdArgs() systemdArgs {
	var out systemdArgs
	var nsAllowed []string // per namespace call, the allowed set, joined
	nsSet := -1            // intersection of the allowed sets, as a bit set of namespaceFlags
	for _, s := range r.Syscalls {
		if len(s.Conditional) == 0 {
			continue
		}
		ok := false
		switch s.Name {
		case "clone", "unshare", "setns":
			var set int
			if set, ok = r.namespaceSet(s.Name); ok {
				nsAllowed = append(nsAllowed, s.Name+": "+namespaceNames(set))
				if nsSet < 0 {
					nsSet = set
				} else {
					nsSet &= set
				}
			}
		case "socket":
			var fams []string
			if fams, ok = r.familySet(); ok {
				if len(fams) == 0 {
					fams = []string{"none"}
				}
				out.directives = append(out.directives, "RestrictAddressFamilies="+strings.Join(fams, " "))
			}
		case "personality":
			if ok = r.personalityLocked(); ok {
				out.directives = append(out.directives, "LockPersonality=yes")
			}
		}
		if ok {
			out.allow = append(out.allow, s.Name)
			continue
		}
		act := s.Action
		if act == "" {
			act = r.DefaultAction
		}
		var conds []string
		for _, c := range s.Conditional {
			conds = append(conds, fmt.Sprintf("%s if %s", c.Action, describeArgs(c.Args)))
		}
		out.warnings = append(out.warnings, fmt.Sprintf("systemd cannot check the arguments of %s (%s): the drop-in %s it whatever its arguments", s.Name, strings.Join(conds, "; "), verbNow(act)))
	}
	if nsSet >= 0 {
		if nsSet != 1<<len(namespaceFlags)-1 {
			names := namespaceNames(nsSet)
			if nsSet == 0 {
				names = "yes"
			}
			out.directives = append(out.directives, "RestrictNamespaces="+names)
		}
		if len(nsAllowed) > 1 && slices.ContainsFunc(nsAllowed, func(s string) bool {
			return s[strings.Index(s, ":"):] != nsAllowed[0][strings.Index(nsAllowed[0], ":"):]
		}) {
			out.warnings = append(out.warnings, "RestrictNamespaces= applies one set to clone, unshare and setns: the narrowest of "+strings.Join(nsAllowed, ", "))
		}
	}
	slices.Sort(out.directives)
	return out
}

// verbNow says what the drop-in does with a call of action a.
func verbNow(a api.Action) string {
	if runs(a) {
		return "allows"
	}
	return "refuses"
}

// namespaceNames lists systemd's names of the namespaces in set.
func namespaceNames(set int) string {
	var names []string
	for i, f := range namespaceFlags {
		if set&(1<<i) != 0 {
			names = append(names, f.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, " ")
}

// namespaceSet finds which namespaces the call may create (clone,
// unshare: flags in arg0) or join (setns: arg1), and reports whether the
// rule set decides as RestrictNamespaces= does: without namespace flags
// the call runs, and with flags F it runs exactly when every namespace of F
// is allowed, whatever the other flags (CLONE_THREAD, CLONE_VM, SIGCHLD).
func (r *RuleSet) namespaceSet(call string) (int, bool) {
	arg := 0
	if call == "setns" {
		arg = 1
	}
	decide := func(flags uint64) bool {
		var x [6]uint64
		x[arg] = flags
		return runs(r.Decide(call, x))
	}
	set := 0
	for i, f := range namespaceFlags {
		if decide(f.flag) {
			set |= 1 << i
		}
	}
	others := []uint64{0, 0x11, 0x3d0f00} // none; SIGCHLD; a thread's flags (VM FS FILES SIGHAND THREAD SYSVSEM SETTLS PARENT_SETTID CHILD_CLEARTID)
	if call == "setns" {
		others = []uint64{0}
	}
	for combo := range 1 << len(namespaceFlags) {
		var flags uint64
		for i, f := range namespaceFlags {
			if combo&(1<<i) != 0 {
				flags |= f.flag
			}
		}
		if call == "setns" && combo == 0 {
			continue // setns(fd, 0) joins whatever fd is: systemd decides that itself
		}
		for _, o := range others {
			if decide(flags|o) != (combo&^set == 0) {
				return 0, false
			}
		}
	}
	return set, true
}

// familySet lists the address families for RestrictAddressFamilies=
// and reports whether the rule set decides socket by the family alone,
// whatever the type and protocol: an allow-list of named families when
// every other family (unnamed ones and values past the last family
// included) is refused, or a "~" deny-list of named families when every
// other one runs.
func (r *RuleSet) familySet() ([]string, bool) {
	names := map[uint64]string{}
	for name, v := range api.ArgSymbols {
		if strings.HasPrefix(name, "AF_") && name != "AF_LOCAL" && name != "AF_UNSPEC" {
			names[v] = name
		}
	}
	var allowed, refused []uint64
	for af := uint64(1); af < 64; af++ {
		var runsFor []bool
		for _, typ := range []uint64{1, 2, 3, 0x80801} { // STREAM, DGRAM, RAW, STREAM|NONBLOCK|CLOEXEC
			for _, proto := range []uint64{0, 6, 17} {
				runsFor = append(runsFor, runs(r.Decide("socket", [6]uint64{af, typ, proto})))
			}
		}
		if slices.Contains(runsFor, !runsFor[0]) {
			return nil, false // depends on the type or protocol
		}
		if runsFor[0] {
			allowed = append(allowed, af)
		} else {
			refused = append(refused, af)
		}
	}
	var beyond []bool
	for _, af := range []uint64{0x100, 0xffffffff, 1 << 32} {
		beyond = append(beyond, runs(r.Decide("socket", [6]uint64{af})))
	}
	named := func(afs []uint64, prefix string) ([]string, bool) {
		var out []string
		for _, af := range afs {
			name, ok := names[af]
			if !ok {
				return nil, false // a family systemd cannot be told of
			}
			out = append(out, prefix+name)
		}
		slices.Sort(out)
		return out, true
	}
	switch {
	case !slices.Contains(beyond, true):
		return named(allowed, "")
	case !slices.Contains(beyond, false):
		out, ok := named(refused, "")
		if ok && len(out) > 0 {
			out[0] = "~" + out[0]
		}
		return out, ok && len(out) > 0
	}
	return nil, false
}

// personalityLocked reports whether personality runs exactly for a query
// (0xffffffff) and PER_LINUX, as LockPersonality=yes lets a process whose
// persona is PER_LINUX do.
func (r *RuleSet) personalityLocked() bool {
	for _, v := range []uint64{0, 0xffffffff} {
		if !runs(r.Decide("personality", [6]uint64{v})) {
			return false
		}
	}
	for _, v := range []uint64{8, 0x20000, 0x20008, 0x40000, 0x400000, 0x0400000 | 8, 1} {
		if runs(r.Decide("personality", [6]uint64{v})) {
			return false
		}
	}
	return true
}
