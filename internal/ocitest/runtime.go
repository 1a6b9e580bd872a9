package ocitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// runtime invokes one runtime binary with a private state directory.
type runtime struct {
	bin  string // absolute path of runc or crun
	root string // --root: the runtime's state directory
	log  string // --log: the runtime's own JSON log
	// crunHybrid runs crun in a private mount namespace in which the
	// cgroup v2 controller list of a hybrid cgroup layout reads empty (see
	// crunNeedsHybridWorkaround).
	crunHybrid bool
}

// unifiedControllers is read by crun to decide whether it supports a hybrid
// cgroup layout.
const unifiedControllers = "/sys/fs/cgroup/unified/cgroup.controllers"

// command returns an unstarted "<runtime> --root R --log L <args...>".
func (r *runtime) command(args ...string) *exec.Cmd {
	return r.wrappedCommand(nil, args...)
}

// wrappedCommand is command with the runtime run through wrapper, a
// command prefix such as "strace -f".
func (r *runtime) wrappedCommand(wrapper []string, args ...string) *exec.Cmd {
	full := slices.Concat(wrapper, []string{r.bin, "--root", r.root, "--log", r.log, "--log-format", "json"}, args)
	var cmd *exec.Cmd
	if r.crunHybrid {
		// A new mount namespace (made rprivate by the Go runtime, so nothing
		// propagates back to the host) in which /dev/null hides the v2
		// controller list; crun then uses the hybrid layout like runc does,
		// including a cgroup v2 directory per container.
		script := `mount --bind /dev/null ` + unifiedControllers + ` && exec "$@"`
		cmd = exec.Command("/bin/sh", append([]string{"-c", script, "sh"}, full...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	} else {
		cmd = exec.Command(full[0], full[1:]...)
	}
	// Only PATH: nothing else of the test's environment (NOTIFY_SOCKET,
	// XDG_RUNTIME_DIR, ...) leaks into the runtime.
	cmd.Env = []string{standardPath}
	return cmd
}

// control runs a short runtime command (kill, delete) and returns its
// combined output.
func (r *runtime) control(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := r.command(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return out.String(), ctx.Err()
	}
}

// stop kills the container of a running "<runtime> run" whose context is
// done, and returns the run's Wait error. It repeats the kill because the
// container may not exist yet when the first one is sent; when the runtime
// does not finish after that, it kills the runtime process itself (its init
// child dies with it by parent-death signal).
func (r *runtime) stop(id string, run *exec.Cmd, done <-chan error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		_, _ = r.control(5*time.Second, "kill", id, "KILL")
		select {
		case err := <-done:
			return err
		case <-tick.C:
		case <-deadline:
			_ = run.Process.Kill()
			return <-done
		}
	}
}

// cleanup deletes what is left of the container (normally "run" deleted it
// already) and checks that the state is gone.
func (r *runtime) cleanup(id string) error {
	state := filepath.Join(r.root, id)
	if _, err := os.Lstat(state); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	out, err := r.control(30*time.Second, "delete", "--force", id)
	if _, serr := os.Lstat(state); errors.Is(serr, os.ErrNotExist) {
		return nil
	}
	if err == nil {
		err = errors.New("state directory still present")
	}
	return fmt.Errorf("ocitest: deleting container %s: %w: %s", id, err, strings.TrimSpace(out))
}

// crunNeedsHybridWorkaround reports whether this host has the hybrid cgroup
// layout (cgroup v1 controllers in a tmpfs at /sys/fs/cgroup, cgroup v2 at
// /sys/fs/cgroup/unified) with a controller left on the v2 side. crun
// refuses that layout ("cgroups in hybrid mode not supported, drop all
// controllers from cgroupv2"); runc accepts it.
var crunNeedsHybridWorkaround = sync.OnceValue(func() bool {
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) != nil || st.Type != unix.TMPFS_MAGIC {
		return false
	}
	if unix.Statfs("/sys/fs/cgroup/unified", &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return false
	}
	data, err := os.ReadFile(unifiedControllers)
	return err == nil && len(data) > 0 // crun's own test: any content
})
