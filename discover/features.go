package discover

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// ErrUnsupported is wrapped by the errors that say this system cannot
// record: the kernel lacks what the recorder needs (BTF, tp_btf or raw
// tracepoints, ring buffers), or refuses this process the privilege to load
// it (CAP_BPF, CAP_PERFMON). NewRecorder's failures to load or attach wrap
// it, and so do the recorder's feature probes for the shortcuts it can do
// without. Check with errors.Is.
var ErrUnsupported = errors.New("not supported by this system")

// unsupportedError is a kernel feature the recorder found missing: what it
// is, and what the kernel answered.
type unsupportedError struct {
	feature string
	err     error
}

func (e *unsupportedError) Error() string {
	return e.feature + ": " + ErrUnsupported.Error() + ": " + e.err.Error()
}

func (e *unsupportedError) Unwrap() []error { return []error{ErrUnsupported, e.err} }

// The kernel features the recorder uses when they are there, each probed by
// name, at most once per process (the answer does not change while the
// kernel runs, and a probe loads a program), on the first recorder that
// asks. Each returns nil, or an error wrapping ErrUnsupported that says what
// the kernel refused. The recorder picks its Hook from them.
var (
	// haveTpBtf: a BTF-enabled tracepoint program attaches to sys_enter
	// (5.5+, with kernel BTF). Without it the recorder takes raw_tp.
	haveTpBtf = featureTest("tp_btf/sys_enter", func() error { return probeTracing("sys_enter") })
	// haveTaskFree: one attaches to sched_process_free too, which the task
	// memo needs (a memo is trusted only while task_free drops it when a
	// task's address is freed). Without it: HookTpBtfNoMemo.
	haveTaskFree = featureTest("task memo (tp_btf/sched_process_free)", func() error { return probeTracing("sched_process_free") })
	// directCurrentTask: the address of current_task for the direct read of
	// the current task (x86-64; current.go says how it is found). Without
	// it: HookTpBtfHelper.
	directCurrentTask = sync.OnceValues(func() (uint64, error) {
		addr, err := currentTaskAddr()
		if err != nil {
			return 0, &unsupportedError{"direct current-task read", err}
		}
		return addr, nil
	})
)

// featureTest memoizes a probe: fn runs once, on the first call, and its
// failure is reported as the named feature being unsupported.
func featureTest(name string, fn func() error) func() error {
	return sync.OnceValue(func() error {
		if err := fn(); err != nil {
			return &unsupportedError{name, err}
		}
		return nil
	})
}

// probeTracing loads the smallest tp_btf program for the tracepoint and
// attaches it: the load proves the kernel has BTF for the tracepoint and
// takes tracing programs, the attach that it can hook them there. The
// program returns at once and is detached before probeTracing returns.
func probeTracing(tracepoint string) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "kscmp_probe",
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceRawTp,
		AttachTo:     tracepoint,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	return l.Close()
}
