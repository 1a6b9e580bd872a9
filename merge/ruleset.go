// Package merge is kscmp's one merger: every policy that selects a container
// becomes one rule set (deny wins), compiled to the OCI/Docker seccomp JSON,
// a systemd drop-in and an in-process BPF filter.
//
// The rule set is a pure function of the current policies and the target:
// recomputed from scratch, independent of the order of the policies, and
// byte-identical when compiled twice from the same input.
package merge

import (
	"cmp"
	"slices"

	"github.com/kubearmor/kscmp/api"
)

// SourceKind says what put a system call into a rule set.
type SourceKind string

// The kinds of sources.
const (
	SourcePolicy  SourceKind = "policy"  // a KubeArmorSeccompPolicy; Name is namespace/name
	SourceRuntime SourceKind = "runtime" // the container runtime's start-up set; Name is the runtime
	SourceKernel  SourceKind = "kernel"  // calls the kernel makes on a process's behalf (KernelSyscalls)
	SourceProfile SourceKind = "profile" // a compiled profile read back; Name is its file
	// SourceArgs refuses a call whose arguments seccomp cannot read while
	// another call's are filtered (clone3 beside clone); Name is that call.
	SourceArgs SourceKind = "args"
)

// Source is one contribution to a system call's entry.
type Source struct {
	Kind   SourceKind `json:"kind"`
	Name   string     `json:"name"`
	Action api.Action `json:"action"`
	// Condition is the argument conditions under which the source names
	// the call, for people ("arg0 & 0x10000000 == 0"); "" for any
	// arguments.
	Condition string `json:"condition,omitempty"`
}

// Syscall is one system call in a rule set: the action that won and every
// source that named it, the overridden ones included.
type Syscall struct {
	Name string `json:"name"`
	// Action is taken for arguments no Conditional entry matches; "" when
	// only conditional rules name the call (the default action applies).
	Action api.Action `json:"action"`
	// Conditional are the actions under argument conditions that are
	// stronger than Action, strongest first: the first that matches
	// decides (see RuleSet.Decide).
	Conditional []Conditional `json:"conditional,omitempty"`
	// Errno, when not 0, is the error a Block returns instead of EPERM:
	// ENOSYS for clone3 (see clone3ENOSYS).
	Errno   int      `json:"errno,omitempty"`
	Sources []Source `json:"sources"`
}

// RuleSet is the merged result for one target.
type RuleSet struct {
	// DefaultAction is what the calls no entry names get: the strongest of
	// the applicable policies' defaults (deny wins). An allow-list policy's
	// default is its spec.seccomp.defaultAction, Block unless it says Audit
	// (complain mode); a deny-list's is Allow. So one Block allow-list makes
	// the profile refuse what is not listed; Audit allow-lists alone log it.
	DefaultAction api.Action `json:"defaultAction"`
	// DefaultSources are the allow-list policies' defaults (Kind policy,
	// Action their default), sorted: those whose Action is DefaultAction
	// decided it. Deny-list policies have none.
	DefaultSources []Source `json:"defaultSources,omitempty"`
	// Arches are the ABIs the profile covers, in canonical order.
	Arches []api.Arch `json:"arches"`
	// FamilyArches is true when no policy names an architecture, so Arches
	// are the target family's.
	FamilyArches bool `json:"familyArches,omitempty"`
	// Syscalls are sorted by name; each name appears once.
	Syscalls []Syscall `json:"syscalls"`
	// Policies are the keys (namespace/name) of the policies that apply,
	// sorted.
	Policies []string `json:"policies"`
	// Runtime is the container runtime whose start-up set was added.
	Runtime Runtime `json:"runtime,omitempty"`
	// LogRefusals is true when the profile asks the kernel to log the
	// calls it refuses with an error (SECCOMP_FILTER_FLAG_LOG, see
	// FlagLog): the runtime takes the flag and the profile can refuse.
	LogRefusals bool `json:"logRefusals,omitempty"`
	// Warnings say what may not work as the policies intend.
	Warnings []string `json:"warnings,omitempty"`
}

// AllowList reports whether the rule set is an allow-list: the calls it
// does not list are refused (default Block) or, in complain mode, logged
// (default Audit). Either way its Allow entries are the allow-list.
func (r *RuleSet) AllowList() bool {
	return r.DefaultAction == api.ActionBlock || r.DefaultAction == api.ActionAudit
}

// Complain reports whether the rule set is an allow-list in complain mode:
// what it does not list runs and is logged (default Audit).
func (r *RuleSet) Complain() bool { return r.DefaultAction == api.ActionAudit }

// Lookup returns the entry of a system call, or nil.
func (r *RuleSet) Lookup(name string) *Syscall {
	i, ok := slices.BinarySearchFunc(r.Syscalls, name, func(s Syscall, n string) int { return cmp.Compare(s.Name, n) })
	if !ok {
		return nil
	}
	return &r.Syscalls[i]
}

// Names returns the names of the system calls whose action is a, sorted.
func (r *RuleSet) Names(a api.Action) []string {
	var out []string
	for _, s := range r.Syscalls {
		if s.Action == a {
			out = append(out, s.Name)
		}
	}
	return out
}

// Empty reports whether no policy applies.
func (r *RuleSet) Empty() bool { return len(r.Policies) == 0 && len(r.Syscalls) == 0 }

func compareSource(a, b Source) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Action.Precedence(), b.Action.Precedence()),
		cmp.Compare(a.Condition, b.Condition))
}
