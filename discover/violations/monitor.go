package violations

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/api/violation"
	"github.com/kubearmor/kscmp/discover"
	"github.com/kubearmor/kscmp/internal/auditlog"
)

// ErrUnsupported is wrapped when this system cannot deliver audit records
// to the monitor: no audit netlink (a kernel without CONFIG_AUDIT), no
// CAP_AUDIT_READ, or audit disabled (audit=0). The message names the probe
// that failed. It is auditlog.ErrUnsupported.
var ErrUnsupported = auditlog.ErrUnsupported

// Defaults of Options.
const (
	DefaultMaxEntries = 4096
	DefaultRcvBuf     = 8 << 20
	// pidCacheSize bounds the identity cache; it is emptied when full.
	pidCacheSize = 4096
	// pidCacheTTL is how long a pid's identity is trusted without
	// reading /proc again: a pid reused within it by the same executable
	// would be misnamed, a flood costs one /proc read per TTL.
	pidCacheTTL = time.Second
)

// ProfileLookup names the profile that decided a workload's calls
// (discover.PodWatcher implements it for pods).
type ProfileLookup interface {
	Profile(id report.Identity) string
}

// Options configures Monitor.
type Options struct {
	// Duration bounds the monitoring; 0 runs until ctx is done.
	Duration time.Duration
	// Filter selects the workloads to report (its Keys are not used).
	Filter discover.Filter
	// Resolver names workloads; the zero value if nil.
	Resolver *discover.IdentityResolver
	// Pods completes identities of containers in pods.
	Pods discover.PodLookup
	// Profiles names the profile of a workload; when nil and Pods is a
	// ProfileLookup, Pods.
	Profiles ProfileLookup
	// MaxEntries bounds the distinct entries kept (DefaultMaxEntries if 0).
	MaxEntries int
	// RcvBuf is the socket's receive buffer in bytes (DefaultRcvBuf if 0).
	RcvBuf int
	// ProcRoot is where /proc is (tests); "/proc" if "".
	ProcRoot string
	// Interval and Update: when Update is set it gets the report so far
	// every Interval (1s if 0), for --follow.
	Interval time.Duration
	Update   func(*violation.Report)
	// ExitErrors, when set, also counts the EPERM refusals seccomp makes
	// without logging them (SCMP_ACT_ERRNO under runc, which refuses
	// SECCOMP_FILTER_FLAG_LOG): an eBPF program on sys_exit, attached
	// only then, counts an EPERM return of a call in the refused set of a
	// cgroup this source lists. Off (nil) by default: it sits on every
	// system call of the node (BENCHMARKS.md, "exit-errors").
	ExitErrors WatchSource
	// Reset makes every Update get only what was counted since the
	// previous one (entries and lost counters start again after it): a
	// consumer that runs for weeks (the agent) keeps its memory bounded
	// and its interval counts without subtracting. The exit-errors counts
	// (ExitErrors) are the kernel's, cumulative: the monitor subtracts
	// what it reported before the reset.
	Reset bool
	// AttributeExited loads the Exited eBPF program (bpf/c/exited.c, on
	// sched_process_exit: once per thread exit, nothing on the system
	// call path), which keeps where each process under seccomp
	// was when it exited. Without it a record whose process exited before
	// the monitor read it (a command a shell forked, a process a Kill
	// action ended) is named only by its executable and counted as
	// unattributed. Needs CAP_BPF and CAP_PERFMON; a system without them
	// is an error wrapping ErrUnsupported.
	AttributeExited bool
	// Ready, when set, is called once the socket is subscribed (and the
	// eBPF programs attached): records from then on are seen.
	Ready  func()
	Logger *slog.Logger
}

// monitor is one monitoring: the entries, the identity cache and the
// counters, guarded by mu (the reader adds, Update and the end read).
type monitor struct {
	opts    Options
	hostNS  uint32
	start   time.Time
	mu      sync.Mutex
	entries map[entryKey]*violation.Violation
	pids    map[int]cachedPID
	lost    violation.Lost
	// gone is the Exited program, nil without Options.AttributeExited;
	// pending are the records that wait for it (retryPending), kick wakes
	// wait's retries when one is added.
	gone    *exited
	pending []pendingRecord
	kick    chan struct{}
	// ex, exits and exitLost: the exit-errors program and what it
	// counted at its last read (absolute counts, replaced each time).
	ex       *exitErrors
	exits    []counted
	exitLost uint64
	// exitBase and exitLostBase are the kernel's counts at the last
	// reset: with Options.Reset a report gets only what is new since.
	exitBase     map[entryKey]uint64
	exitLostBase uint64
}

type entryKey struct {
	id, abi, action string
	nr              int
}

type cachedPID struct {
	id   report.Identity
	exe  string
	at   time.Time
	keep bool // passes the filter
}

// Monitor reads seccomp audit records until the duration passes or ctx is
// done, and returns what the filtered workloads had refused or logged. A
// system that cannot deliver the records is an error wrapping
// ErrUnsupported.
func Monitor(ctx context.Context, opts Options) (*violation.Report, error) {
	opts = opts.withDefaults()
	st0, err := auditlog.ReadStatus()
	if err != nil {
		return nil, fmt.Errorf("%w: probe audit status (AUDIT_GET, needs CAP_AUDIT_CONTROL): %w", ErrUnsupported, err)
	}
	sock, err := auditlog.Open(opts.RcvBuf)
	if err != nil {
		return nil, err
	}
	defer sock.Close()
	m := &monitor{opts: opts, start: time.Now(), entries: map[entryKey]*violation.Violation{}, pids: map[int]cachedPID{},
		kick: make(chan struct{}, 1)}
	m.hostNS, _ = discover.MountNSOf(filepath.Join(opts.ProcRoot, "self"))
	if opts.ExitErrors != nil {
		if m.ex, err = openExitErrors(opts.ExitErrors, opts.MaxEntries); err != nil {
			return nil, err
		}
		defer m.ex.Close()
		if err := m.ex.sync(m.nameCgroup); err != nil {
			return nil, err
		}
	}
	if opts.AttributeExited {
		if m.gone, err = openExited(DefaultExitedEntries); err != nil {
			return nil, err
		}
		defer m.gone.Close()
	}
	if opts.Ready != nil {
		opts.Ready()
	}
	readCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.readLoop(readCtx, sock) }()
	err = m.wait(ctx, done)
	stop()
	if rerr := <-done; err == nil && rerr != nil && !errors.Is(rerr, context.Canceled) {
		err = rerr
	}
	if err != nil {
		return nil, fmt.Errorf("violations: %w", err)
	}
	m.retryPending(time.Now(), true)
	m.pollExits()
	if st1, err := auditlog.ReadStatus(); err == nil && st1.Lost >= st0.Lost {
		m.mu.Lock()
		m.lost.Kernel = uint64(st1.Lost - st0.Lost)
		m.mu.Unlock()
	}
	return m.report(), nil
}

func (o Options) withDefaults() Options {
	if o.Resolver == nil {
		o.Resolver = &discover.IdentityResolver{}
	}
	if o.Profiles == nil {
		o.Profiles, _ = o.Pods.(ProfileLookup)
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.RcvBuf <= 0 {
		o.RcvBuf = DefaultRcvBuf
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// wait runs until the duration passes, ctx ends or the reader fails,
// handing the report so far to Update at every interval.
func (m *monitor) wait(ctx context.Context, done <-chan error) error {
	var deadline <-chan time.Time
	if m.opts.Duration > 0 {
		t := time.NewTimer(m.opts.Duration)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(m.opts.Interval)
	defer tick.Stop()
	retry := time.NewTimer(pendingRetry)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-m.kick:
			retry.Reset(pendingRetry)
		case now := <-retry.C:
			if m.retryPending(now, false) {
				retry.Reset(pendingRetry)
			}
		case <-ctx.Done():
			return nil
		case <-deadline:
			return nil
		case err := <-done:
			return fmt.Errorf("audit reader stopped: %w", err)
		case <-tick.C:
			m.pollExits()
			if m.opts.Update != nil {
				m.opts.Update(m.take(m.opts.Reset))
			}
		}
	}
}

// readLoop reads the socket until ctx ends; an overflow is counted, not
// fatal: the records after it still count.
func (m *monitor) readLoop(ctx context.Context, sock *auditlog.Socket) error {
	for ctx.Err() == nil {
		err := sock.Read(func(typ uint16, payload []byte) {
			if typ == auditlog.TypeSeccomp {
				m.add(string(payload), time.Now())
			}
		})
		if errors.Is(err, auditlog.ErrOverflow) {
			m.mu.Lock()
			m.lost.Audit++
			m.mu.Unlock()
			continue
		}
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// add counts one record's text.
func (m *monitor) add(text string, now time.Time) {
	rec, err := auditlog.ParseRecord(text)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.lost.Unparsed++
		m.opts.Logger.Debug("violations: record not read", "err", err)
		return
	}
	m.addRecord(rec, now)
}

// addRecord counts a parsed record under its workload's entry, or as
// overflow when the entries are at their bound. A record whose process is
// exiting but not yet kept by the Exited program waits in pending (see
// identity). The caller holds mu.
func (m *monitor) addRecord(rec auditlog.Record, now time.Time) {
	action, ok := rec.Action()
	if !ok {
		return
	}
	c, named := m.identity(rec, now, false)
	if !named {
		m.postpone(rec, now)
		return
	}
	m.count(rec, action, c)
}

// count adds the record under its workload's entry. The caller holds mu.
func (m *monitor) count(rec auditlog.Record, action string, c cachedPID) {
	if !c.keep {
		return
	}
	k := entryKey{id: c.id.Key(), abi: rec.ABI, action: action, nr: rec.Number}
	if e := m.entries[k]; e != nil {
		e.Count++
		e.FirstSeen = minTime(e.FirstSeen, rec.Time)
		e.LastSeen = maxTime(e.LastSeen, rec.Time)
		return
	}
	if len(m.entries) >= m.opts.MaxEntries {
		m.lost.Overflow++
		return
	}
	a, _ := report.ArchOf(rec.ABI)
	v := &violation.Violation{Identity: c.id, Syscall: a.Table().SyscallNumbers[rec.Number], Number: rec.Number,
		ABI: rec.ABI, Action: action, Count: 1, FirstSeen: rec.Time, LastSeen: rec.Time}
	if m.opts.Profiles != nil {
		v.Profile = m.opts.Profiles.Profile(c.id)
	}
	m.entries[k] = v
}

// identity names the record's process, from the cache while it is fresh
// and the executable matches, else from where the Exited program saw the
// process exit, else from /proc (as discover names a new workload). The
// kernel's audit thread delivers records a moment after the call, so the
// process has often exited by then: a command a shell forked is reaped at
// once, a process a Kill action ended is gone. An exit kept by the kernel
// at or after the record's time is that process's, whatever /proc now
// holds under its pid (a zombie, or a new process with the reused pid).
//
// A process that is exiting (PF_EXITING) when its record is read may not
// have reached the exit tracepoint yet: unless final, identity then
// reports false, and the record waits (postpone) until the kernel has kept
// the exit. When final, or without the Exited program
// (Options.AttributeExited off), a pid gone from /proc keeps the identity
// it had, and a process gone before it was named is named by its
// executable and counted as unattributed. The caller holds mu.
func (m *monitor) identity(rec auditlog.Record, now time.Time, final bool) (cachedPID, bool) {
	old, cached := m.pids[rec.PID]
	if cached && old.exe == rec.Exe && now.Sub(old.at) < pidCacheTTL {
		return old, true
	}
	if m.gone != nil {
		if p, ok := m.gone.lookup(rec.PID, rec.Time); ok {
			id := m.name(p.cgroup, rec.Exe, p.mntns != 0 && p.mntns != m.hostNS)
			return m.remember(rec, id, now), true
		}
	}
	dir := filepath.Join(m.opts.ProcRoot, strconv.Itoa(rec.PID))
	cg, err := discover.ProcCgroup(dir)
	if err == nil && zombie(dir) {
		// An exited process not yet reaped has left its cgroup: it reads
		// as the root's, which names no workload.
		err = errors.New("zombie")
	}
	switch {
	case err != nil && m.gone != nil && !final:
		return cachedPID{}, false
	case err != nil && cached && old.exe == rec.Exe:
		old.at = now
		m.pids[rec.PID] = old
		return old, true
	case err != nil:
		m.lost.Unattributed++
		return m.remember(rec, report.Identity{Kind: report.KindProcess, Exe: rec.Exe}, now), true
	}
	ns, _ := discover.MountNSOf(dir)
	return m.remember(rec, m.name(cg, rec.Exe, ns != 0 && ns != m.hostNS), now), true
}

// Pending records: those of processes still exiting when read.
const (
	// maxPending bounds them; a record past it is named at once (final).
	maxPending = 1024
	// pendingRetry is how often they are looked up again, pendingWait how
	// long a record waits at most: the exit tracepoint follows the call
	// by microseconds (do_exit's first steps), unless the task is stopped
	// or dumping core.
	pendingRetry = 10 * time.Millisecond
	pendingWait  = time.Second
)

type pendingRecord struct {
	rec auditlog.Record
	at  time.Time // when it was read
}

// postpone keeps the record until its process's exit is kept, and wakes the
// retries (wait). The caller holds mu.
func (m *monitor) postpone(rec auditlog.Record, now time.Time) {
	if len(m.pending) >= maxPending {
		action, _ := rec.Action()
		c, _ := m.identity(rec, now, true)
		m.count(rec, action, c)
		return
	}
	m.pending = append(m.pending, pendingRecord{rec: rec, at: now})
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// retryPending names the pending records whose exit is kept by now, and
// those that waited pendingWait as they are (final). It reports whether
// any remain. all names every one (the end of the monitoring).
func (m *monitor) retryPending(now time.Time, all bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	left := m.pending[:0]
	for _, p := range m.pending {
		action, _ := p.rec.Action()
		c, named := m.identity(p.rec, now, all || now.Sub(p.at) >= pendingWait)
		if !named {
			left = append(left, p)
			continue
		}
		m.count(p.rec, action, c)
	}
	clear(m.pending[len(left):])
	m.pending = left
	return len(left) > 0
}

// name is the workload of a process in the cgroup, as discover names it.
func (m *monitor) name(cgroup, exe string, ownNS bool) report.Identity {
	id := m.opts.Resolver.FromCgroup(cgroup, exe, ownNS)
	if m.opts.Pods != nil && (id.Kind == report.KindPod || id.Kind == report.KindContainer) {
		m.opts.Pods.Complete(&id)
	}
	if id.Kind == report.KindContainer || id.Kind == report.KindPod || id.Kind == report.KindSystemd {
		id.Exe = "" // a workload runs many executables; one entry each call
	}
	return id
}

// remember caches the identity of the record's pid. The caller holds mu.
func (m *monitor) remember(rec auditlog.Record, id report.Identity, now time.Time) cachedPID {
	c := cachedPID{id: id, exe: rec.Exe, at: now, keep: m.opts.Filter.Match(0, id)}
	if len(m.pids) >= pidCacheSize {
		clear(m.pids)
	}
	m.pids[rec.PID] = c
	return c
}

// zombie reports whether the process of the /proc directory dir has
// exited or is exiting: state Z or X, or PF_EXITING in its flags (a
// killed process has left its cgroup before it is a zombie).
func zombie(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return true
	}
	// After comm: state, ppid, pgrp, session, tty_nr, tpgid, flags.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 7 || f[0] == "Z" || f[0] == "X" {
		return true
	}
	flags, err := strconv.ParseUint(f[6], 10, 64)
	return err != nil || flags&pfExiting != 0
}

// pfExiting is the kernel's PF_EXITING task flag.
const pfExiting = 0x4

// report is the report of what was counted so far.
func (m *monitor) report() *violation.Report { return m.take(false) }

// take is the report of what was counted so far; with reset the entries
// and lost counters start again at once, under the same lock, so that no
// record falls between two reports.
func (m *monitor) take(reset bool) *violation.Report {
	r := violation.New()
	r.Source = "audit"
	if m.ex != nil {
		r.Source = "audit,exit-errors"
	}
	r.Node, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		r.Kernel = unix.ByteSliceToString(u.Release[:])
		r.Arch = unix.ByteSliceToString(u.Machine[:])
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	r.Start, r.End = m.start.UTC(), now.UTC()
	for _, e := range m.entries {
		r.Violations = append(r.Violations, *e) // distinct keys: no merge
	}
	r.Lost = m.lost
	m.mergeExits(r, reset)
	if reset {
		m.entries = map[entryKey]*violation.Violation{}
		m.lost = violation.Lost{}
		m.start = now
	}
	r.Sort()
	return r
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
