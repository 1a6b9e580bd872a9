package violations

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api/violation"
	"github.com/kubearmor/kscmp/internal/ocitest"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// monitorWhile runs the monitor, starts the container once it is
// subscribed, and ends it when the container has ended and want holds of
// the report so far (audit records reach the socket through a kernel
// thread, a moment after the call), or after a minute.
func monitorWhile(t *testing.T, c ocitest.Container, want func(*violation.Report) bool) (*violation.Report, ocitest.Result) {
	t.Helper()
	return monitorWhileOpts(t, c, Options{AttributeExited: true}, want)
}

// monitorWhileOpts is monitorWhile with options to start from.
func monitorWhileOpts(t *testing.T, c ocitest.Container, opts Options, want func(*violation.Report) bool) (*violation.Report, ocitest.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ready := make(chan struct{})
	resc := make(chan ocitest.Result, 1)
	var ran bool
	opts.Interval, opts.Ready = 100*time.Millisecond, func() { close(ready) }
	go func() {
		<-ready
		res, err := ocitest.Run(ctx, t, c)
		if err != nil {
			t.Error(err)
		}
		resc <- res
	}()
	var res ocitest.Result
	opts.Update = func(r *violation.Report) {
		select {
		case res = <-resc:
			ran = true
		default:
		}
		if ran && want(r) {
			cancel()
		}
	}
	wait, stop := context.WithTimeout(ctx, time.Minute)
	defer stop()
	rep, err := Monitor(wait, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !ran {
		res = <-resc
	}
	return rep, res
}

// of returns the entries of the container with the given id.
func of(r *violation.Report, id string) []violation.Violation {
	var out []violation.Violation
	for _, v := range r.Violations {
		if v.Identity.ContainerID == id {
			out = append(out, v)
		}
	}
	return out
}

func fixedID(t *testing.T) string {
	return "kscmp-violations-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
}

// withProgram returns a busybox root filesystem with prog as /prog.
func withProgram(t *testing.T, prog []byte) string {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		testenv.Missing(t, "an amd64 machine (the test program is x86-64 code)")
	}
	rootfs := ocitest.BusyboxRootfs(t)
	if err := os.WriteFile(filepath.Join(rootfs, "prog"), prog, 0o755); err != nil {
		t.Fatal(err)
	}
	return rootfs
}

// TestCrunBlockReported: a crun container under a Block profile with the
// log flag (as merge compiles it for crun) calls mkdir; the report has
// mkdir under that container, action Block. The process lives on for a
// second, as a workload does: the kernel delivers the record a moment
// after the call, and a process gone by then is unattributed.
func TestCrunBlockReported(t *testing.T) {
	bin := ocitest.Require(t, "crun")
	id := fixedID(t)
	prof := []byte(`{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG"],"syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`)
	c := ocitest.Container{Runtime: bin, ID: id, Rootfs: withProgram(t, ocitest.LoopProgram(83, 1, 1)), Args: []string{"/prog"}, Seccomp: prof}
	rep, res := monitorWhile(t, c, func(r *violation.Report) bool { return len(of(r, id)) > 0 })
	if res.ExitCode != 0 {
		t.Fatalf("container: %+v", res)
	}
	got := of(rep, id)
	if len(got) != 1 || got[0].Action != violation.ActionBlock || !strings.HasPrefix(got[0].Syscall, "mkdir") || got[0].Count != 1 || got[0].ABI != "x86_64" {
		t.Fatalf("entries of container %s: %+v (all: %+v)", id, got, rep.Violations)
	}
	if got[0].Identity.Kind != "container" {
		t.Errorf("identity %+v, want a container", got[0].Identity)
	}
}

// TestRuncLoggedAndKilled: runc 1.1.5 takes no log flag, but logged and
// killing actions always reach audit. A runc container under a profile
// that logs mkdir (SCMP_ACT_LOG, what Audit compiles to) is reported with
// Audit under the container; one that kills on mkdir is reported with
// Kill under the container, although the killed process (and with it the
// container) is gone when its record is read: the Exited program kept
// where it was.
func TestRuncLoggedAndKilled(t *testing.T) {
	bin := ocitest.Require(t, "runc")
	id := fixedID(t)
	rootfs := withProgram(t, ocitest.LoopProgram(83, 3, 1))
	prof := []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_LOG"}]}`)
	c := ocitest.Container{Runtime: bin, ID: id, Rootfs: rootfs, Args: []string{"/prog"}, Seccomp: prof}
	rep, res := monitorWhile(t, c, func(r *violation.Report) bool { return len(of(r, id)) > 0 })
	if res.ExitCode != 0 {
		t.Fatalf("container: %+v", res)
	}
	got := of(rep, id)
	if len(got) != 1 || got[0].Syscall != "mkdir" || got[0].Action != violation.ActionAudit || got[0].Count != 3 {
		t.Errorf("entries %+v, want mkdir Audit 3 times (all: %+v)", got, rep.Violations)
	}

	// A Kill rule. (A Kill default needs runc's start-up set exactly:
	// with more than its EPERM set refused, runc init dies first.)
	prof = []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_KILL_PROCESS"}]}`)
	c.ID, c.Seccomp = id+"-kill", prof
	rep, res = monitorWhile(t, c, func(r *violation.Report) bool {
		for _, v := range r.Violations {
			if v.Syscall == "mkdir" && v.Action == violation.ActionKill {
				return true
			}
		}
		return false
	})
	if res.ExitCode != 128+31 {
		t.Errorf("container exit %d, want 159 (SIGSYS): %+v", res.ExitCode, res)
	}
	var kill *violation.Violation
	for i, v := range rep.Violations {
		if v.Syscall == "mkdir" && v.Action == violation.ActionKill {
			kill = &rep.Violations[i]
		}
	}
	switch {
	case kill == nil:
		t.Errorf("no mkdir Kill: %+v", rep.Violations)
	case kill.Identity.ContainerID != c.ID || kill.Identity.Kind != "container":
		t.Errorf("mkdir Kill attributed to %+v (lost %+v), want container %s", kill.Identity, rep.Lost, c.ID)
	}
}

// TestShortLivedAttributed: the shell of a runc container runs /prog 20
// times, each a process that makes one logged mkdir and exits at once; the
// shell reaps it, so its pid is gone from /proc before the monitor reads
// its record (the kernel's audit thread sends records a moment after the
// call), and the container is gone soon after. Every one of the 20
// records is the container's, none unattributed: the Exited program kept
// where each process exited. (Without it, Options.AttributeExited off,
// most of them are counted as unattributed, under /prog.)
func TestShortLivedAttributed(t *testing.T) {
	bin := ocitest.Require(t, "runc")
	const n = 20
	id := fixedID(t)
	rootfs := withProgram(t, ocitest.LoopProgram(83, 1, 0))
	prof := []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_LOG"}]}`)
	script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do /prog; i=$((i+1)); done", n)
	c := ocitest.Container{Runtime: bin, ID: id, Rootfs: rootfs, Args: []string{"/bin/sh", "-c", script}, Seccomp: prof}
	var seen uint64
	rep, res := monitorWhile(t, c, func(r *violation.Report) bool {
		for _, v := range r.Violations {
			if v.Syscall == "mkdir" {
				seen += v.Count
			}
		}
		return seen >= n
	})
	if res.ExitCode != 0 {
		t.Fatalf("container: %+v", res)
	}
	got := of(rep, id)
	if len(got) != 1 || got[0].Syscall != "mkdir" || got[0].Action != violation.ActionAudit || got[0].Count != n || got[0].Identity.Kind != "container" {
		t.Errorf("entries of container %s: %+v, want one mkdir Audit %d times (all: %+v)", id, got, n, rep.Violations)
	}
	if rep.Lost.Unattributed != 0 {
		t.Errorf("%d records unattributed (all: %+v)", rep.Lost.Unattributed, rep.Violations)
	}
}

// TestFloodCounted: a container that makes 100,000 refused calls is one
// entry counting them (or the report says records were lost), and the
// monitor's heap stays bounded.
func TestFloodCounted(t *testing.T) {
	bin := ocitest.Require(t, "crun")
	const n = 100_000
	id := fixedID(t)
	rootfs := withProgram(t, ocitest.LoopProgram(83, n, 0))
	prof := []byte(`{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG"],"syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}`)
	c := ocitest.Container{Runtime: bin, ID: id, Rootfs: rootfs, Args: []string{"/prog"}, Seccomp: prof}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var last uint64
	var still int
	rep, res := monitorWhile(t, c, func(r *violation.Report) bool {
		var cnt uint64
		for _, v := range of(r, id) {
			cnt += v.Count
		}
		// Done when all are counted, or the count stopped growing.
		if cnt == last {
			still++
		} else {
			still = 0
		}
		last = cnt
		return cnt >= n || still >= 20
	})
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if res.ExitCode != 0 {
		t.Fatalf("flood container: %+v", res)
	}
	got := of(rep, id)
	if len(got) != 1 || got[0].Syscall != "mkdir" || got[0].Action != violation.ActionBlock {
		t.Fatalf("entries %+v, want one mkdir Block", got)
	}
	t.Logf("counted %d of %d; lost %+v; heap %d -> %d KiB", got[0].Count, n, rep.Lost, before.HeapInuse>>10, after.HeapInuse>>10)
	if got[0].Count != n && rep.Lost.Audit+rep.Lost.Kernel == 0 {
		t.Errorf("counted %d of %d refusals and reported no loss", got[0].Count, n)
	}
	if got[0].Count > n {
		t.Errorf("counted %d, more than the %d made", got[0].Count, n)
	}
	if after.HeapInuse > before.HeapInuse+32<<20 {
		t.Errorf("heap grew from %d to %d KiB during the flood", before.HeapInuse>>10, after.HeapInuse>>10)
	}
}
