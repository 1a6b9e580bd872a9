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
	RuntimeNone Runtime = "none"
)

// Runtimes lists the valid runtime names.
var Runtimes = [...]Runtime{RuntimeRunc, RuntimeCrun, RuntimeNone}

// startup holds the start-up sets, found empirically with Debian's runc
// 1.1.5 and crun 1.8.1 (internal/ocitest's start-up search,
// KSCMP_STARTUP_SEARCH=1, and its repeated-start stress test). They are the
// sets for noNewPrivileges false, what Kubernetes gives by default, which
// include the smaller sets needed with noNewPrivileges true.
var startup = map[Runtime][]string{
	// runc's init, after it loads the filter: it closes its fds, finishes
	// the user change (capget/capset/setgroups/setgid/setuid), and execs.
	// runc init is a Go program: its runtime keeps running on other
	// threads until execve (sysmon's nanosleep, the netpoller's epoll,
	// preemption signals and their rt_sigreturn, futex wake-ups, memory),
	// so those calls are needed too, though not on every start: a profile
	// without them fails now and then, with SIGSEGV or SIGSYS.
	RuntimeRunc: {
		"capget", "capset", "chdir", "clone", "close", "epoll_ctl", "epoll_pwait",
		"execve", "exit", "fstat", "fstatfs", "futex", "getcwd", "getdents64",
		"getpid", "gettid", "madvise", "mmap", "munmap", "nanosleep", "openat",
		"read", "rt_sigprocmask", "rt_sigreturn", "sched_yield", "setgid",
		"setgroups", "setuid", "sigaltstack", "tgkill", "write",
	},
	// crun is written in C and loads the filter right before execve.
	RuntimeCrun: {"execve"},
	RuntimeNone: nil,
}

// ParseRuntime checks a runtime name.
func ParseRuntime(s string) (Runtime, error) {
	r := Runtime(s)
	if s == "" {
		return RuntimeRunc, nil
	}
	if !slices.Contains(Runtimes[:], r) {
		return "", fmt.Errorf("unknown runtime %q (want runc, crun or none)", s)
	}
	return r, nil
}

// StartupSyscalls returns the system calls the runtime makes between
// installing the filter and the workload's execve, sorted. The slice is a
// copy.
func (r Runtime) StartupSyscalls() []string {
	return slices.Clone(startup[r])
}
