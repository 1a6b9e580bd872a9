package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	seccomp "github.com/elastic/go-seccomp-bpf"

	"github.com/kubearmor/kscmp/merge"
)

// Exec loads the rule set into the calling process as a seccomp filter (with
// no_new_privs, synchronised to every thread) and replaces the process with
// argv[0], found in PATH. It returns only on error. Exec resolves the
// command before it loads the filter, but the Go runtime's other threads
// keep running until execve (futex, nanosleep, epoll_pwait, clone3 for a
// new thread, ...), so an allow-list must allow those as well as execve
// and what the command itself calls (examples/coreutils.yaml). In complain
// mode (default Audit) the filter's default is the log action: what the
// allow-list does not allow runs, and the kernel logs it
// (examples/complain.yaml).
func Exec(rs *merge.RuleSet, argv []string, env []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("exec: no command given")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	filter, _, err := rs.Filter()
	if err != nil {
		return fmt.Errorf("exec %s: %w", argv[0], err)
	}
	if !seccomp.Supported() {
		return fmt.Errorf("exec %s: the kernel does not support seccomp filters", argv[0])
	}
	// The filter must be on the thread that calls execve; TSYNC puts it on
	// the other threads too.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := seccomp.LoadFilter(filter); err != nil {
		return fmt.Errorf("exec %s: load seccomp filter: %w", argv[0], err)
	}
	err = syscall.Exec(path, argv, env)
	// Only reached when execve failed, perhaps refused by the filter itself.
	return fmt.Errorf("exec %s (under the profile; execve must be allowed): %w", path, os.NewSyscallError("execve", err))
}
