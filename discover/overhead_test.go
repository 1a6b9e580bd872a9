package discover

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/kubearmor/kscmp/bpf"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// The overhead benchmark. Run it alone, on an idle machine if there is one:
//
//	go test -v -run '^$' -bench Overhead -benchtime 1x ./discover/
//
// (-v: without it the test framework cuts the log to 10 lines.)
//
// Each round runs every mode once (in a rotated order); the figures are the
// medians over the rounds, and the spread of a ratio is the interquartile
// range of the per-round ratios. A last phase measures the programs' own run
// time with the kernel's BPF statistics, which other load moves far less.
// Modes:
//
//	none       nothing attached to sys_enter
//	empty      an empty tp_btf/sys_enter program: the floor of any recorder
//	rec-excl   the recorder, the benchmark itself excluded as a host task (early exit)
//	rec-host   the recorder with IncludeHost: the benchmark is recorded (full hot path)
//
// getppid: ns per syscall (thread CPU time) of a tight loop of raw getppid
// calls (in the host mount namespace, so rec-excl shows the cost of the host
// filter); per round the best of 5 loops of 80k calls; 21 rounds.
// getppid-ns: the same loop on a thread in a new mount namespace: the
// container path, recorded in both recorder modes.
// find, tar: CPU time (user+sys, all processes) of `find /usr` and
// `tar -cf - /usr/share | cat` (warm cache), each started in a new mount
// namespace (unshare -m), so that the recorder records them as it would a
// container, in all modes alike; 7 rounds. CPU time rather than wall time:
// it is what the hook adds, and it is not inflated by other load on the
// machine (but the floor adds only a few % to these, less than they vary).

const (
	getppidRounds    = 21
	overheadRounds   = 7
	getppidLoopCalls = 400_000
)

type overheadMode struct {
	name  string
	start func(tb testing.TB) func()
}

type overheadWorkload struct {
	name   string
	rounds int
	run    func(tb testing.TB) float64
}

// benchHostNS is the host mount namespace of the recorders the benchmark
// starts, fixed before any thread unshares: the getppid-ns thread, were it
// the main thread, would otherwise change /proc/self/ns/mnt, the fallback
// when /proc/1's is not readable.
var benchHostNS uint32

func BenchmarkOverhead(b *testing.B) {
	requireKernel(b, "unshare", "find", "tar")
	ns, err := hostMountNS("/proc", slog.Default())
	if err != nil {
		b.Fatal(err)
	}
	benchHostNS = ns
	nsw, stopNSW := newNSWorker(b)
	defer stopNSW()
	modes := []overheadMode{
		{"none", func(testing.TB) func() { return func() {} }},
		{"empty", attachEmpty},
		{"rec-excl", func(tb testing.TB) func() { return attachRecorder(tb, false) }},
		{"rec-host", func(tb testing.TB) func() { return attachRecorder(tb, true) }},
	}
	workloads := []overheadWorkload{
		{"getppid", getppidRounds, func(testing.TB) float64 { return getppidBest(getppidLoopCalls) }},
		{"getppid-ns", getppidRounds, func(tb testing.TB) float64 { return nsw.getppidBest(getppidLoopCalls) }},
		{"getppid-cold", getppidRounds, func(tb testing.TB) float64 { return nsw.coldBest(coldLoopCalls) }},
		{"find", overheadRounds, func(tb testing.TB) float64 { return cpuMS(tb, findScript) }},
		{"tar", overheadRounds, func(tb testing.TB) float64 { return cpuMS(tb, tarScript) }},
	}
	// Warm the page cache and the code paths.
	for _, w := range workloads {
		w.run(b)
	}

	var floorNS, floorCold float64 // getppid-ns, getppid-cold: empty − none
	for b.Loop() {
		samples := map[string][]float64{}
		// The getppid loops first, then find and tar, each group with its
		// own number of rounds.
		for _, group := range [][]overheadWorkload{workloads[:3], workloads[3:]} {
			for round := range group[0].rounds {
				for i := range modes {
					m := modes[(i+round)%len(modes)]
					stop := m.start(b)
					for _, w := range group {
						samples[w.name+"/"+m.name] = append(samples[w.name+"/"+m.name], w.run(b))
					}
					stop()
				}
			}
		}
		var table strings.Builder
		fmt.Fprintf(&table, "\n%-10s %10s %10s %10s %10s %17s %17s\n", "workload", "none", "empty", "rec-excl", "rec-host", "excl/floor (IQR)", "host/floor (IQR)")
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
			switch w.name {
			case "getppid-ns":
				floorNS = floor
			case "getppid-cold":
				floorCold = floor
			}
			spread := func(mode string) string {
				var r []float64
				for i, v := range samples[w.name+"/"+mode] {
					none := samples[w.name+"/none"][i]
					r = append(r, (v-none)/(samples[w.name+"/empty"][i]-none))
				}
				slices.Sort(r)
				return fmt.Sprintf("%.2f-%.2f", r[len(r)/4], r[len(r)*3/4])
			}
			fmt.Fprintf(&table, "%-10s %10.1f %10.1f %10.1f %10.1f %5.2f %11s %5.2f %11s\n", w.name,
				med["none"], med["empty"], med["rec-excl"], med["rec-host"],
				(med["rec-excl"]-med["none"])/floor, spread("rec-excl"), (med["rec-host"]-med["none"])/floor, spread("rec-host"))
			b.ReportMetric((med["rec-host"]-med["none"])/floor, w.name+"-host/floor")
		}
		b.Log(table.String())
	}

	programCost(b, nsw, floorNS, floorCold)

	r, err := NewRecorder(RecorderOptions{HostMountNS: benchHostNS})
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

// The find and tar workloads.
const (
	findScript = "find /usr >/dev/null"
	tarScript  = "tar -cf - /usr/share 2>/dev/null | cat >/dev/null"
)

// programCost measures, with the kernel's BPF statistics
// (kernel.bpf_stats_enabled), the ns per run of the programs themselves: the
// body's cost apart from the hook's, and little moved by other load since a
// program runs with preemption off. The statistics add their own clock reads
// to every run, equally for all programs, so only differences to the empty
// program count. Runs of other tasks on the machine are counted too: under
// other load (other recorded mount namespaces making new keys and calls)
// they only add, so the minimum over the rounds is shown besides the median.
// Modes: empty; the recorder on a host thread's getppid loop, excluded
// (rec-excl) and recorded (rec-host, by cgroup); on a thread in a mount
// namespace of its own (rec-ns: the container path); the same without the
// task memo (rec-ns-nomemo: the key read through task → nsproxy → mount
// namespace on every call) and with the current task from the helper
// bpf_get_current_task_btf() instead of the direct read (rec-ns-helper);
// and find and tar, each in a mount namespace of its own, recorded as it
// runs, without the memo and with the helper.
//
// floor is getppid-ns' empty − none from the first phase (CPU time). A
// syscall costs the hook the floor plus the body, so the estimate of the
// recorder's ratio is 1 + (body − empty body)/floor, also for find and tar:
// their own floor per syscall is higher than getppid's (colder caches), so
// with getppid's the estimate errs high.
func programCost(b *testing.B, nsw *nsWorker, floor, coldFloor float64) {
	restore, ok := testenv.EnableBPFStats(b)
	if !ok {
		return
	}
	defer restore()

	samples := map[string][]float64{}
	measure := func(name string, p *ebpf.Program, work func()) {
		s0, err := p.Stats()
		if err != nil {
			b.Fatal(err)
		}
		work()
		s1, err := p.Stats()
		if err != nil {
			b.Fatal(err)
		}
		samples[name] = append(samples[name], float64(s1.Runtime-s0.Runtime)/float64(s1.RunCount-s0.RunCount))
	}
	hostLoop := func() { getppidLoop(getppidLoopCalls) }
	nsLoop := func() { nsw.getppidBest(getppidLoopCalls) }
	coldLoop := func() { nsw.coldBest(coldLoopCalls) }
	find := func() { cpuMS(b, findScript) }
	tar := func() { cpuMS(b, tarScript) }
	recorder := func(host, helper bool, memo memoMode, runs map[string]func()) {
		opts := RecorderOptions{IncludeHost: host, Hook: HookTpBtf, HostMountNS: benchHostNS, memo: memo}
		if helper {
			opts.currentTask = readCurrentAt(0)
		}
		r, err := NewRecorder(opts)
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		for name, work := range runs {
			measure(name, r.prog, work)
		}
	}
	for range getppidRounds {
		prog, stop := loadEmpty(b)
		measure("getppid/empty", prog, nsLoop)
		measure("cold/empty", prog, coldLoop)
		stop()
		recorder(false, false, memoOn, map[string]func(){"getppid/rec-excl": hostLoop, "getppid/rec-ns": nsLoop, "cold/rec": coldLoop})
		recorder(true, false, memoOn, map[string]func(){"getppid/rec-host": hostLoop})
		recorder(false, false, memoOff, map[string]func(){"getppid/rec-ns-nomemo": nsLoop, "cold/rec-nomemo": coldLoop})
		recorder(false, true, memoOn, map[string]func(){"getppid/rec-ns-helper": nsLoop, "cold/rec-helper": coldLoop})
	}
	for range overheadRounds {
		prog, stop := loadEmpty(b)
		measure("find/empty", prog, find)
		measure("tar/empty", prog, tar)
		stop()
		recorder(false, false, memoOn, map[string]func(){"find/rec": find, "tar/rec": tar})
		recorder(false, false, memoOff, map[string]func(){"find/rec-nomemo": find, "tar/rec-nomemo": tar})
		recorder(false, true, memoOn, map[string]func(){"find/rec-helper": find, "tar/rec-helper": tar})
	}
	var out strings.Builder
	fmt.Fprintf(&out, "program run time (bpf_stats, ns per run: median [minimum] of %d rounds for getppid and cold, %d for find and tar; + over empty; "+
		"estimate 1 + (body − empty)/floor with the getppid-ns floor %.1f ns, for cold its own %.1f ns):", getppidRounds, overheadRounds, floor, coldFloor)
	for _, w := range []struct {
		name  string
		modes []string
	}{
		{"getppid", []string{"rec-excl", "rec-host", "rec-ns", "rec-ns-nomemo", "rec-ns-helper"}},
		{"cold", []string{"rec", "rec-nomemo", "rec-helper"}},
		{"find", []string{"rec", "rec-nomemo", "rec-helper"}},
		{"tar", []string{"rec", "rec-nomemo", "rec-helper"}},
	} {
		empty, emptyMin := median(samples[w.name+"/empty"]), slices.Min(samples[w.name+"/empty"])
		fmt.Fprintf(&out, "\n  %-8s empty %5.1f [%5.1f]", w.name, empty, emptyMin)
		for _, m := range w.modes {
			med, lo := median(samples[w.name+"/"+m])-empty, slices.Min(samples[w.name+"/"+m])-emptyMin
			fmt.Fprintf(&out, ", %s +%4.1f [+%4.1f]", m, med, lo)
			f := floor
			if w.name == "cold" {
				f = coldFloor
			}
			if f > 0 && m != "rec-excl" && m != "rec-host" {
				fmt.Fprintf(&out, " %.2f× [%.2f×]", 1+med/f, 1+lo/f)
			}
			b.ReportMetric(med, "body-"+w.name+"-"+m+"-ns")
		}
	}
	b.Log(out.String())
}

// nsWorker is a thread of its own in a new mount namespace, for the whole
// benchmark: the recorder takes the container path (a mount namespace key)
// for its calls in every recorder mode, always with the same key.
type nsWorker struct {
	req chan func() float64
	res chan float64
	// The cold loop's data: ring, copied coldChunk at a time from off.
	ring, chunk []byte
	off         int
}

// newNSWorker starts the thread; stop ends it.
func newNSWorker(tb testing.TB) (w *nsWorker, stop func()) {
	w = &nsWorker{req: make(chan func() float64), res: make(chan float64),
		ring: make([]byte, coldRing), chunk: make([]byte, coldChunk)}
	for i := range w.ring {
		w.ring[i] = byte(i) // touched: no shared zero pages
	}
	errc := make(chan error)
	go onOwnThread(func() {
		errc <- unix.Unshare(unix.CLONE_NEWNS)
		for f := range w.req {
			w.res <- f()
		}
	})
	if err := <-errc; err != nil {
		tb.Fatalf("unshare: %v", err)
	}
	return w, func() { close(w.req) }
}

// getppidBest runs getppidBest(n) on the worker's thread.
func (w *nsWorker) getppidBest(n int) float64 {
	w.req <- func() float64 { return getppidBest(n) }
	return <-w.res
}

// The cold getppid loop: before each getppid the thread copies the next
// coldChunk bytes of a coldRing ring, larger than the CPU's L2 cache, as tar
// streams file data through the caches between its calls (tar's blocks are
// 10 KiB, read then written to the pipe). The copy costs the same in every
// mode, so the differences between modes are the hook's, in the conditions
// of a streaming workload but with the noise of a loop, not of a disk and a
// pipe.
const (
	coldChunk     = 16 << 10
	coldRing      = 8 << 20
	coldLoopCalls = 40_000
)

// coldBest runs the cold loop on the worker's thread: the lowest ns per
// iteration (copy and getppid) of 5 loops of n/5.
func (w *nsWorker) coldBest(n int) float64 {
	w.req <- func() float64 {
		best := w.coldLoop(n / 5)
		for range 4 {
			best = min(best, w.coldLoop(n/5))
		}
		return best
	}
	return <-w.res
}

func (w *nsWorker) coldLoop(n int) float64 {
	start := threadCPU()
	for range n {
		copy(w.chunk, w.ring[w.off:w.off+coldChunk])
		w.off = (w.off + coldChunk) % coldRing
		syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
	}
	return float64(threadCPU()-start) / float64(n)
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
	r, err := NewRecorder(RecorderOptions{IncludeHost: includeHost, Hook: HookTpBtf, HostMountNS: benchHostNS})
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
