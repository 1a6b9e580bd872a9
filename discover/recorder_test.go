package discover

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/kubearmor/kscmp/bpf"
)

var hooks = []Hook{HookTpBtf, HookRawTp}

// TestStraceParity records a workload started in a new mount namespace and
// checks that its set is exactly the set of syscalls `strace -f` shows for
// the same run after the namespace switch. The recorder and strace watch the
// very same execution: strace runs the workload, the recorder records it.
func TestStraceParity(t *testing.T) {
	requireKernel(t, "strace", "unshare")
	if runtime.GOARCH != "amd64" {
		t.Skip("strace names are compared with the x86_64 table")
	}
	// tp_btf as it loads here, and without the task memo; on x86-64 also
	// with the current task from the helper, after the direct read's
	// address failed its check.
	type mode struct {
		name      string
		hook      Hook
		wrongAddr bool
		memo      memoMode
	}
	modes := []mode{{"tp_btf", HookTpBtf, false, memoOn}, {"tp_btf_nomemo", HookTpBtf, false, memoOff}}
	if _, err := currentTaskAddr(); err == nil {
		modes = append(modes, mode{"tp_btf_helper", HookTpBtf, true, memoOn})
	}
	modes = append(modes, mode{"raw_tp", HookRawTp, false, memoOn})
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			opts := RecorderOptions{Hook: m.hook, memo: m.memo}
			if m.wrongAddr {
				addr, _ := currentTaskAddr()
				opts.currentTask = readCurrentAt(addr + 8)
			}
			r, events := newTestRecorder(t, opts)
			if m.wrongAddr {
				syscall.Getppid() // the program runs, on this CPU at least
				if slots, err := r.currentSlots(); err != nil || !slices.Contains(slots, bpf.CurrentHelper) || slices.ContainsFunc(slots, func(s uint64) bool { return s > bpf.CurrentHelper }) {
					t.Fatalf("current slots %#x (err %v), want the helper's", slots, err)
				}
			}
			out := filepath.Join(t.TempDir(), "strace.out")
			// unshare(CLONE_NEWNS) is made in the host namespace and is not
			// recorded; everything unshare and its descendants do after it
			// (the private-propagation mount, execve, the shell and its
			// children) is.
			script := "ls -la /etc >/dev/null; cat /etc/hostname >/dev/null; id >/dev/null; date +%s >/dev/null; echo hi | wc -c >/dev/null"
			cmd := exec.Command("strace", "-f", "-qq", "-o", out,
				"unshare", "-m", "--propagation", "private", "/bin/sh", "-c", script)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("strace: %v\n%s", err, b)
			}
			pid, want := straceAfterUnshare(t, out)

			ev := events.wait(t, fmt.Sprintf("unshare (pid %d)", pid), func(ev NewKey) bool { return ev.PID == pid })
			if ev.Key.Kind() != KeyMountNS || ev.Comm != "unshare" {
				t.Errorf("event %+v: want a mntns key made by unshare", ev)
			}
			ks := keySet(t, r, ev.Key)
			native, _ := ks.Set(ABINative)
			if len(ks.Sets) != 1 {
				t.Errorf("sets of other ABIs recorded: %+v", ks.Sets)
			}
			if len(native.Unknown) != 0 {
				t.Errorf("numbers unknown to the x86_64 table: %v", native.Unknown)
			}
			if missing, extra := diff(want, native.Names); len(missing)+len(extra) != 0 {
				t.Errorf("recorded set differs from strace:\n  strace only:   %v\n  recorder only: %v\n  strace:   %v\n  recorder: %v",
					missing, extra, want, native.Names)
			}
			t.Logf("%d syscalls, equal to strace's: %v", len(want), want)
		})
	}
}

// straceAfterUnshare returns the pid of the traced unshare and the sorted,
// distinct syscall names strace shows from after its unshare(CLONE_NEWNS).
func straceAfterUnshare(t *testing.T, path string) (int, []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := regexp.MustCompile(`^(\d+)\s+([a-z0-9_]+)\(`)
	pid := 0
	after := false
	names := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		// "<... read resumed>" continues a call already counted; signals
		// ("--- SIG") and exits ("+++") are not calls.
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if pid == 0 {
			pid, _ = strconv.Atoi(m[1])
		}
		if !after {
			after = m[2] == "unshare" && strings.Contains(sc.Text(), "CLONE_NEWNS")
			continue
		}
		names[m[2]] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !after {
		t.Fatalf("%s: no unshare(CLONE_NEWNS) line", path)
	}
	return pid, slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	})
}

// diff returns the names only in want and only in got.
func diff(want, got []string) (missing, extra []string) {
	for _, n := range want {
		if !slices.Contains(got, n) {
			missing = append(missing, n)
		}
	}
	for _, n := range got {
		if !slices.Contains(want, n) {
			extra = append(extra, n)
		}
	}
	return missing, extra
}

// TestCompat32 checks that 32-bit (int $0x80) calls land in the compat set
// and are named with the i386 table. The kernel marks a task's call as
// compat (TS_COMPAT) on the int $0x80 entry whatever the program's ELF class,
// so the same source runs twice: as an amd64 program, which every kernel with
// IA32 emulation runs, and as an i386 program where the kernel also loads
// 32-bit ELF files (some hypervisors' kernels answer ENOEXEC although built
// with IA32 emulation; then only that variant cannot run, and says so).
func TestCompat32(t *testing.T) {
	requireKernel(t, "gcc")
	if runtime.GOARCH != "amd64" {
		t.Skip("i386 compat is an amd64 test")
	}
	dir := t.TempDir()
	variants := []struct{ name, bin string }{
		{"int80-amd64", buildC(t, dir, "compat32.c", "compat32-amd64")},
		{"i386", buildC(t, dir, "compat32.c", "compat32", "-m32")},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			if err := exec.Command(v.bin).Run(); errors.Is(err, syscall.ENOEXEC) {
				if v.name != "i386" {
					t.Fatalf("%s: %v", v.bin, err)
				}
				// A property of the machine, not something CI can install;
				// the int80-amd64 variant proves the compat entry on it.
				t.Skipf("this kernel loads no i386 ELF program (%v); the compat entry is checked by int80-amd64", err)
			}
			for _, hook := range hooks {
				t.Run(hook.String(), func(t *testing.T) { checkCompat32(t, hook, v.bin) })
			}
		})
	}
}

// checkCompat32 records bin (testdata/compat32.c) under hook and checks its
// namespace has exactly the i386 set compat32.c makes.
func checkCompat32(t *testing.T, hook Hook, bin string) {
	r, events := newTestRecorder(t, RecorderOptions{Hook: hook})
	pid := runProbe(t, bin)
	ev := events.wait(t, "compat32", func(ev NewKey) bool { return ev.PID == pid })
	if ev.ABI != ABICompat || ev.Syscall != 64 {
		t.Errorf("first call: abi %s nr %d, want compat 64", ev.ABI, ev.Syscall)
	}
	ks := keySet(t, r, ev.Key)
	if len(ks.Sets) != 1 {
		t.Fatalf("want only a compat set, got %+v", ks.Sets)
	}
	compat := ks.Sets[0]
	want := []string{"exit_group", "getpgrp", "getppid", "sched_yield", "umask"}
	if compat.ABI != ABICompat || compat.Arch != "i386" || !slices.Equal(compat.Names, want) ||
		!slices.Equal(compat.Numbers, []int{60, 64, 65, 158, 252}) {
		t.Errorf("compat set %+v, want i386 %v", compat, want)
	}
}

// TestX32 checks that x32 calls (number bit 30) land in the x32 set with the
// bit stripped and x32 names; the kernel need not support x32 for that.
func TestX32(t *testing.T) {
	requireKernel(t, "gcc")
	if runtime.GOARCH != "amd64" {
		t.Skip("x32 is an amd64 ABI")
	}
	bin := buildC(t, t.TempDir(), "probe.c", "probe")
	r, events := newTestRecorder(t, RecorderOptions{})
	pid := runProbe(t, bin, "x32")
	ev := events.wait(t, "probe x32", func(ev NewKey) bool { return ev.PID == pid })
	ks := keySet(t, r, ev.Key)
	x32, _ := ks.Set(ABIX32)
	native, _ := ks.Set(ABINative)
	if x32.Arch != "x32" || !slices.Equal(x32.Names, []string{"getpid", "getuid"}) || !slices.Equal(x32.Numbers, []int{39, 102}) {
		t.Errorf("x32 set %+v, want getpid(39) getuid(102)", x32)
	}
	if !slices.Equal(native.Names, []string{"exit_group"}) {
		t.Errorf("native set %+v, want exit_group", native)
	}
}

// TestShortLived checks that a process living microseconds in its own mount
// namespace is attributed: its new-key event carries its executable, its
// cgroup and its first call, whether or not /proc could still be read.
func TestShortLived(t *testing.T) {
	requireKernel(t, "gcc")
	bin := buildC(t, t.TempDir(), "probe.c", "probe")
	bin, err := filepath.EvalSymlinks(bin)
	if err != nil {
		t.Fatal(err)
	}
	selfCgroup, err := readCgroupFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, hook := range hooks {
		t.Run(hook.String(), func(t *testing.T) {
			r, events := newTestRecorder(t, RecorderOptions{Hook: hook})
			pid := runProbe(t, bin, "exit")
			ev := events.wait(t, "probe exit", func(ev NewKey) bool { return ev.PID == pid })
			t.Logf("event: key %s comm %q exe %q cgroup %q (kernel: %q %q; /proc: %q %q, err %v)",
				ev.Key, ev.Comm, ev.Exe(), ev.Cgroup(), ev.KernelExe, ev.KernelCgroup, ev.ProcExe, ev.ProcCgroup, ev.ProcErr)
			if ev.Comm != "probe" || ev.TID != pid || ev.Key.Kind() != KeyMountNS {
				t.Errorf("comm %q tid %d kind %s, want probe %d mntns", ev.Comm, ev.TID, ev.Key.Kind(), pid)
			}
			if ev.KernelExe != bin || ev.KernelExeTruncated {
				t.Errorf("kernel exe %q (truncated %v), want %q", ev.KernelExe, ev.KernelExeTruncated, bin)
			}
			if ev.KernelCgroup != selfCgroup || ev.Cgroup() != selfCgroup {
				t.Errorf("cgroup %q (kernel %q), want %q", ev.Cgroup(), ev.KernelCgroup, selfCgroup)
			}
			if ev.Exe() != bin {
				t.Errorf("exe %q, want %q", ev.Exe(), bin)
			}
			if ev.ABI != ABINative || ev.Syscall != int(syscall.SYS_EXIT_GROUP) {
				t.Errorf("first call %s %d, want native exit_group", ev.ABI, ev.Syscall)
			}
			ks := keySet(t, r, ev.Key)
			if native, _ := ks.Set(ABINative); len(ks.Sets) != 1 || !slices.Equal(native.Names, []string{"exit_group"}) {
				t.Errorf("sets %+v, want native exit_group only", ks.Sets)
			}
			if ks.MountNS != ev.MountNS || ev.MountNS == 0 {
				t.Errorf("set's mntns inode %d, event's %d", ks.MountNS, ev.MountNS)
			}
		})
	}
}

// TestProcIdentity checks the /proc side of an event for a process that is
// still alive when the event is read.
func TestProcIdentity(t *testing.T) {
	requireKernel(t, "unshare", "sleep")
	_, events := newTestRecorder(t, RecorderOptions{})
	cmd := exec.Command("unshare", "-m", "--propagation", "unchanged", "sleep", "2")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	ev := events.wait(t, "unshare sleep", func(ev NewKey) bool { return ev.PID == cmd.Process.Pid })
	if ev.ProcErr != nil {
		t.Fatalf("proc: %v", ev.ProcErr)
	}
	// The first call in the namespace is unshare's; by the time /proc is
	// read the process may already be sleep.
	if b := filepath.Base(ev.ProcExe); b != "unshare" && b != "sleep" {
		t.Errorf("proc exe %q", ev.ProcExe)
	}
	if ev.ProcCgroup != ev.KernelCgroup {
		t.Errorf("proc cgroup %q, kernel %q", ev.ProcCgroup, ev.KernelCgroup)
	}
	id, err := MountNSID(fmt.Sprintf("/proc/%d", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if MountNSKey(id) != ev.Key {
		t.Errorf("MountNSID %d gives key %s, event has %s", id, MountNSKey(id), ev.Key)
	}
}

// TestLost checks that losses are counted: a full map, a full ring buffer
// and numbers beyond the sets.
func TestLost(t *testing.T) {
	requireKernel(t, "gcc")
	bin := buildC(t, t.TempDir(), "probe.c", "probe")

	t.Run("map full", func(t *testing.T) {
		r, _ := newTestRecorder(t, RecorderOptions{MaxKeys: 2})
		for range 5 {
			runProbe(t, bin, "exit")
		}
		// At most 2 of the 5 namespaces got a key; each of the others lost
		// at least its exit_group.
		lost, err := r.Lost()
		if err != nil {
			t.Fatal(err)
		}
		if lost.MapFull < 3 {
			t.Errorf("lost %+v, want MapFull >= 3", lost)
		}
		sets, err := r.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if len(sets) > 2 {
			t.Errorf("%d keys in a map of 2", len(sets))
		}
	})

	t.Run("ring buffer full", func(t *testing.T) {
		// One page holds one event; nobody reads it.
		r, err := NewRecorder(RecorderOptions{RingBufferSize: os.Getpagesize()})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for range 3 {
			runProbe(t, bin, "exit")
		}
		lost, err := r.Lost()
		if err != nil {
			t.Fatal(err)
		}
		if lost.RingBufFull < 2 || lost.MapFull != 0 {
			t.Errorf("lost %+v, want RingBufFull >= 2", lost)
		}
		// The sets are complete all the same.
		sets, err := r.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if len(sets) < 3 {
			t.Errorf("%d keys, want >= 3", len(sets))
		}
	})

	t.Run("out of range", func(t *testing.T) {
		r, _ := newTestRecorder(t, RecorderOptions{})
		runProbe(t, bin, "range")
		lost, err := r.Lost()
		if err != nil {
			t.Fatal(err)
		}
		if lost.OutOfRange < 1 {
			t.Errorf("lost %+v, want OutOfRange >= 1", lost)
		}
	})
}

// TestIncludeHost checks host tasks: not recorded by default, recorded under
// their cgroup with IncludeHost, and Delete starts a key afresh (the per-CPU
// caches must forget it too).
func TestIncludeHost(t *testing.T) {
	requireKernel(t)
	selfCgroupID := cgroupID(t)
	key := CgroupKey(selfCgroupID)

	r, _ := newTestRecorder(t, RecorderOptions{})
	syscall.Getppid()
	sets, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for _, ks := range sets {
		if ks.Key.Kind() == KeyCgroup {
			t.Errorf("host task recorded without IncludeHost: %s", ks.Key)
		}
	}

	r, events := newTestRecorder(t, RecorderOptions{IncludeHost: true})
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	syscall.Getppid()
	ev := events.wait(t, "this test's cgroup", func(ev NewKey) bool { return ev.Key == key })
	if ev.CgroupID != selfCgroupID || ev.MountNS != r.HostMountNS() {
		t.Errorf("event %+v", ev)
	}
	if ks := keySet(t, r, key); !slices.Contains(ks.Sets[0].Names, "getppid") {
		t.Errorf("getppid not recorded: %v", ks.Sets[0].Names)
	}
	if err := r.Delete(key); err != nil {
		t.Fatal(err)
	}
	// Same thread, same CPU most likely: the cache slot that knows getppid
	// must not hide it from the new set.
	for range 3 {
		syscall.Getppid()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		sets, err := r.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(sets, func(ks KeySet) bool { return ks.Key == key })
		if i >= 0 && slices.Contains(sets[i].Sets[0].Names, "getppid") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("getppid not recorded again after Delete")
		}
		syscall.Getppid()
	}
}

// TestNothingLeftAttached checks that Close detaches the programs: before
// Close the kernel lists a link for each of the recorder's programs (the
// syscall hook and, on tp_btf, task_free), after it none. The kernel's link
// list is read whole each time; a failed read or link query fails the test.
func TestNothingLeftAttached(t *testing.T) {
	requireKernel(t)
	r, err := NewRecorder(RecorderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Both programs: the syscall hook and task_free (tp_btf).
	if r.Hook() == HookTpBtf && r.free == nil {
		t.Error("tp_btf recorder without task_free")
	}
	var ids []ebpf.ProgramID
	for _, p := range []*ebpf.Program{r.prog, r.free} {
		if p == nil {
			continue
		}
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, ok := info.ID()
		if !ok {
			t.Fatal("the kernel gives no program ids")
		}
		ids = append(ids, id)
	}
	if before := linksTo(t, ids); len(before) != len(ids) {
		t.Fatalf("before Close: links %v for programs %v, want one link per program", before, ids)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error)
	go func() { done <- r.Run(ctx, func(NewKey) {}) }()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run after Close: %v", err)
	}
	if after := linksTo(t, ids); len(after) > 0 {
		t.Errorf("after Close: links %v still hold the recorder's programs %v", after, ids)
	}
}

// linksTo lists the kernel's links whose program is one of ids, as
// "link <id> → program <id>". Any failure to list the links or to query one
// fails t (the iterator itself skips a link that goes away meanwhile).
func linksTo(t *testing.T, ids []ebpf.ProgramID) []string {
	t.Helper()
	var out []string
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info() // the iterator closes the link on Next
		if err != nil {
			t.Fatalf("link info: %v", err)
		}
		if slices.Contains(ids, info.Program) {
			out = append(out, fmt.Sprintf("link %d → program %d", info.ID, info.Program))
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("listing the kernel's links: %v", err)
	}
	return out
}

// runProbe runs a test workload to its end and returns its pid.
func runProbe(t *testing.T, bin string, args ...string) int {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", bin, args, err, b)
	}
	return cmd.Process.Pid
}

// cgroupID returns the cgroup v2 id of this process (its directory's inode).
func cgroupID(t *testing.T) uint64 {
	t.Helper()
	p, err := readCgroupFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/sys/fs/cgroup", p), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
