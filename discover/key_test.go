package discover

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// TestPIDKey: a process in the host's mount namespace is recorded under its
// cgroup (and needs the host included); one in a mount namespace of its own
// under that namespace's unique id; a process that is gone is an error.
func TestPIDKey(t *testing.T) {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (unshare --mount)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		missing = append(missing, "unshare in PATH (util-linux)")
	}
	testenv.Missing(t, missing...)

	key, host, err := PIDKey(os.Getpid(), 0)
	cg, cerr := CgroupIDOf("/proc/self")
	if err != nil || cerr != nil || !host || key != CgroupKey(cg) {
		t.Errorf("this process: key %v host %v err %v; want cgroup key %v (%v), host", key, host, err, CgroupKey(cg), cerr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "sh", "-c", "echo ready; exec sleep 30")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	buf := make([]byte, 6)
	if n, err := out.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "ready") {
		t.Fatalf("unshare did not start: %q %v", buf[:n], err)
	}
	pid := cmd.Process.Pid
	dir := "/proc/" + strconv.Itoa(pid)
	id, err := MountNSID(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, host, err = PIDKey(pid, 0)
	if err != nil || host || key != MountNSKey(id) {
		t.Errorf("process in its own mount namespace: key %v host %v err %v; want %v", key, host, err, MountNSKey(id))
	}
	// Seen from that namespace as the host's, the same process is a host
	// process again: recorded by cgroup.
	theirs, err := MountNSOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, host, err := PIDKey(pid, theirs); err != nil || !host {
		t.Errorf("with its namespace as the host's: host %v err %v; want host", host, err)
	}

	cmd.Process.Kill()
	cmd.Wait()
	if _, _, err := PIDKey(pid, 0); err == nil {
		t.Errorf("pid %d is gone, but PIDKey found a key", pid)
	}
}
