package deploy

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

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
	prog, _, err := rs.Program()
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
	if err := loadProgram(prog); err != nil {
		return fmt.Errorf("exec %s: load seccomp filter: %w", argv[0], err)
	}
	err = syscall.Exec(path, argv, env)
	// Only reached when execve failed, perhaps refused by the filter itself.
	return fmt.Errorf("exec %s (under the profile; execve must be allowed): %w", path, os.NewSyscallError("execve", err))
}

// loadProgram sets no_new_privs and installs the program as the calling
// thread's seccomp filter, synchronised to every thread of the process
// (TSYNC). kscmp assembles the program itself (merge.RuleSet.Program), so
// it loads it itself too: go-seccomp-bpf loads only what it assembles.
func loadProgram(prog []bpf.Instruction) error {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return fmt.Errorf("assemble: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, in := range raw {
		filter[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(filter)
	switch {
	case errno != 0:
		return os.NewSyscallError("seccomp", errno)
	case r != 0:
		return errors.New("seccomp: thread " + fmt.Sprint(r) + " cannot take the filter (TSYNC)")
	}
	return nil
}
