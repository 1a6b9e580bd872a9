package violations

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/api/violation"
	"github.com/kubearmor/kscmp/bpf"
)

// Watch is a cgroup under a seccomp profile and the native-ABI calls that
// profile refuses with EPERM whatever their arguments: the exit-errors
// program counts an EPERM return of one of them in that cgroup as Block.
type Watch struct {
	// Cgroup is the cgroup v2 path as /proc/PID/cgroup shows it
	// ("/kscmp-c1", "/kubepods.slice/…/cri-containerd-<id>.scope").
	Cgroup string
	// Refused are the call numbers of the native ABI.
	Refused []int
}

// WatchSource lists the cgroups to watch; the monitor asks it at the start
// and at every interval, so containers started later are watched too.
type WatchSource func() ([]Watch, error)

// maxWatched bounds the watched cgroups (the kernel map's size).
const maxWatched = 4096

// cgroupRoot is where the cgroup v2 hierarchy is mounted.
const cgroupRoot = "/sys/fs/cgroup"

// exitErrors is the loaded exit-errors program, its maps and what user
// space knows of each watched cgroup id.
type exitErrors struct {
	objs   bpf.ExitErrObjects
	link   link.Link
	source WatchSource
	ids    map[uint64]report.Identity // watched cgroup id → workload
	abi    string                     // the native ABI's name
}

// ErrExitErrorsUnsupported is wrapped when the exit-errors program cannot
// be loaded or attached (no native ABI known, no CAP_BPF or CAP_PERFMON,
// no BTF, no tp_btf); it wraps ErrUnsupported.
var ErrExitErrorsUnsupported = fmt.Errorf("%w: probe exit-errors (tp_btf/sys_exit)", ErrUnsupported)

// openExitErrors loads and attaches the exit-errors program with a count
// map of maxEntries pairs. It is the named feature probe "exit-errors
// (tp_btf/sys_exit)": its errors wrap ErrExitErrorsUnsupported.
func openExitErrors(source WatchSource, maxEntries int) (*exitErrors, error) {
	abi := nativeABI()
	if abi == "" {
		return nil, fmt.Errorf("%w: no native ABI known for %s", ErrExitErrorsUnsupported, runtime.GOARCH)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("%w: memlock: %w", ErrExitErrorsUnsupported, err)
	}
	spec, err := bpf.LoadExitErr()
	if err != nil {
		return nil, fmt.Errorf("probe exit-errors: %w", err)
	}
	spec.Maps[bpf.ExitErrMapWatched].MaxEntries = maxWatched
	spec.Maps[bpf.ExitErrMapCounts].MaxEntries = uint32(maxEntries)
	x := &exitErrors{source: source, ids: map[uint64]report.Identity{}, abi: abi}
	if err := spec.LoadAndAssign(&x.objs, nil); err != nil {
		return nil, fmt.Errorf("%w: load: %w", ErrExitErrorsUnsupported, err)
	}
	x.link, err = link.AttachTracing(link.TracingOptions{Program: x.objs.SysExitEperm, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		x.objs.Close()
		return nil, fmt.Errorf("%w: attach: %w", ErrExitErrorsUnsupported, err)
	}
	return x, nil
}

// Close detaches the program and frees its maps.
func (x *exitErrors) Close() error {
	return errors.Join(x.link.Close(), x.objs.Close())
}

// nativeABI names the native system call table of this machine.
func nativeABI() string {
	switch runtime.GOARCH {
	case "amd64":
		return report.ABIName(api.ArchX86_64)
	case "arm64":
		return report.ABIName(api.ArchAARCH64)
	}
	return ""
}

// sync asks the source for the watched cgroups and writes them to the
// kernel map; name turns a cgroup path into its workload (nil: skip it,
// the filter does not select it). A cgroup gone since is left to the
// kernel map's bound: its id is never reused.
func (x *exitErrors) sync(name func(cgroup string) (report.Identity, bool)) error {
	ws, err := x.source()
	if err != nil {
		return fmt.Errorf("exit-errors: list watched cgroups: %w", err)
	}
	for _, w := range ws {
		id, err := cgroupID(w.Cgroup)
		if err != nil {
			continue // gone already
		}
		if _, known := x.ids[id]; known {
			continue
		}
		ident, keep := name(w.Cgroup)
		if !keep {
			continue
		}
		var set bpf.ExitErrExitRefused
		for _, nr := range w.Refused {
			if nr >= 0 && nr < bpf.NrBits {
				set.Bits[nr/64] |= 1 << (nr % 64)
			}
		}
		if err := x.objs.Watched.Put(id, &set); err != nil {
			return fmt.Errorf("exit-errors: watch cgroup %s (id %d): %w", w.Cgroup, id, err)
		}
		x.ids[id] = ident
	}
	return nil
}

// cgroupID is the id the kernel gives a cgroup v2 path: its directory's
// inode (bpf_get_current_cgroup_id).
func cgroupID(cgroup string) (uint64, error) {
	fi, err := os.Stat(filepath.Join(cgroupRoot, filepath.Clean("/"+cgroup)))
	if err != nil {
		return 0, err
	}
	return fi.Sys().(*syscall.Stat_t).Ino, nil
}

// counted is one kernel count: the workload, the call and its counters.
type counted struct {
	id     report.Identity
	nr     int
	count  uint64
	first  time.Time
	last   time.Time
	action string
}

// read returns the kernel's counts and its lost counter (new pairs that
// found the count map full), times turned from CLOCK_BOOTTIME to wall.
func (x *exitErrors) read() ([]counted, uint64, error) {
	var boot unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot); err != nil {
		return nil, 0, fmt.Errorf("exit-errors: CLOCK_BOOTTIME: %w", err)
	}
	now, bootNs := time.Now(), uint64(boot.Nano())
	wall := func(ns uint64) time.Time { return now.Add(-time.Duration(bootNs - min(ns, bootNs))).UTC() }
	var out []counted
	var k bpf.ExitErrExitKey
	var v bpf.ExitErrExitCount
	it := x.objs.Counts.Iterate()
	for it.Next(&k, &v) {
		id, ok := x.ids[k.Cgroup]
		if !ok {
			continue
		}
		out = append(out, counted{id: id, nr: int(k.Nr), count: v.Count, first: wall(v.FirstNs), last: wall(v.LastNs), action: violation.ActionBlock})
	}
	if err := it.Err(); err != nil {
		return nil, 0, fmt.Errorf("exit-errors: read counts: %w", err)
	}
	var per []uint64
	if err := x.objs.Lost.Lookup(uint32(0), &per); err != nil {
		return nil, 0, fmt.Errorf("exit-errors: read lost: %w", err)
	}
	var lost uint64
	for _, n := range per {
		lost += n
	}
	return out, lost, nil
}

// trimCgroup is the cgroup path as /proc shows it, from an absolute path
// under cgroupRoot or a relative one.
func trimCgroup(p string) string {
	return "/" + strings.Trim(strings.TrimPrefix(p, cgroupRoot), "/")
}

// nameCgroup names the workload of a watched cgroup as the audit path
// names a process in it, and tells whether the filter selects it.
func (m *monitor) nameCgroup(cgroup string) (report.Identity, bool) {
	id := m.name(cgroup, "", true)
	return id, m.opts.Filter.Match(0, id)
}

// pollExits watches the cgroups started since and takes the kernel's
// counts; a failure is logged, not fatal: the audit path goes on.
func (m *monitor) pollExits() {
	if m.ex == nil {
		return
	}
	if err := m.ex.sync(m.nameCgroup); err != nil {
		m.opts.Logger.Warn("violations: exit-errors", "err", err)
	}
	exits, lost, err := m.ex.read()
	if err != nil {
		m.opts.Logger.Warn("violations: exit-errors", "err", err)
		return
	}
	m.mu.Lock()
	m.exits, m.exitLost = exits, lost
	m.mu.Unlock()
}

// mergeExits adds the exit-errors counts to r under the audit path's
// entries and bound: a refusal both paths saw (a profile with the log
// flag) is one entry with the larger count, a new entry past MaxEntries
// is counted as overflow, as are the kernel's pairs that found its map
// full. The kernel's counts are cumulative; with reset (Options.Reset)
// r gets what was counted since the previous reset, as the audit path's
// entries are, and a pair with nothing new is left out. The caller holds
// mu.
func (m *monitor) mergeExits(r *violation.Report, reset bool) {
	if m.ex == nil {
		return
	}
	at := make(map[entryKey]int, len(r.Violations))
	for i, v := range r.Violations {
		at[entryKey{id: v.Identity.Key(), abi: v.ABI, action: v.Action, nr: v.Number}] = i
	}
	a, _ := report.ArchOf(m.ex.abi)
	if m.exitBase == nil {
		m.exitBase = map[entryKey]uint64{}
	}
	for _, c := range m.exits {
		k := entryKey{id: c.id.Key(), abi: m.ex.abi, action: c.action, nr: c.nr}
		cum := c.count
		if base := m.exitBase[k]; base > 0 && base <= cum {
			// Counted before the last reset: only the rest is new, since
			// the interval began.
			c.count = cum - base
			c.first = maxTime(c.first, r.Start)
		}
		if reset {
			m.exitBase[k] = cum
		}
		if c.count == 0 {
			continue
		}
		if i, ok := at[k]; ok {
			v := &r.Violations[i]
			v.Count = max(v.Count, c.count)
			v.FirstSeen, v.LastSeen = minTime(v.FirstSeen, c.first), maxTime(v.LastSeen, c.last)
			continue
		}
		if len(r.Violations) >= m.opts.MaxEntries {
			r.Lost.Overflow++
			continue
		}
		v := violation.Violation{Identity: c.id, Syscall: a.Table().SyscallNumbers[c.nr], Number: c.nr, ABI: m.ex.abi,
			Action: c.action, Count: c.count, FirstSeen: c.first, LastSeen: c.last}
		if m.opts.Profiles != nil {
			v.Profile = m.opts.Profiles.Profile(c.id)
		}
		at[k] = len(r.Violations)
		r.Violations = append(r.Violations, v)
	}
	if m.exitLost >= m.exitLostBase {
		r.Lost.Overflow += m.exitLost - m.exitLostBase
	}
	if reset {
		m.exitLostBase = m.exitLost
	}
}
