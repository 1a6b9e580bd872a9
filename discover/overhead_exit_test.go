package discover

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/kubearmor/kscmp/bpf"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// The exit-errors overhead benchmark (kscmp violations --exit-errors), with
// BenchmarkOverhead's method, side by side in one run:
//
//	go test -v -run '^$' -bench OverheadExit -benchtime 1x ./discover/
//
// Modes: none (nothing on sys_exit), empty-exit (an empty tp_btf/sys_exit
// program: the floor of any sys_exit hook), exit-errors (bpf's ExitErr
// program, as the monitor attaches it). Workloads: getppid, the host
// thread's loop, and getppid-ns, the loop on a thread in a mount namespace
// of its own (a container's call); getppid never fails, so both take the
// program's path of every call that does not return -EPERM. Figures:
// medians over the rotated rounds, the ratio over the floor with its IQR,
// then the programs' own run time from the kernel's BPF statistics.
func BenchmarkOverheadExit(b *testing.B) {
	nsw, stopNSW := newNSWorker(b)
	defer stopNSW()
	modes := []struct {
		name string
		prog string // the program attached, "" for none
	}{{"none", ""}, {"empty-exit", "empty_exit_btf"}, {"exit-errors", "sys_exit_eperm"}}
	workloads := []struct {
		name string
		run  func() float64
	}{
		{"getppid", func() float64 { return getppidBest(getppidLoopCalls) }},
		{"getppid-ns", func() float64 { return nsw.getppidBest(getppidLoopCalls) }},
	}
	for b.Loop() {
		samples := map[string][]float64{}
		for round := range getppidRounds {
			for i := range modes {
				m := modes[(i+round)%len(modes)]
				_, stop := attachExit(b, m.prog)
				for _, w := range workloads {
					samples[w.name+"/"+m.name] = append(samples[w.name+"/"+m.name], w.run())
				}
				stop()
			}
		}
		var table strings.Builder
		fmt.Fprintf(&table, "\n%-10s %10s %10s %11s %21s\n", "workload", "none", "empty-exit", "exit-errors", "exit-errors/floor (IQR)")
		for _, w := range workloads {
			s := func(mode string) []float64 { return samples[w.name+"/"+mode] }
			none, empty, exit := median(s("none")), median(s("empty-exit")), median(s("exit-errors"))
			var r []float64
			for i, v := range s("exit-errors") {
				r = append(r, (v-s("none")[i])/(s("empty-exit")[i]-s("none")[i]))
			}
			slices.Sort(r)
			fmt.Fprintf(&table, "%-10s %10.1f %10.1f %11.1f %9.2f %11s\n", w.name, none, empty, exit,
				(exit-none)/(empty-none), fmt.Sprintf("%.2f-%.2f", r[len(r)/4], r[len(r)*3/4]))
			b.ReportMetric((exit-none)/(empty-none), w.name+"-exit/floor")
		}
		b.Log(table.String())
	}
	exitProgramCost(b, nsw)
}

// exitProgramCost measures the ns per run of the empty sys_exit program and
// of the exit-errors program with the kernel's BPF statistics, as
// programCost does for the recorder: only the difference counts.
func exitProgramCost(b *testing.B, nsw *nsWorker) {
	restore, ok := testenv.EnableBPFStats(b)
	if !ok {
		return
	}
	defer restore()
	samples := map[string][]float64{}
	names := []string{"empty_exit_btf", bpf.ExitErrProgSysExitEperm}
	for round := range getppidRounds {
		for i := range names {
			name := names[(i+round)%len(names)]
			prog, stop := attachExit(b, name)
			s0, err := prog.Stats()
			if err != nil {
				b.Fatal(err)
			}
			nsw.getppidBest(getppidLoopCalls)
			s1, err := prog.Stats()
			stop()
			if err != nil {
				b.Fatal(err)
			}
			samples[name] = append(samples[name], float64(s1.Runtime-s0.Runtime)/float64(s1.RunCount-s0.RunCount))
		}
	}
	empty, exit := samples[names[0]], samples[names[1]]
	b.Logf("program run time (bpf_stats, ns per run, median [minimum] of %d rounds): empty-exit %.1f [%.1f], exit-errors %.1f [%.1f]: +%.1f [+%.1f]",
		getppidRounds, median(empty), slices.Min(empty), median(exit), slices.Min(exit), median(exit)-median(empty), slices.Min(exit)-slices.Min(empty))
	b.ReportMetric(median(exit)-median(empty), "body-exit-errors-ns")
}

// attachExit attaches the named sys_exit program (bpf's Bench or ExitErr
// object) to tp_btf/sys_exit; "" attaches nothing.
func attachExit(tb testing.TB, name string) (*ebpf.Program, func()) {
	if name == "" {
		return nil, func() {}
	}
	load := bpf.LoadBench
	if name == bpf.ExitErrProgSysExitEperm {
		load = bpf.LoadExitErr
	}
	spec, err := load()
	if err != nil {
		tb.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: coll.Programs[name], AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		coll.Close()
		tb.Fatal(err)
	}
	return coll.Programs[name], func() {
		l.Close()
		coll.Close()
	}
}
