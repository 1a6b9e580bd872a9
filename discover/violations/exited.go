package violations

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/kubearmor/kscmp/bpf"
	"github.com/kubearmor/kscmp/discover"
)

// Sizes of the Exited program's maps (LRU: the oldest entries go first).
const (
	// DefaultExitedEntries is how many exited thread groups are
	// remembered: what a node's processes under seccomp may exit between
	// a call and the moment the monitor reads its record.
	DefaultExitedEntries = 16384
	// exitedPaths is how many cgroup paths are remembered; one per
	// cgroup that had a process exit, so a node's containers.
	exitedPaths = 4096
	// exitedSlack is how long before a record's time an exit may be and
	// still be the exit of the process that made the record: the record's
	// time is the audit subsystem's coarse clock (a jiffy behind) in
	// milliseconds, the exit time CLOCK_BOOTTIME turned into wall time.
	// A pid reused within it would be misnamed; the pid space (32,768 at
	// the least) is not gone through in 100 ms.
	exitedSlack = 100 * time.Millisecond
)

// exited is the loaded Exited program (bpf/c/exited.c): where the
// processes under seccomp were when they exited, so that a record
// read after its process is gone still names the workload.
type exited struct {
	objs bpf.ExitedObjects
	link link.Link
	// paths caches the kernel's cgroup paths by id; emptied when full.
	// Only the monitor's reader uses it, under monitor.mu.
	paths map[uint64]string
}

// exitedProcess is what the kernel kept of an exited process.
type exitedProcess struct {
	cgroup string
	mntns  uint32
}

// ErrExitedUnsupported is wrapped when the Exited program cannot be loaded
// or attached (no CAP_BPF or CAP_PERFMON, no BTF, no tp_btf); it wraps
// ErrUnsupported.
var ErrExitedUnsupported = fmt.Errorf("%w: probe exited (tp_btf/sched_process_exit)", ErrUnsupported)

// openExited loads and attaches the Exited program, remembering up to
// entries exited thread groups. It is the named feature probe "exited
// (tp_btf/sched_process_exit)": its errors wrap ErrExitedUnsupported.
func openExited(entries int) (*exited, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("%w: memlock: %w", ErrExitedUnsupported, err)
	}
	spec, err := bpf.LoadExited()
	if err != nil {
		return nil, fmt.Errorf("probe exited: %w", err)
	}
	spec.Maps[bpf.ExitedMapExited].MaxEntries = uint32(entries)
	spec.Maps[bpf.ExitedMapPaths].MaxEntries = exitedPaths
	x := &exited{paths: map[uint64]string{}}
	if err := spec.LoadAndAssign(&x.objs, nil); err != nil {
		return nil, fmt.Errorf("%w: load: %w", ErrExitedUnsupported, err)
	}
	x.link, err = link.AttachTracing(link.TracingOptions{Program: x.objs.ProcessExit, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		x.objs.Close()
		return nil, fmt.Errorf("%w: attach: %w", ErrExitedUnsupported, err)
	}
	return x, nil
}

// Close detaches the program and frees its maps.
func (x *exited) Close() error {
	return errors.Join(x.link.Close(), x.objs.Close())
}

// lookup returns where the thread group tgid was when it exited, if it
// exited under seccomp no earlier than exitedSlack before at (the time
// of a record it made): an exit before that was of an earlier process with
// the same pid.
func (x *exited) lookup(tgid int, at time.Time) (exitedProcess, bool) {
	var rec bpf.ExitedExitRecord
	if tgid <= 0 || x.objs.Exited.Lookup(uint32(tgid), &rec) != nil {
		return exitedProcess{}, false
	}
	var boot unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot) != nil {
		return exitedProcess{}, false
	}
	ago := time.Duration(uint64(boot.Nano()) - min(rec.ExitNs, uint64(boot.Nano())))
	if time.Now().Add(-ago).Before(at.Add(-exitedSlack)) {
		return exitedProcess{}, false
	}
	p, ok := x.path(rec.Cgroup)
	return exitedProcess{cgroup: p, mntns: rec.Mntns}, ok
}

// path returns the cgroup path the kernel kept for the cgroup id.
func (x *exited) path(id uint64) (string, bool) {
	if p, ok := x.paths[id]; ok {
		return p, true
	}
	var cp bpf.ExitedCgroupPath
	if x.objs.Paths.Lookup(id, &cp) != nil {
		return "", false
	}
	p := discover.LeafFirstPath(cp.Names[:], int(cp.Len))
	if len(x.paths) >= exitedPaths {
		clear(x.paths)
	}
	x.paths[id] = p
	return p, true
}
