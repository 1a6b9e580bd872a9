package testenv

import (
	"os"
	"testing"
)

// bpfStatsKnob turns on the kernel's per-program run time and run count
// (kernel.bpf_stats_enabled; Documentation/admin-guide/sysctl/kernel.rst).
const bpfStatsKnob = "/proc/sys/kernel/bpf_stats_enabled"

// EnableBPFStats turns the kernel's BPF statistics on, so that
// ebpf.Program.Stats reports run time and count, until restore is called
// (the knob gets its old value back: the statistics cost every program
// run, so a measurement after them must not have them on). It reports
// false, with the reason logged, when the knob cannot be read or written
// (not root, an old kernel): the caller then leaves out what needs them.
func EnableBPFStats(tb testing.TB) (restore func(), ok bool) {
	tb.Helper()
	old, err := os.ReadFile(bpfStatsKnob)
	if err == nil {
		err = os.WriteFile(bpfStatsKnob, []byte("1"), 0)
	}
	if err != nil {
		tb.Logf("no BPF statistics: %v", err)
		return func() {}, false
	}
	return func() { os.WriteFile(bpfStatsKnob, old, 0) }, true
}
