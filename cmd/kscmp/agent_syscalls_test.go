package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/discover"
	"github.com/kubearmor/kscmp/internal/stracetest"
)

// TestAgentSyscalls measures which system calls `kscmp agent --mode
// enforce` makes doing its whole job (agentJob: start-up, list and watch,
// profiles installed, rewritten and removed, status and Events, a workload
// rolled, SIGTERM, SIGKILL, restart), three ways:
//
//   - strace -f, the binary as `go build` makes it (cgo: glibc's loader and
//     threads) and with CGO_ENABLED=0 (the Go runtime alone), both with
//     GOGC=5 so that the garbage collector, its scavenger and preemption
//     signals run often;
//   - kscmp's own recorder (package discover) on a cgroup the agent is
//     cloned into, which also sees the few calls of Go's fork child before
//     the agent's execve (they belong to the test, not to the agent).
//
// It prints each set, their union and what the union adds for arm64 nodes
// (recommend.Equivalents), and fails when the agent's own policy
// (deploy/agent/kscmp-agent-policy.yaml) lacks a call the agent made. Slow
// (three real API servers, several minutes on 2 cores) and needs root and
// strace: run it with KSCMP_AGENT_SYSCALLS=1 after changing the agent.
func TestAgentSyscalls(t *testing.T) {
	if os.Getenv("KSCMP_AGENT_SYSCALLS") != "1" {
		t.Skip("measures the agent's system calls for its own policy; set KSCMP_AGENT_SYSCALLS=1")
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root (strace of the agent, the eBPF recorder, a cgroup)")
	}
	cgoBin := buildKscmp(t)
	staticBin := filepath.Join(t.TempDir(), "kscmp-static")
	build := exec.Command("go", "build", "-o", staticBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	sets := map[string][]string{}
	for _, c := range []struct{ name, bin string }{{"strace, cgo", cgoBin}, {"strace, static", staticBin}} {
		t.Run(c.name, func(t *testing.T) {
			tr := stracetest.New(t)
			agentJob(t, c.bin, func(t *testing.T, args []string) *agentProc {
				return startAgentProc(t, tr.Command(c.bin, args, nil), func(cmd *exec.Cmd) int { return stracetest.Child(t, cmd.Process.Pid, c.bin) })
			})
			set, err := tr.Calls()
			if err != nil {
				t.Fatal(err)
			}
			sets[c.name] = set
		})
	}
	t.Run("discover", func(t *testing.T) {
		cg, ino := measureCgroup(t)
		fd, err := os.Open(cg)
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		ctx, stop := context.WithCancel(context.Background())
		var (
			once  sync.Once
			ready = make(chan struct{})
			rep   *report.Report
			derr  error
			done  = make(chan struct{})
		)
		go func() {
			defer close(done)
			rep, derr = discover.Discover(ctx, discover.Options{Interval: 200 * time.Millisecond,
				Recorder: discover.RecorderOptions{IncludeHost: true},
				Filter:   discover.Filter{Keys: []discover.Key{discover.CgroupKey(ino)}},
				Progress: func(discover.Progress) { once.Do(func() { close(ready) }) }})
		}()
		select {
		case <-ready:
		case <-done:
			t.Fatalf("discover: %v", derr)
		}
		agentJob(t, cgoBin, func(t *testing.T, args []string) *agentProc {
			cmd := exec.Command(cgoBin, args...)
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
			return startAgentProc(t, cmd, nil)
		})
		time.Sleep(time.Second) // one more snapshot
		stop()
		<-done
		if derr != nil {
			t.Fatal(derr)
		}
		if lost := rep.Lost.Total(); lost > 0 {
			t.Errorf("the recording lost %d events: %+v", lost, rep.Lost)
		}
		var set []string
		for _, w := range rep.Workloads {
			set = append(set, w.Syscalls[report.ABIName(api.ArchX86_64)]...)
		}
		slices.Sort(set)
		sets["discover"] = slices.Compact(set)
	})

	p, err := agent.OwnPolicy()
	if err != nil {
		t.Fatal(err)
	}
	stracetest.Check(t, sets, p, leftOut)
}

// leftOut are calls the measurement sees that the agent's own policy leaves
// out on purpose (see its comments).
var leftOut = map[string]string{
	"bpf":    "cilium/ebpf's rlimit init probes BPF_MAP_CREATE; the agent never uses eBPF and takes EPERM",
	"dup3":   "Go's fork child in the test, before the agent's execve (seen by the recorder only)",
	"clone3": "glibc's threads; refused with ENOSYS since clone's namespace flags are conditioned, and glibc falls back to clone",
}

// measureCgroup makes an empty cgroup v2 for the agent and returns its
// directory and id; it is removed when the test ends.
func measureCgroup(t *testing.T) (string, uint64) {
	t.Helper()
	for _, mount := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(mount, "cgroup.procs")); err != nil {
			continue
		}
		var fs syscall.Statfs_t
		if syscall.Statfs(mount, &fs) != nil || fs.Type != 0x63677270 { // CGROUP2_SUPER_MAGIC
			continue
		}
		dir := filepath.Join(mount, fmt.Sprintf("kscmp-agent-measure-%d", os.Getpid()))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// Empty once the agent is gone.
			for range 100 {
				if os.Remove(dir) == nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
		var st syscall.Stat_t
		if err := syscall.Stat(dir, &st); err != nil {
			t.Fatal(err)
		}
		return dir, st.Ino
	}
	t.Fatal("no cgroup v2 hierarchy")
	return "", 0
}
