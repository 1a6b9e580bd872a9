package discover

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// The recorder's hot path reads the current task from the kernel's per-CPU
// variable current_task instead of calling bpf_get_current_task_btf(), a
// helper call the JIT does not inline on x86-64 and that costs, on a
// syscall hook, about as much as all the rest of the program (BENCHMARKS.md).
// The program needs the variable's address for that. Per-CPU variables are
// not in /proc/kallsyms unless the kernel was built with KALLSYMS_ALL (so a
// __ksym declaration does not load either), but two facts give it:
//
//   - the verifier inlines bpf_get_smp_processor_id() on x86-64 (6.10+) as
//     "r0 = &cpu_number; r0 = this_cpu_ptr(r0); r0 = *(u32 *)r0", and a
//     privileged reader of a program's translated instructions sees that
//     address;
//   - the kernel's BTF places every per-CPU variable in the .data..percpu
//     section, so current_task's address is cpu_number's plus the distance
//     between their offsets there.
//
// The program then checks the result against the helper once per CPU before
// using it (learn_current in recorder.c), and again on every cache miss. On
// any other layout, architecture or kernel currentTaskAddr returns an error
// and the recorder calls the helper.

// currentTaskAddr returns the address of the per-CPU variable current_task,
// or an error if it cannot be found here (the recorder then uses the
// helper).
func currentTaskAddr() (uint64, error) {
	if runtime.GOARCH != "amd64" {
		// arm64 keeps current in a register, which recent JITs read inline.
		return 0, fmt.Errorf("not on %s", runtime.GOARCH)
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return 0, err
	}
	// The program reads the variable through this kfunc (6.2+).
	var fn *btf.Func
	if err := spec.TypeByName("bpf_rdonly_cast", &fn); err != nil {
		return 0, fmt.Errorf("kfunc bpf_rdonly_cast: %w", err)
	}
	// The program compiles its direct read in only when the kernel has
	// these (current_task in recorder.c); without them it would load, but
	// ask the helper.
	for _, tm := range []struct{ typ, member string }{{"rcuwait", "task"}, {"bpf_array", "pptrs"}} {
		var st *btf.Struct
		if err := spec.TypeByName(tm.typ, &st); err != nil {
			return 0, fmt.Errorf("struct %s: %w", tm.typ, err)
		}
		if !hasMember(st, tm.member) {
			return 0, fmt.Errorf("struct %s has no %s", tm.typ, tm.member)
		}
	}
	var percpu *btf.Datasec
	if err := spec.TypeByName(".data..percpu", &percpu); err != nil {
		return 0, fmt.Errorf("per-CPU section: %w", err)
	}
	task, err := percpuOffset(percpu, "current_task")
	if err != nil {
		return 0, err
	}
	cpu, err := percpuOffset(percpu, "cpu_number")
	if err != nil {
		return 0, err
	}
	cpuAddr, err := cpuNumberAddr()
	if err != nil {
		return 0, err
	}
	return cpuAddr - cpu + task, nil
}

// percpuOffset returns the offset of a per-CPU variable in the per-CPU
// section: a variable of its own (6.15+, and before 6.2), or a field of
// pcpu_hot (6.2 to 6.14).
func percpuOffset(sec *btf.Datasec, name string) (uint64, error) {
	for _, v := range sec.Vars {
		if v.Type.TypeName() == name {
			return uint64(v.Offset), nil
		}
	}
	for _, v := range sec.Vars {
		if v.Type.TypeName() != "pcpu_hot" {
			continue
		}
		vr, ok := v.Type.(*btf.Var)
		if !ok {
			break
		}
		st, ok := btf.UnderlyingType(vr.Type).(*btf.Struct)
		if !ok {
			break
		}
		for _, m := range st.Members {
			if m.Name == name && m.Offset%8 == 0 {
				return uint64(v.Offset) + uint64(m.Offset/8), nil
			}
		}
	}
	return 0, fmt.Errorf("per-CPU variable %s not in the kernel's BTF", name)
}

// hasMember reports whether a struct or union has the named member, also
// inside its anonymous structs and unions (where bpf_array keeps pptrs).
func hasMember(t btf.Type, name string) bool {
	var members []btf.Member
	switch c := btf.UnderlyingType(t).(type) {
	case *btf.Struct:
		members = c.Members
	case *btf.Union:
		members = c.Members
	}
	for _, m := range members {
		if m.Name == name || (m.Name == "" && hasMember(m.Type, name)) {
			return true
		}
	}
	return false
}

// cpuNumberAddr returns the address of the per-CPU variable cpu_number, as
// the verifier writes it into a program that calls bpf_get_smp_processor_id.
func cpuNumberAddr() (uint64, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SocketFilter,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.FnGetSmpProcessorId.Call(),
			asm.Return(),
		},
	})
	if err != nil {
		return 0, fmt.Errorf("probe program: %w", err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return 0, err
	}
	insns, err := info.Instructions()
	if err != nil {
		return 0, fmt.Errorf("probe program instructions: %w", err)
	}
	// r0 = imm32 (sign-extended); r0 = r0 with offset -1 (BPF_ADDR_PERCPU:
	// this CPU's copy); r0 = *(u32 *)(r0 + 0).
	if len(insns) < 3 ||
		insns[0].OpCode != asm.Mov.Op(asm.ImmSource) || insns[0].Dst != asm.R0 ||
		insns[1].OpCode != asm.Mov.Op(asm.RegSource) || insns[1].Dst != asm.R0 || insns[1].Src != asm.R0 || insns[1].Offset != -1 ||
		insns[2].OpCode != asm.LoadMemOp(asm.Word) || insns[2].Dst != asm.R0 || insns[2].Src != asm.R0 || insns[2].Offset != 0 {
		return 0, errors.New("bpf_get_smp_processor_id is not inlined as a per-CPU load")
	}
	return uint64(int64(int32(insns[0].Constant))), nil
}
