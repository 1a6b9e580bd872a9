package recommend

import (
	"slices"

	"github.com/kubearmor/kscmp/api"
)

// renames maps a system call that one family's ABI lacks to the call the
// other family's libc uses for the same job. Names that exist on both
// families map to themselves and are not listed: that part of the table is
// derived from the syscall tables (see Equivalents).
var renames = map[string][]string{
	"access":       {"faccessat"},
	"alarm":        {"setitimer"},
	"chmod":        {"fchmodat"},
	"chown":        {"fchownat"},
	"creat":        {"openat"},
	"dup2":         {"dup3"},
	"epoll_create": {"epoll_create1"},
	"epoll_wait":   {"epoll_pwait"},
	"eventfd":      {"eventfd2"},
	"fork":         {"clone"},
	"futimesat":    {"utimensat"},
	"getdents":     {"getdents64"},
	"getpgrp":      {"getpgid"},
	"inotify_init": {"inotify_init1"},
	"lchown":       {"fchownat"},
	"link":         {"linkat"},
	"lstat":        {"newfstatat"},
	"mkdir":        {"mkdirat"},
	"mknod":        {"mknodat"},
	"open":         {"openat"},
	"pause":        {"rt_sigsuspend"},
	"pipe":         {"pipe2"},
	"poll":         {"ppoll"},
	"readlink":     {"readlinkat"},
	"rename":       {"renameat2"},
	"rmdir":        {"unlinkat"},
	"select":       {"pselect6"},
	"signalfd":     {"signalfd4"},
	"stat":         {"newfstatat"},
	"symlink":      {"symlinkat"},
	"time":         {"clock_gettime"},
	"unlink":       {"unlinkat"},
	"ustat":        {"statfs"},
	"utime":        {"utimensat"},
	"utimes":       {"utimensat"},
	"vfork":        {"clone"},
	// aarch64 → x86_64: the syscall table names aarch64's newfstatat
	// "fstatat".
	"fstatat": {"newfstatat"},
}

// Equivalent is one system call added for another family.
type Equivalent struct {
	Name string   // the call on the target ABI
	Arch api.Arch // the target ABI
	For  string   // the observed call it stands for
}

// Equivalents returns, for system calls observed on ABI from, the calls the
// same program needs on ABI to, sorted, and the observed calls that have no
// equivalent there. A call that exists on both ABIs maps to itself; the
// others go through the rename table.
func Equivalents(from, to api.Arch, names []string) (eq []Equivalent, none []string) {
	seen := map[string]bool{}
	for _, n := range names {
		var targets []string
		if to.Has(n) {
			targets = []string{n}
		} else {
			for _, r := range renames[n] {
				if to.Has(r) {
					targets = append(targets, r)
				}
			}
		}
		if len(targets) == 0 {
			none = append(none, n)
			continue
		}
		for _, tgt := range targets {
			key := tgt + "\x00" + n
			if !seen[key] {
				seen[key] = true
				eq = append(eq, Equivalent{Name: tgt, Arch: to, For: n})
			}
		}
	}
	slices.SortFunc(eq, func(a, b Equivalent) int {
		if a.Name != b.Name {
			if a.Name < b.Name {
				return -1
			}
			return 1
		}
		if a.For < b.For {
			return -1
		}
		if a.For > b.For {
			return 1
		}
		return 0
	})
	slices.Sort(none)
	return eq, none
}

// otherFamily returns the ABIs of the other family that correspond to an
// observed ABI: x86_64 → aarch64, i386 → arm, aarch64 → x86_64, arm → i386.
// x32 has no counterpart.
func otherFamily(a api.Arch) (api.Arch, bool) {
	switch a {
	case api.ArchX86_64:
		return api.ArchAARCH64, true
	case api.ArchX86:
		return api.ArchARM, true
	case api.ArchAARCH64:
		return api.ArchX86_64, true
	case api.ArchARM:
		return api.ArchX86, true
	}
	return "", false
}
