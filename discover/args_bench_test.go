package discover

import (
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkArgCalls measures what the argument recording costs the calls it
// records: they never enter the per-CPU cache, so each takes the recorder's
// slow path (the helper's current task, the key read again, the comm check
// for runtimes, a hash map lookup, the argument reads and, rarely, an
// atomic OR). Run it alone:
//
//	go test -v -run '^$' -bench ArgCalls -benchtime 1x ./discover/
//
// Each round runs, on a locked host thread, loops of raw calls with nothing
// attached (none) and with the recorder attached and recording host tasks
// (rec, keyed by the thread's cgroup), in alternating order; the figures
// are medians over the rounds of each mode's best loop, in thread CPU time.
// getppid is the cached hot path, for comparison; prctl(PR_GET_DUMPABLE)
// and personality(0xffffffff) (both queries) and socket+close (AF_UNIX,
// SOCK_DGRAM) are recorded calls.
func BenchmarkArgCalls(b *testing.B) {
	requireKernel(b)
	ns, err := hostMountNS("/proc", slog.Default())
	if err != nil {
		b.Fatal(err)
	}
	benchHostNS = ns
	const rounds, calls = 15, 100_000
	loops := []struct {
		name string
		n    int
		call func()
	}{
		{"getppid", calls, func() { syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0) }},
		{"prctl", calls, func() { syscall.RawSyscall6(syscall.SYS_PRCTL, unix.PR_GET_DUMPABLE, 0, 0, 0, 0, 0) }},
		{"personality", calls, func() { syscall.RawSyscall(syscall.SYS_PERSONALITY, 0xffffffff, 0, 0) }},
		{"socket+close", calls / 10, func() {
			fd, _, _ := syscall.RawSyscall(syscall.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_DGRAM, 0)
			syscall.RawSyscall(syscall.SYS_CLOSE, fd, 0, 0)
		}},
	}
	modes := []struct {
		name  string
		start func(testing.TB) func()
	}{
		{"none", func(testing.TB) func() { return func() {} }},
		{"rec", func(tb testing.TB) func() { return attachRecorder(tb, true) }},
	}
	for b.Loop() {
		samples := map[string][]float64{}
		for round := range rounds {
			for i := range modes {
				m := modes[(i+round)%len(modes)]
				stop := m.start(b)
				for _, l := range loops {
					samples[l.name+"/"+m.name] = append(samples[l.name+"/"+m.name], callLoopBest(l.n, l.call))
				}
				stop()
			}
		}
		var table strings.Builder
		fmt.Fprintf(&table, "\n%-14s %10s %10s %10s   (ns per call, thread CPU time)\n", "call", "none", "rec", "rec-none")
		for _, l := range loops {
			none, rec := median(samples[l.name+"/none"]), median(samples[l.name+"/rec"])
			fmt.Fprintf(&table, "%-14s %10.1f %10.1f %10.1f\n", l.name, none, rec, rec-none)
			b.ReportMetric(rec-none, l.name+"-rec-ns/call")
		}
		b.Log(table.String())
	}
}

// callLoopBest returns the best of 3 loops of n/3 calls of fn on a locked
// thread, in ns of the thread's CPU time per call.
func callLoopBest(n int, fn func()) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	best := 0.0
	for i := range 3 {
		start := threadCPU()
		for range n / 3 {
			fn()
		}
		ns := float64(threadCPU()-start) / float64(n/3)
		if i == 0 || ns < best {
			best = ns
		}
	}
	return best
}
