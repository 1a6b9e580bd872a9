package discover

import (
	"context"
	"encoding/binary"
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/kubearmor/kscmp/bpf"
)

// The overhead benchmark. Run it alone, on an idle machine:
//
//	go test -run '^$' -bench Overhead -benchtime 1x ./discover/
//
// Each of 7 rounds runs every mode once (in a rotated order); the figures are
// the medians over the rounds. A second phase measures the programs' own run
// time with the kernel's BPF statistics. Modes:
//
//	none       nothing attached to sys_enter
//	empty      an empty tp_btf/sys_enter program: the floor of any recorder
//	rec-excl   the recorder, the benchmark itself excluded as a host task (early exit)
//	rec-host   the recorder with IncludeHost: the benchmark is recorded (full hot path)
//
// getppid: ns per syscall (thread CPU time) of a tight loop of raw getppid
// calls (in the host mount namespace, so rec-excl shows the cost of the host
// filter); per round the best of 5 loops of 400k calls.
// getppid-ns: the same loop on a thread in a new mount namespace: the
// container path, recorded in both recorder modes.
// find, tar: CPU time (user+sys, all processes) of `find /usr` and
// `tar -cf - /usr/share | cat` (warm cache), each started in a new mount
// namespace (unshare -m), so that the recorder records them as it would a
// container, in all modes alike. CPU time rather than wall time: it is what
// the hook adds, and it is not inflated by other load on the machine.

const (
	overheadRounds   = 7
	getppidLoopCalls = 2_000_000
)

type overheadMode struct {
	name  string
	start func(tb testing.TB) func()
}

func BenchmarkOverhead(b *testing.B) {
	requireKernel(b, "unshare", "find", "tar")
	modes := []overheadMode{
		{"none", func(testing.TB) func() { return func() {} }},
		{"empty", attachEmpty},
		{"rec-excl", func(tb testing.TB) func() { return attachRecorder(tb, false) }},
		{"rec-host", func(tb testing.TB) func() { return attachRecorder(tb, true) }},
	}
	workloads := []struct {
		name string
		run  func(tb testing.TB) float64
	}{
		{"getppid", func(testing.TB) float64 { return getppidBest(getppidLoopCalls) }},
		{"getppid-ns", func(tb testing.TB) float64 { return getppidInMountNS(tb, getppidLoopCalls) }},
		{"find", func(tb testing.TB) float64 { return cpuMS(tb, "find /usr >/dev/null") }},
		{"tar", func(tb testing.TB) float64 { return cpuMS(tb, "tar -cf - /usr/share 2>/dev/null | cat >/dev/null") }},
	}
	// Warm the page cache and the code paths.
	for _, w := range workloads {
		w.run(b)
	}

	for b.Loop() {
		samples := map[string][]float64{}
		for round := range overheadRounds {
			for i := range modes {
				m := modes[(i+round)%len(modes)]
				stop := m.start(b)
				for _, w := range workloads {
					samples[w.name+"/"+m.name] = append(samples[w.name+"/"+m.name], w.run(b))
				}
				stop()
			}
		}
		var table strings.Builder
		fmt.Fprintf(&table, "\n%-10s %10s %10s %10s %10s %12s %12s\n", "workload", "none", "empty", "rec-excl", "rec-host", "excl/floor", "host/floor")
		for _, w := range workloads {
			med := map[string]float64{}
			for _, m := range modes {
				med[m.name] = median(samples[w.name+"/"+m.name])
				unit := "ns/syscall"
				if !strings.HasPrefix(w.name, "getppid") {
					unit = "cpu-ms"
				}
				b.ReportMetric(med[m.name], w.name+"-"+m.name+"-"+unit)
			}
			floor := med["empty"] - med["none"]
			fmt.Fprintf(&table, "%-10s %10.1f %10.1f %10.1f %10.1f %12.2f %12.2f\n", w.name,
				med["none"], med["empty"], med["rec-excl"], med["rec-host"],
				(med["rec-excl"]-med["none"])/floor, (med["rec-host"]-med["none"])/floor)
			b.ReportMetric((med["rec-host"]-med["none"])/floor, w.name+"-host/floor")
		}
		b.Log(table.String())
	}

	programCost(b)

	r, err := NewRecorder(RecorderOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	mem, err := r.Memory()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("kernel memory: sets %d B for %d keys (%d B/key; value %d B), ring buffer %d B, counters %d B",
		mem.Sets, mem.MaxKeys, mem.PerKey(), binarySize(bpf.RecorderSyscallSet{}), mem.Events, mem.Lost)
	b.ReportMetric(float64(mem.PerKey()), "B/key")
}

// programCost measures, with the kernel's BPF statistics
// (kernel.bpf_stats_enabled), the ns per run of the programs themselves in
// the getppid loop: the body's cost apart from the hook's, and little moved
// by other load since a program runs with preemption off. The statistics add
// their own clock reads to every run, equally for all programs.
func programCost(b *testing.B) {
	const knob = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(knob)
	if err != nil {
		b.Logf("no BPF statistics: %v", err)
		return
	}
	if err := os.WriteFile(knob, []byte("1"), 0); err != nil {
		b.Logf("no BPF statistics: %v", err)
		return
	}
	defer os.WriteFile(knob, old, 0)

	perRun := func(p *ebpf.Program) float64 {
		s0, err := p.Stats()
		if err != nil {
			b.Fatal(err)
		}
		getppidLoop(getppidLoopCalls / 5)
		s1, err := p.Stats()
		if err != nil {
			b.Fatal(err)
		}
		return float64(s1.Runtime-s0.Runtime) / float64(s1.RunCount-s0.RunCount)
	}
	samples := map[string][]float64{}
	for range overheadRounds {
		prog, stop := loadEmpty(b)
		samples["empty"] = append(samples["empty"], perRun(prog))
		stop()
		for _, host := range []bool{false, true} {
			r, err := NewRecorder(RecorderOptions{IncludeHost: host, Hook: HookTpBtf})
			if err != nil {
				b.Fatal(err)
			}
			name := map[bool]string{false: "rec-excl", true: "rec-host"}[host]
			samples[name] = append(samples[name], perRun(r.prog))
			r.Close()
		}
	}
	empty := median(samples["empty"])
	b.Logf("program run time (bpf_stats, median of %d): empty %.1f ns, rec-excl %.1f ns (+%.1f), rec-host %.1f ns (+%.1f)",
		overheadRounds, empty, median(samples["rec-excl"]), median(samples["rec-excl"])-empty,
		median(samples["rec-host"]), median(samples["rec-host"])-empty)
	b.ReportMetric(median(samples["rec-host"])-empty, "body-rec-host-ns")
	b.ReportMetric(median(samples["rec-excl"])-empty, "body-rec-excl-ns")
}

// getppidInMountNS runs getppidBest on a thread of its own that first enters
// a new mount namespace: the recorder then takes the container path (mount
// namespace key) in every recorder mode. The thread is not reused: its
// goroutine exits locked, and the Go runtime ends it.
func getppidInMountNS(tb testing.TB, n int) float64 {
	res := make(chan float64, 1)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			errc <- err
			return
		}
		res <- getppidBest(n)
	}()
	select {
	case v := <-res:
		return v
	case err := <-errc:
		tb.Fatalf("unshare: %v", err)
	}
	return 0
}

// getppidBest returns the lowest ns per getppid of 5 loops of n/5 calls:
// the loop least disturbed by other work on the machine.
func getppidBest(n int) float64 {
	best := getppidLoop(n / 5)
	for range 4 {
		best = min(best, getppidLoop(n/5))
	}
	return best
}

// getppidLoop returns ns per getppid over n raw calls on a locked thread, in
// the thread's CPU time: time the thread spent preempted by other work on the
// machine does not count.
func getppidLoop(n int) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPU()
	for range n {
		syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
	}
	return float64(threadCPU()-start) / float64(n)
}

// threadCPU returns the calling thread's CPU time in ns.
func threadCPU() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// cpuMS runs a shell command in a new mount namespace and returns the CPU
// time (user+sys) of it and its descendants in ms.
func cpuMS(tb testing.TB, script string) float64 {
	cmd := exec.Command("unshare", "-m", "--propagation", "unchanged", "sh", "-c", script)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s: %v", script, err)
	}
	return float64((cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Microseconds()) / 1000
}

// attachEmpty attaches the empty benchmark program to tp_btf/sys_enter.
func attachEmpty(tb testing.TB) func() {
	_, stop := loadEmpty(tb)
	return stop
}

// loadEmpty attaches the empty benchmark program and returns it.
func loadEmpty(tb testing.TB) (*ebpf.Program, func()) {
	spec, err := bpf.LoadBench()
	if err != nil {
		tb.Fatal(err)
	}
	var objs struct {
		Prog *ebpf.Program `ebpf:"empty_btf"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		tb.Fatal(err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: objs.Prog, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		objs.Prog.Close()
		tb.Fatal(err)
	}
	return objs.Prog, func() {
		l.Close()
		objs.Prog.Close()
	}
}

// attachRecorder starts a recorder with a Run loop, as an agent would.
func attachRecorder(tb testing.TB, includeHost bool) func() {
	r, err := NewRecorder(RecorderOptions{IncludeHost: includeHost, Hook: HookTpBtf})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx, func(NewKey) {})
	}()
	return func() {
		cancel()
		<-done
		if lost, err := r.Lost(); err != nil || lost.MapFull+lost.RingBufFull != 0 {
			tb.Errorf("recorder lost %+v (err %v)", lost, err)
		}
		r.Close()
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func binarySize(v any) int {
	return binary.Size(v)
}
