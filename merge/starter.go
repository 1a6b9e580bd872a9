package merge

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kubearmor/kscmp/api"
)

// starter lists, per native ABI, what every dynamically linked program calls
// before its main: the kernel's execve, then the loader (glibc's ld.so)
// mapping and protecting itself, the C library and its dependencies, and
// setting up thread-local storage. Each entry is a set of alternatives, the
// current name first: a C library uses one of them (glibc 2.33 and later
// newfstatat, older ones fstat; openat since glibc 2.26, open before). A
// profile that refuses the current name breaks every current program,
// unless it lists an older name as allowed: then it was made for a program
// of an older C library, which is what it runs.
//
// Found on x86_64 (Debian 12, glibc 2.36) with strace -f of /bin/true and
// /bin/ls, then by running each under kscmp exec with a profile that refuses
// one call at a time: refusing any entry below stops both before main (a
// segfault, or "error while loading shared libraries"; arch_prctl: "cannot set
// up thread-local storage"); refusing any other call they make before main
// (access, brk, munmap, prlimit64, rseq, set_robust_list, set_tid_address)
// does not. TestStarterSyscalls (cmd/kscmp) repeats that proof on every run.
// The aarch64 list is the same loader without arch_prctl (its thread pointer
// is a register) and without open (the ABI has only openat); it was not
// measured here.
var starter = map[api.Arch][][]string{
	api.ArchX86_64: {{"execve"}, {"mmap"}, {"mprotect"}, {"arch_prctl"}, {"openat", "open"},
		{"read"}, {"pread64"}, {"close"}, {"newfstatat", "fstat"}},
	api.ArchAARCH64: {{"execve"}, {"mmap"}, {"mprotect"}, {"openat"},
		{"read"}, {"pread64"}, {"close"}, {"newfstatat", "fstat"}},
}

// StarterSyscalls returns, for a native ABI (x86_64, aarch64), the calls
// every dynamically linked program makes to start: each entry a set of
// alternatives, of which a program needs one. Other ABIs have none listed.
// The slices are copies.
func StarterSyscalls(a api.Arch) [][]string {
	out := make([][]string, len(starter[a]))
	for i, alt := range starter[a] {
		out[i] = slices.Clone(alt)
	}
	return out
}

// StarterRefused returns the start-up calls (StarterSyscalls) the rule set
// refuses on its native ABIs, or on native when it names no ABI: each
// entry's first name, sorted, when the rule set refuses it and allows no
// alternative by name. A non-empty result means a dynamically linked
// program does not start under the profile, a mistake a person should be
// told of before enforcing it.
func (r *RuleSet) StarterRefused(native api.Arch) []string {
	arches := r.Arches
	if len(arches) == 0 {
		arches = []api.Arch{native}
	}
	var out []string
	for _, a := range arches {
		for _, alt := range starter[a] {
			if !r.startable(alt) && !slices.Contains(out, alt[0]) {
				out = append(out, alt[0])
			}
		}
	}
	slices.Sort(out)
	return out
}

// startable reports whether the rule set lets a program make the start-up
// call with alternatives alt: the current name runs, or an older one is
// listed as allowed (a default Allow of an older name says nothing of the
// program's C library).
func (r *RuleSet) startable(alt []string) bool {
	if r.allows(alt[0]) {
		return true
	}
	for _, name := range alt[1:] {
		if r.Lookup(name) != nil && r.allows(name) {
			return true
		}
	}
	return false
}

// allows reports whether a call of that name runs under the rule set: its
// own entry allows or audits it, or it has none and the default runs it.
func (r *RuleSet) allows(name string) bool {
	act := r.DefaultAction
	if s := r.Lookup(name); s != nil && s.Action != "" {
		act = s.Action
	}
	return act == api.ActionAllow || act == api.ActionAudit
}

// StarterWarning says, for people, which start-up calls the rule set
// refuses (see StarterRefused), or returns "" when it refuses none.
func (r *RuleSet) StarterWarning(native api.Arch) string {
	refused := r.StarterRefused(native)
	if len(refused) == 0 {
		return ""
	}
	return fmt.Sprintf("the profile refuses %s, which every dynamically linked program calls before its main: a program started under it fails at once (a segfault, or \"error while loading shared libraries\")",
		strings.Join(refused, ", "))
}
