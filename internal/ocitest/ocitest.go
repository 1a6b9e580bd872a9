// Package ocitest runs real containers in tests: a busybox-static root
// filesystem under the Debian runc or crun runtime, with a configuration close
// to what Kubernetes (containerd) gives a container by default, and an optional
// seccomp profile. It proves that a generated profile is really enforced.
//
// Typical use:
//
//	runcPath := ocitest.Require(t, "runc")
//	res, err := ocitest.Run(ctx, t, ocitest.Container{
//		Runtime: runcPath,
//		Rootfs:  ocitest.BusyboxRootfs(t),
//		Args:    []string{"mkdir", "/tmp/x"},
//		Seccomp: profileJSON,
//	})
//
// Running containers needs root. Every Run uses its own bundle and runtime
// state directory under t.TempDir and a random container id, so tests may run
// in parallel, also with other test binaries.
//
// Both runtimes put the container into the cgroup "/<id>" of every hierarchy
// (including cgroup v2), and remove it when the container is deleted. On a
// hybrid cgroup layout that leaves a controller on the v2 side, crun refuses
// to start ("cgroups in hybrid mode not supported"); Run then starts crun in
// a private mount namespace in which /sys/fs/cgroup/unified/cgroup.controllers
// reads empty, so crun uses the layout like runc does. The host's mounts are
// not changed.
package ocitest

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// DefaultTimeout bounds a Run whose context has no deadline.
const DefaultTimeout = 2 * time.Minute

// aptPackages names the Debian package that provides each required binary.
var aptPackages = map[string]string{
	"runc":    "runc",
	"crun":    "crun",
	"busybox": "busybox-static",
}

// Require returns the absolute path of the runtime binary ("runc" or "crun").
// When the runtime or a statically linked busybox is missing, or the test does
// not run as root, it skips the test with a message that names what is missing
// (and the apt package that provides it); when the environment variable CI is
// "true" it fails the test instead, so that CI cannot silently skip.
func Require(t testing.TB, runtime string) string {
	t.Helper()
	var missing []string
	path, err := lookPath(runtime)
	if err != nil {
		if pkg, ok := aptPackages[runtime]; ok {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", runtime, pkg))
		} else {
			missing = append(missing, fmt.Sprintf("%s: %v", runtime, err))
		}
	}
	if _, err := busyboxPath(); err != nil {
		missing = append(missing, fmt.Sprintf("%v (apt-get install busybox-static)", err))
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root privileges (run the test as root)")
	}
	testenv.Missing(t, missing...)
	return path
}

// lookPath finds a runtime binary. A name with a slash is used as is; a bare
// name is searched in PATH and then in the sbin directories, which are often
// missing from the PATH of a test binary.
func lookPath(name string) (string, error) {
	if name == "" {
		return "", errors.New("no runtime given")
	}
	if strings.Contains(name, "/") {
		p, err := filepath.Abs(name)
		if err != nil {
			return "", err
		}
		if _, err := exec.LookPath(p); err != nil {
			return "", err
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if _, err := exec.LookPath(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or the sbin directories", name)
}

// busyboxPath finds a statically linked busybox on the host (computed once).
var busyboxPath = sync.OnceValues(func() (string, error) {
	var tried []string
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox"} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if isStatic(p) {
			return p, nil
		}
		tried = append(tried, p+" (dynamically linked)")
	}
	if len(tried) > 0 {
		return "", fmt.Errorf("a statically linked busybox (found only %s)", strings.Join(tried, ", "))
	}
	return "", errors.New("a statically linked busybox")
})

// isStatic reports whether the ELF file at path has no program interpreter.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// coreApplets get a symlink in the root filesystem. Creating files is slow
// on some test machines (about 0.5 ms each), so not all of busybox's ~270
// applets get one; see BusyboxRootfs for how to run the others.
var coreApplets = []string{
	"[", "awk", "cat", "chmod", "chown", "cp", "cut", "date", "dd", "echo",
	"env", "false", "find", "grep", "head", "hostname", "id", "ip", "kill",
	"ln", "ls", "mkdir", "mount", "mv", "nc", "printf", "ps", "readlink",
	"rm", "rmdir", "sed", "sh", "sleep", "sort", "stat", "tail", "tee", "test",
	"touch", "tr", "true", "uname", "wc", "wget", "xargs",
}

// busyboxApplets maps each core applet to its canonical path relative to
// the root ("bin/sh", "usr/bin/env", ...) as the host busybox reports it;
// computed once.
var busyboxApplets = sync.OnceValues(func() ([]string, error) {
	bb, err := busyboxPath()
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(bb, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", bb, err)
	}
	core := make(map[string]bool, len(coreApplets))
	for _, a := range coreApplets {
		core[a] = true
	}
	var paths []string
	for _, p := range strings.Fields(string(out)) {
		if core[filepath.Base(p)] {
			paths = append(paths, p)
		}
	}
	return paths, nil
})

const (
	etcPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"user:x:1000:1000:user:/home/user:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	etcGroup = "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n"
)

// BusyboxRootfs builds a minimal root filesystem in a new t.TempDir and
// returns its path: the host's busybox-static as /bin/busybox, symlinks for
// about 45 common applets at their usual places (/bin/sh, /usr/bin/env, ...),
// the mount points /proc, /dev and /sys, a world-writable /tmp, and
// /etc/passwd and /etc/group with root, user (uid and gid 1000) and nobody.
// Any other applet runs as Args{"busybox", "<applet>", ...} or from a shell
// script, as busybox's shell finds its applets without symlinks. It fails the
// test when busybox is missing; call Require first to skip instead.
//
// Containers that share a root filesystem see each other's writes (unless
// ReadonlyRootfs is set); build one per test when that matters.
func BusyboxRootfs(t testing.TB) string {
	t.Helper()
	bb, err := busyboxPath()
	if err != nil {
		t.Fatalf("ocitest: need %v (apt-get install busybox-static)", err)
	}
	applets, err := busyboxApplets()
	if err != nil {
		t.Fatalf("ocitest: %v", err)
	}
	root := t.TempDir()
	if err := buildRootfs(root, bb, applets); err != nil {
		t.Fatalf("ocitest: building rootfs: %v", err)
	}
	return root
}

func buildRootfs(root, busybox string, applets []string) error {
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "proc", "dev", "sys", "etc", "root", "home/user"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	tmp := filepath.Join(root, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(tmp, os.ModeSticky|0o777); err != nil { // Mkdir's mode is masked by the umask.
		return err
	}
	if err := os.Chown(filepath.Join(root, "home/user"), 1000, 1000); err != nil && !errors.Is(err, syscall.EPERM) {
		return err
	}
	if err := copyFile(busybox, filepath.Join(root, "bin/busybox"), 0o755); err != nil {
		return err
	}
	for _, a := range applets {
		rel := filepath.Clean(a)
		if rel == "bin/busybox" || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
			continue
		}
		dst := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("/bin/busybox", dst); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(etcPasswd), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, "etc/group"), []byte(etcGroup), 0o644)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Container describes one container run. The zero value of every optional
// field gives the Kubernetes-like default noted beside it.
type Container struct {
	// Runtime is "runc", "crun" or the path of such a binary (see Require).
	Runtime string
	// ID is the container id (docker's or podman's name plays this part);
	// "" gives a random unique one. Each runtime run has a state directory
	// of its own, so the same ID may be used again.
	ID string
	// Rootfs is the root filesystem directory, for example from BusyboxRootfs.
	Rootfs string
	// Args is the workload's command line; Args[0] is looked up in PATH.
	Args []string
	// Env is added to the default PATH; an entry here replaces a default of
	// the same name.
	Env []string
	// Cwd is the working directory; default "/".
	Cwd string
	// User is the workload's user; the zero value is root (uid and gid 0).
	User specs.User
	// Hostname defaults to "ocitest".
	Hostname string
	// Seccomp is a seccomp profile in the runtime-spec LinuxSeccomp JSON
	// shape (defaultAction, architectures, syscalls[{names, action}], ...),
	// which is also the plain shape of a Docker profile. Docker-only fields
	// such as archMap or includes are rejected. Nil means no seccomp filter.
	Seccomp []byte
	// NoNewPrivileges sets process.noNewPrivileges (Kubernetes'
	// allowPrivilegeEscalation: false); default false, as in Kubernetes.
	NoNewPrivileges bool
	// Capabilities are the bounding, effective and permitted capabilities
	// ("CAP_CHOWN", ...). Nil means DefaultCapabilities; an empty non-nil
	// slice means none.
	Capabilities []string
	// ReadonlyRootfs mounts the root filesystem read-only.
	ReadonlyRootfs bool
	// Mounts are added after the default mounts (/proc, /dev, /dev/pts,
	// /dev/shm, /dev/mqueue, read-only /sys), for example read-only bind
	// mounts of host files.
	Mounts []specs.Mount
	// Adjust, when set, may change the generated configuration last,
	// for anything the fields above do not cover.
	Adjust func(*specs.Spec)

	// wrapper is a command prefix for "<runtime> run" (for example
	// strace), used by this package's own tests.
	wrapper []string
}

// Result is the outcome of a Run.
type Result struct {
	// ID is the container id used for the run (random, unique).
	ID string
	// ExitCode is the exit status of "<runtime> run": the workload's exit
	// code, 128+n when it was killed by signal n (137 after a cancelled
	// ctx), or the runtime's own failure status (1) when the container
	// could not be started; in that case RuntimeLog says why.
	ExitCode int
	// Stdout and Stderr are the workload's output. The runtime writes its
	// own error messages to Stderr as well.
	Stdout, Stderr string
	// RuntimeLog holds the runtime's log messages (errors and warnings of
	// runc or crun themselves, not the workload's output), one
	// "level: message" per line.
	RuntimeLog string
}

// Run runs the container to completion and returns its result. It writes an
// OCI bundle and runs "<runtime> run" with a random container id and its own
// state directory (--root), both under t.TempDir. The container state is
// always deleted before Run returns. When ctx is done first, the container
// is killed and deleted and Run returns ctx's error; a ctx without a deadline
// gets DefaultTimeout.
//
// The returned error reports problems of the harness (bad profile JSON,
// missing runtime, a runtime that cannot be executed or cleaned up); a
// container that fails or cannot start is reported through Result.
func Run(ctx context.Context, t testing.TB, c Container) (Result, error) {
	t.Helper()
	bin, err := lookPath(c.Runtime)
	if err != nil {
		return Result{}, fmt.Errorf("ocitest: runtime: %w", err)
	}
	spec, err := buildSpec(c)
	if err != nil {
		return Result{}, err
	}
	config, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return Result{}, fmt.Errorf("ocitest: encoding config.json: %w", err)
	}
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle")
	if err := os.Mkdir(bundle, 0o700); err != nil {
		return Result{}, fmt.Errorf("ocitest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), config, 0o600); err != nil {
		return Result{}, fmt.Errorf("ocitest: %w", err)
	}
	rt := &runtime{
		bin:  bin,
		root: filepath.Join(dir, "state"),
		log:  filepath.Join(dir, "runtime.log"),
	}
	rt.crunHybrid = filepath.Base(bin) == "crun" && crunNeedsHybridWorkaround()
	id := c.ID
	if id == "" {
		if id, err = newID(); err != nil {
			return Result{}, err
		}
	}
	res := Result{ID: id}

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}

	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("ocitest: container %s: %w", id, err)
	}
	var stdout, stderr bytes.Buffer
	cmd := rt.wrappedCommand(c.wrapper, "run", "--bundle", bundle, id)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// Wait also waits for the output pipes; do not let a stray holder of
	// them block it for long after the runtime exited.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("ocitest: starting %s: %w", bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var waitErr, ctxErr error
	select {
	case waitErr = <-done:
	case <-ctx.Done():
		ctxErr = ctx.Err()
		waitErr = rt.stop(id, cmd, done)
	}
	cleanupErr := rt.cleanup(id)

	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	res.RuntimeLog = readRuntimeLog(rt.log)
	res.ExitCode, err = exitCode(waitErr)
	switch {
	case ctxErr != nil:
		return res, errors.Join(fmt.Errorf("ocitest: container %s: %w", id, ctxErr), cleanupErr)
	case err != nil:
		return res, errors.Join(fmt.Errorf("ocitest: %s run: %w", bin, err), cleanupErr)
	}
	return res, cleanupErr
}

func newID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("ocitest: container id: %w", err)
	}
	return "ocitest-" + hex.EncodeToString(b[:]), nil
}

// exitCode turns the error of cmd.Wait into an exit status.
func exitCode(err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return -1, err
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
		switch {
		case ws.Exited():
			return ws.ExitStatus(), nil
		case ws.Signaled():
			return 128 + int(ws.Signal()), nil
		}
	}
	return ee.ExitCode(), nil
}

// readRuntimeLog turns the runtime's JSON log (--log-format json) into
// "level: msg" lines. Lines that are not JSON are kept as they are.
func readRuntimeLog(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var entry struct{ Level, Msg string }
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg != "" {
			fmt.Fprintf(&b, "%s: %s\n", entry.Level, entry.Msg)
		} else {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
