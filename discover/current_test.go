package discover

import (
	"os/exec"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kubearmor/kscmp/bpf"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// TestCurrentTask checks the recorder's direct read of the current task
// (x86-64, tp_btf): every CPU finds and checks the address of its
// current_task, and a wrong address is refused for the helper.
// TestStraceParity records through both.
func TestCurrentTask(t *testing.T) {
	requireKernel(t, "taskset")
	if runtime.GOARCH != "amd64" {
		t.Skip("the direct read is x86-64 only")
	}
	addr, err := currentTaskAddr()
	if err != nil {
		testenv.Missing(t, "an x86-64 kernel that inlines bpf_get_smp_processor_id and has bpf_rdonly_cast (6.10+): "+err.Error())
	}
	t.Logf("current_task at %#x", addr)

	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		addr uint64
		want func(uint64) bool
	}{
		{"direct", addr, func(slot uint64) bool { return slot > bpf.CurrentHelper }},
		// 8 bytes on is the next per-CPU variable, not the current task.
		{"wrong address", addr + 8, func(slot uint64) bool { return slot == bpf.CurrentHelper }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newTestRecorder(t, RecorderOptions{Hook: HookTpBtf, currentTask: readCurrentAt(tc.addr)})
			// A process on each of our CPUs: the program runs there.
			var cpus []int
			for cpu := range 1024 {
				if !allowed.IsSet(cpu) {
					continue
				}
				cpus = append(cpus, cpu)
				if b, err := exec.Command("taskset", "-c", strconv.Itoa(cpu), "true").CombinedOutput(); err != nil {
					t.Fatalf("taskset: %v\n%s", err, b)
				}
			}
			slots, err := r.currentSlots()
			if err != nil {
				t.Fatal(err)
			}
			for _, cpu := range cpus {
				if cpu >= len(slots) || !tc.want(slots[cpu]) {
					t.Errorf("CPU %d: current slot %#x", cpu, slots[min(cpu, len(slots)-1)])
				}
			}
			t.Logf("current slots: %#x", slots)
		})
	}
}

// readCurrentAt makes a recorder read the current task at addr (0: through
// the helper).
func readCurrentAt(addr uint64) func() (uint64, error) {
	return func() (uint64, error) { return addr, nil }
}
