package merge

import (
	"fmt"
	"slices"
)

// Runtime names the OCI runtime that starts the container. An allow-list
// profile must also allow what the runtime itself calls after it installs
// the filter and before the workload's first instruction, or the container
// never starts.
type Runtime string

// The runtimes kscmp knows.
const (
	RuntimeRunc Runtime = "runc"
	RuntimeCrun Runtime = "crun"
	// RuntimeAny is for a profile that must start under every runtime kscmp
	// knows (runc and crun), when the node's is not known where the profile
	// is made: the union of their start-up sets.
	RuntimeAny  Runtime = "any"
	RuntimeNone Runtime = "none"
)

// Runtimes lists the valid runtime names.
var Runtimes = [...]Runtime{RuntimeRunc, RuntimeCrun, RuntimeAny, RuntimeNone}

// startupSet is what a runtime calls after it loads the container's
// filter, up to and including the execve of the workload.
type startupSet struct {
	// required: refusing any one of them stops the container from
	// starting, every time.
	required []string
	// extra: needed now and then, or for something that fails quietly;
	// each is explained where it is listed.
	extra []string
}

// recordedStartup holds the start-up sets per runtime version, as
// internal/ocitest's start-up search (KSCMP_STARTUP_SEARCH=1) found them: a
// 12-byte workload that only calls exit_group, every candidate removed in
// turn, a call kept only when removing it broke start-up in two rounds of up
// to 100 runs. They are the sets for noNewPrivileges false, what Kubernetes
// gives by default; they contain the smaller sets that noNewPrivileges true
// needs, and are the same for root and other users. The version is what
// `<runtime> --version` prints after "version " on its first line.
//
// TestStartupSets (merge) proves the set of the installed version both ways
// on every run, and fails with the set it needs when the installed version
// has none here; the opt-in search fails when it finds another set.
var recordedStartup = []struct {
	runtime Runtime
	version string
	set     startupSet
}{
	{RuntimeRunc, "1.1.5+ds1", startupSet{
		// runc init closes its descriptors, looks up the entrypoint,
		// finishes the user change and executes the workload.
		required: []string{"capget", "capset", "chdir", "close", "execve", "faccessat2", "fstat",
			"fstatfs", "getcwd", "getdents64", "getppid", "newfstatat", "openat",
			"prctl", "read", "setgid", "setgroups", "setuid", "write"},
		extra: []string{
			// runc init is a Go program whose runtime threads go on until
			// execve: futex and rt_sigreturn (after a preemption signal)
			// break start-up in 1 of 3 to 1 of 40 runs when refused;
			// nanosleep, sched_yield, epoll_pwait and epoll_ctl (sysmon,
			// the netpoller) were seen after the filter too.
			"epoll_ctl", "epoll_pwait", "futex", "nanosleep", "rt_sigreturn", "sched_yield",
			// runc chowns stdio for a non-root user after the filter and
			// ignores EPERM, but the workload then cannot reopen
			// /dev/stdout.
			"fchown",
		},
	}},
	// crun loads the filter last: with noNewPrivileges true only execve
	// follows; otherwise the user and capability change and its signal
	// reset come after it too.
	{RuntimeCrun, "1.8.1", startupSet{
		required: []string{"capset", "execve", "prctl", "rt_sigaction", "rt_sigprocmask", "setresgid", "setresuid", "write"},
	}},
}

// startup holds the set merge adds per runtime: the node's runtime version
// is not known where a profile is made, so a runtime's set is the union of
// its recorded versions' sets (required where any version requires it).
var startup = map[Runtime]startupSet{}

func init() {
	for _, rec := range recordedStartup {
		startup[rec.runtime] = unionSets(startup[rec.runtime], rec.set)
	}
	startup[RuntimeNone] = startupSet{}
	// RuntimeAny: what any one runtime requires is required, the rest is
	// extra.
	startup[RuntimeAny] = unionSets(startup[RuntimeRunc], startup[RuntimeCrun])
}

// unionSets returns the union of a and b: required where either requires
// it, extra for the rest, both sorted.
func unionSets(a, b startupSet) startupSet {
	var u startupSet
	u.required = slices.Concat(a.required, b.required)
	slices.Sort(u.required)
	u.required = slices.Compact(u.required)
	for _, name := range slices.Concat(a.extra, b.extra) {
		if !slices.Contains(u.required, name) && !slices.Contains(u.extra, name) {
			u.extra = append(u.extra, name)
		}
	}
	slices.Sort(u.extra)
	return u
}

// RecordedStartup returns the start-up set recorded for one version of the
// runtime (as `<runtime> --version` prints it after "version "), sorted:
// required, without any one of which the container does not start, and
// extra, needed now and then or for something that fails quietly. ok is
// false when that version has no recorded set.
func (r Runtime) RecordedStartup(version string) (required, extra []string, ok bool) {
	for _, rec := range recordedStartup {
		if rec.runtime == r && rec.version == version {
			required, extra = slices.Clone(rec.set.required), slices.Clone(rec.set.extra)
			slices.Sort(required)
			slices.Sort(extra)
			return required, extra, true
		}
	}
	return nil, nil, false
}

// RecordedVersions returns the versions of the runtime that have a
// recorded start-up set, sorted.
func (r Runtime) RecordedVersions() []string {
	var out []string
	for _, rec := range recordedStartup {
		if rec.runtime == r {
			out = append(out, rec.version)
		}
	}
	slices.Sort(out)
	return out
}

// KernelSyscalls are made by the kernel on a process's behalf, not by its
// code: restart_syscall resumes a call a signal interrupted (after SIGSTOP
// and SIGCONT, the freezer, ptrace, or a signal another process sends), and
// rt_sigreturn returns from every signal handler. A recording catches them
// only by chance, and refusing them kills the process at a random moment,
// so every allow-list for a runtime allows them (RuntimeNone leaves the
// policies' rules exactly as they are).
func KernelSyscalls() []string { return []string{"restart_syscall", "rt_sigreturn"} }

// ParseRuntime checks a runtime name.
func ParseRuntime(s string) (Runtime, error) {
	r := Runtime(s)
	if s == "" {
		return RuntimeRunc, nil
	}
	if !slices.Contains(Runtimes[:], r) {
		return "", fmt.Errorf("unknown runtime %q (want runc, crun, any or none)", s)
	}
	return r, nil
}

// StartupSyscalls returns the system calls the runtime makes between
// installing the filter and the workload's execve, sorted; for RuntimeAny,
// those of every runtime. The slice is a copy.
func (r Runtime) StartupSyscalls() []string {
	set := startup[r]
	out := append(slices.Clone(set.required), set.extra...)
	slices.Sort(out)
	return out
}

// RequiredStartupSyscalls returns the part of StartupSyscalls without which
// the container never starts (for RuntimeAny: under at least one runtime),
// sorted.
func (r Runtime) RequiredStartupSyscalls() []string {
	out := slices.Clone(startup[r].required)
	slices.Sort(out)
	return out
}
