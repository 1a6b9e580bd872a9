package discover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/bpf"
)

// Hook names the kernel hook the recorder attaches to and, on tp_btf, which
// of the program's two shortcuts it runs with. RecorderOptions.Hook asks
// for HookAuto, HookTpBtf or HookRawTp; Recorder.Hook says what loaded, and
// its String is the report's "hook" field:
//
//   - "tp_btf": tp_btf/sys_enter with both shortcuts: the direct read of the
//     current task (x86-64, current.go; other architectures' JITs inline the
//     helper, so they have nothing to give up) and the per-CPU task memo
//     (task_key in recorder.c, with task_free attached). The cheapest.
//   - "tp_btf+helper": the current task from the helper
//     bpf_get_current_task_btf() on every call (x86-64 kernels where the
//     address of current_task is not found).
//   - "tp_btf-nomemo": without the task memo (tp_btf/sched_process_free does
//     not attach): the key read through task → nsproxy → mount namespace on
//     every call.
//   - "tp_btf+helper-nomemo": without both.
//   - "raw_tp": raw_tp/sys_enter with CO-RE probe reads, for kernels without
//     tp_btf (before 5.5, or without kernel BTF).
//
// Which shortcuts a kernel allows is found by named probes, once per process
// (features.go). With the direct read, the program still checks the address
// on each CPU against the helper and asks the helper where it does not hold
// the current task.
type Hook int

const (
	// HookAuto attaches to tp_btf/sys_enter and falls back to
	// raw_tp/sys_enter when that fails. An option only.
	HookAuto Hook = iota
	// HookTpBtf attaches to the BTF-enabled tracepoint tp_btf/sys_enter
	// (kernel 5.5+, direct reads of kernel memory; the cheaper one). As an
	// option it takes the shortcuts this kernel allows; as a result, it has
	// both.
	HookTpBtf
	// HookRawTp attaches to the raw tracepoint raw_tp/sys_enter (CO-RE probe
	// reads).
	HookRawTp
	// HookTpBtfHelper is tp_btf reading the current task through the helper.
	HookTpBtfHelper
	// HookTpBtfNoMemo is tp_btf without the task memo.
	HookTpBtfNoMemo
	// HookTpBtfHelperNoMemo is tp_btf without either shortcut.
	HookTpBtfHelperNoMemo
)

// String returns "auto", or the name the Hook type's documentation gives.
func (h Hook) String() string {
	switch h {
	case HookAuto:
		return "auto"
	case HookTpBtf:
		return "tp_btf"
	case HookRawTp:
		return "raw_tp"
	case HookTpBtfHelper:
		return "tp_btf+helper"
	case HookTpBtfNoMemo:
		return "tp_btf-nomemo"
	case HookTpBtfHelperNoMemo:
		return "tp_btf+helper-nomemo"
	}
	return fmt.Sprintf("hook(%d)", int(h))
}

// tpBtfHook names the tp_btf variant with the given shortcuts.
func tpBtfHook(helper, memo bool) Hook {
	switch {
	case helper && !memo:
		return HookTpBtfHelperNoMemo
	case helper:
		return HookTpBtfHelper
	case !memo:
		return HookTpBtfNoMemo
	}
	return HookTpBtf
}

// Defaults of RecorderOptions.
const (
	// DefaultMaxKeys is the default RecorderOptions.MaxKeys.
	DefaultMaxKeys = 8192
	// DefaultRingBufferSize is the default RecorderOptions.RingBufferSize:
	// room for about 280 new-key events not yet read.
	DefaultRingBufferSize = 1 << 20
)

// RecorderOptions configures NewRecorder. The zero value records every
// mount namespace but the host's, with the defaults below.
type RecorderOptions struct {
	// MaxKeys is the number of workloads (keys) the kernel map holds;
	// DefaultMaxKeys if 0. Syscalls of keys beyond it are counted as
	// LostCounters.MapFull. Each key costs about 450 bytes of kernel memory,
	// allocated up front.
	MaxKeys int
	// RingBufferSize is the size in bytes of the new-key event ring buffer, a
	// power of two and a multiple of the page size; DefaultRingBufferSize if 0.
	RingBufferSize int
	// IncludeHost also records tasks in the host mount namespace, keyed by
	// their cgroup (KeyCgroup) so that systemd services are told apart.
	IncludeHost bool
	// IncludeRuntime also records the calls a container runtime makes while
	// it sets up a container (runc's init, crun's child, until they execute
	// the workload), and systemd's child for a service until it executes the
	// service. By default they are left out: they are the runtime's (or
	// systemd's), not the workload's; the merger adds the runtime's start-up
	// set, and systemd allows what it needs after installing the filter.
	IncludeRuntime bool
	// HostMountNS is the inode of the host mount namespace; if 0, that of
	// /proc/1/ns/mnt under ProcRoot, or of this process when init's is not
	// readable.
	HostMountNS uint32
	// Hook is the kernel hook; HookAuto if unset.
	Hook Hook
	// ProcRoot is where the host's /proc is mounted; "/proc" if empty.
	ProcRoot string
	// currentTask, for tests, says where the program reads the current task
	// (0 or an error: through the helper); nil takes directCurrentTask.
	currentTask func() (uint64, error)
	// memo, for tests and benchmarks: memoOn (the zero value) keeps the
	// per-CPU task memo of the tp_btf program, memoOff loads it without,
	// memoNoFree keeps it but does not attach task_free (a broken recorder,
	// for a negative control).
	memo memoMode
	// Logger receives the recorder's few log lines; slog.Default() if nil.
	Logger *slog.Logger
}

// memoMode says how the tp_btf program keeps its task memo (tests only).
type memoMode int

const (
	memoOn memoMode = iota
	memoOff
	memoNoFree
)

// Recorder records, in the kernel, which syscalls each workload makes. It is
// attached from NewRecorder until Close; nothing stays attached after Close.
// Its methods are safe for concurrent use, except that only one Run may be
// active at a time.
type Recorder struct {
	sets, lost *ebpf.Map
	events     *ebpf.Map
	cache, bss *ebpf.Map
	prog       *ebpf.Program
	free       *ebpf.Program // task_free (tp_btf only)
	gen        *ebpf.Variable
	taskGen    *ebpf.Variable // task memo generation (tp_btf only)
	link       link.Link
	freeLink   link.Link
	reader     *ringbuf.Reader
	hook       Hook
	maxKeys    int
	hostMntNS  uint32
	procRoot   string
	log        *slog.Logger

	runMu     sync.Mutex // held by the one active Run
	deleteMu  sync.Mutex // serializes Delete's generation bumps
	closeOnce sync.Once
	closeErr  error // written once, inside closeOnce
}

// NewRecorder loads the recorder into the kernel and attaches it. Call Run
// promptly afterwards: new-key events wait in the ring buffer until read, and
// /proc is read when they are. The caller needs CAP_BPF and CAP_PERFMON (or
// root).
func NewRecorder(opts RecorderOptions) (*Recorder, error) {
	if opts.MaxKeys == 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	if opts.RingBufferSize == 0 {
		opts.RingBufferSize = DefaultRingBufferSize
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Hook != HookAuto && opts.Hook != HookTpBtf && opts.Hook != HookRawTp {
		return nil, fmt.Errorf("recorder: RecorderOptions.Hook is %s: want auto, tp_btf or raw_tp", opts.Hook)
	}
	if opts.MaxKeys < 1 || opts.MaxKeys > MaxKeysLimit {
		return nil, fmt.Errorf("recorder: MaxKeys %d out of range 1..%d", opts.MaxKeys, MaxKeysLimit)
	}
	if rb := opts.RingBufferSize; rb < os.Getpagesize() || rb%os.Getpagesize() != 0 || bits.OnesCount(uint(rb)) != 1 || rb > 1<<30 {
		return nil, fmt.Errorf("recorder: RingBufferSize %d is not a power of two multiple of the page size (%d)", rb, os.Getpagesize())
	}
	if opts.HostMountNS == 0 {
		ino, err := hostMountNS(opts.ProcRoot, opts.Logger)
		if err != nil {
			return nil, fmt.Errorf("recorder: host mount namespace: %w", err)
		}
		opts.HostMountNS = ino
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, unsupported("recorder", err)
	}

	r := &Recorder{hostMntNS: opts.HostMountNS, maxKeys: opts.MaxKeys, procRoot: opts.ProcRoot, log: opts.Logger}
	givenUp, err := r.attachHook(opts)
	if err != nil {
		return nil, unsupported("recorder", err)
	}
	r.reader, err = ringbuf.NewReader(r.events)
	if err != nil {
		r.closeKernel()
		return nil, unsupported("recorder: ring buffer reader", err)
	}
	// The one line that says which path this recorder took, and why it
	// is not the cheapest when it is not.
	level := slog.LevelDebug
	if givenUp != nil {
		level = slog.LevelInfo
	}
	r.log.Log(context.Background(), level, "recorder: attached", "hook", r.hook, "given_up", givenUp,
		"max_keys", opts.MaxKeys, "include_host", opts.IncludeHost, "host_mntns", opts.HostMountNS)
	return r, nil
}

// unsupported wraps an error of loading the recorder into the kernel: it
// says this system cannot record (ErrUnsupported), once.
func unsupported(what string, err error) error {
	if errors.Is(err, ErrUnsupported) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return &unsupportedError{what, err}
}

// attachHook attaches the hook opts asks for: with HookAuto tp_btf, and
// raw_tp when tp_btf does not load here. It returns why the hook is not
// the cheapest one (nil when it is).
func (r *Recorder) attachHook(opts RecorderOptions) (givenUp, err error) {
	if opts.Hook != HookAuto {
		return r.attach(opts, opts.Hook)
	}
	givenUp, err = r.attach(opts, HookTpBtf)
	if err == nil {
		return givenUp, nil
	}
	if _, rawErr := r.attach(opts, HookRawTp); rawErr != nil {
		return nil, errors.Join(err, rawErr)
	}
	return err, nil
}

// hostMountNS returns the inode of init's mount namespace or, when init's is
// not readable (a sandbox may deny it even to root), this process's own.
func hostMountNS(procRoot string, log *slog.Logger) (uint32, error) {
	ino, err := MountNSOf(filepath.Join(procRoot, "1"))
	if err == nil {
		return ino, nil
	}
	self, serr := MountNSOf(filepath.Join(procRoot, "self"))
	if serr != nil {
		return 0, fmt.Errorf("neither init's nor this process's is readable: %w", errors.Join(err, serr))
	}
	log.Warn("recorder: init's mount namespace is not readable; treating this process's as the host's",
		"error", err, "mntns", self)
	return self, nil
}

// attach loads the program for hook (HookTpBtf or HookRawTp) with the maps
// and attaches it. It returns why the program runs without some of its
// shortcuts (tp_btf only; nil when it has them all).
func (r *Recorder) attach(opts RecorderOptions, hook Hook) (givenUp, err error) {
	spec, err := recorderSpec(opts)
	if err != nil {
		return nil, err
	}
	if hook == HookTpBtf {
		givenUp, err = r.attachTpBtf(spec, opts)
	} else {
		err = r.attachRawTp(spec)
	}
	if err != nil {
		r.closeKernel()
		return nil, err
	}
	return givenUp, nil
}

// recorderSpec is the recorder's object with the options' sizes and
// constants set.
func recorderSpec(opts RecorderOptions) (*ebpf.CollectionSpec, error) {
	spec, err := bpf.LoadRecorder()
	if err != nil {
		return nil, fmt.Errorf("load object: %w", err)
	}
	spec.Maps[bpf.RecorderMapSets].MaxEntries = uint32(opts.MaxKeys)
	spec.Maps[bpf.RecorderMapEvents].MaxEntries = uint32(opts.RingBufferSize)
	for _, v := range []struct {
		name  string
		value any
	}{
		{bpf.RecorderVarHostMntns, opts.HostMountNS},
		{bpf.RecorderVarIncludeHost, boolByte(opts.IncludeHost)},
		{bpf.RecorderVarIncludeRuntime, boolByte(opts.IncludeRuntime)},
	} {
		if err := spec.Variables[v.name].Set(v.value); err != nil {
			return nil, fmt.Errorf("set %s: %w", v.name, err)
		}
	}
	return spec, nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// attachRawTp loads the raw_tp program and attaches it.
func (r *Recorder) attachRawTp(spec *ebpf.CollectionSpec) error {
	var objs struct {
		bpf.RecorderMaps
		Prog *ebpf.Program  `ebpf:"sys_enter_raw"`
		Gen  *ebpf.Variable `ebpf:"generation"`
		BSS  *ebpf.Map      `ebpf:".bss"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return fmt.Errorf("load raw_tp program: %w", err)
	}
	r.sets, r.lost, r.events, r.cache, r.bss = objs.Sets, objs.Lost, objs.Events, objs.Cache, objs.BSS
	r.prog, r.gen = objs.Prog, objs.Gen
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_enter", Program: objs.Prog})
	if err != nil {
		return fmt.Errorf("attach raw_tp/sys_enter: %w", err)
	}
	r.link, r.hook = l, HookRawTp
	return nil
}

// tpBtfShortcuts decides, from the feature probes (and the test options),
// which shortcuts the tp_btf program takes: the address of current_task
// for the direct read (0: the helper) and the task memo. givenUp says why
// one is left out when the kernel lacks it.
func tpBtfShortcuts(opts RecorderOptions) (addr uint64, memo bool, givenUp error) {
	var errs []error
	find := opts.currentTask
	if find == nil {
		find = directCurrentTask
	}
	addr, err := find()
	if err != nil {
		addr = 0
		if runtime.GOARCH == "amd64" { // elsewhere the helper is the fast way
			errs = append(errs, err)
		}
	}
	switch opts.memo {
	case memoOff:
	case memoNoFree:
		memo = true // a broken recorder, for a negative control
	default:
		if err := haveTaskFree(); err != nil {
			errs = append(errs, err)
		} else {
			memo = true
		}
	}
	return addr, memo, errors.Join(errs...)
}

// tpBtfObjects are the tp_btf program and what it uses.
type tpBtfObjects struct {
	bpf.RecorderMaps
	Prog    *ebpf.Program  `ebpf:"sys_enter_btf"`
	Gen     *ebpf.Variable `ebpf:"generation"`
	TaskGen *ebpf.Variable `ebpf:"task_generation"`
	BSS     *ebpf.Map      `ebpf:".bss"`
}

// attachTpBtf loads the tp_btf program with the shortcuts this kernel
// allows (tpBtfShortcuts) and attaches it; task_free first, when the
// program keeps the task memo.
func (r *Recorder) attachTpBtf(spec *ebpf.CollectionSpec, opts RecorderOptions) (givenUp, err error) {
	if err := haveTpBtf(); err != nil {
		return nil, err
	}
	addr, memo, givenUp := tpBtfShortcuts(opts)
	if err := spec.Variables[bpf.RecorderVarCurrentTaskAddr].Set(addr); err != nil {
		return nil, fmt.Errorf("set current_task_addr: %w", err)
	}
	if err := spec.Variables[bpf.RecorderVarUseMemo].Set(memo); err != nil {
		return nil, fmt.Errorf("set use_memo: %w", err)
	}
	var objs struct {
		tpBtfObjects
		Free *ebpf.Program `ebpf:"task_free"`
	}
	// Without the memo task_free is not loaded at all.
	if memo {
		err = spec.LoadAndAssign(&objs, nil)
	} else {
		err = spec.LoadAndAssign(&objs.tpBtfObjects, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("load tp_btf program: %w", err)
	}
	r.sets, r.lost, r.events, r.cache, r.bss = objs.Sets, objs.Lost, objs.Events, objs.Cache, objs.BSS
	r.prog, r.free, r.gen, r.taskGen = objs.Prog, objs.Free, objs.Gen, objs.TaskGen
	if memo && opts.memo != memoNoFree {
		// A memo is valid only while task_free runs: attached first,
		// detached last (closeKernel).
		r.freeLink, err = link.AttachTracing(link.TracingOptions{Program: r.free, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			return nil, fmt.Errorf("attach tp_btf/sched_process_free: %w", err)
		}
	}
	r.link, err = link.AttachTracing(link.TracingOptions{Program: r.prog, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		return nil, fmt.Errorf("attach tp_btf/sys_enter: %w", err)
	}
	r.hook = tpBtfHook(addr == 0 && runtime.GOARCH == "amd64", memo)
	return givenUp, nil
}

// closeKernel detaches the program and releases the kernel objects.
func (r *Recorder) closeKernel() error {
	var errs []error
	// The syscall program before task_free: while it runs, its memos must
	// be kept true.
	for _, l := range []link.Link{r.link, r.freeLink} {
		if l != nil {
			errs = append(errs, l.Close())
		}
	}
	for _, p := range []*ebpf.Program{r.prog, r.free} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	for _, m := range []*ebpf.Map{r.sets, r.lost, r.events, r.cache, r.bss} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	r.link, r.freeLink, r.prog, r.free, r.sets, r.lost, r.events, r.cache, r.bss, r.gen, r.taskGen = nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil
	return errors.Join(errs...)
}

// Hook returns the hook the recorder is attached to and, on tp_btf, the
// variant that loaded (see Hook): never HookAuto.
func (r *Recorder) Hook() Hook {
	return r.hook
}

// currentSlots returns, per CPU, where the program reads the current task:
// the address of that CPU's current_task, or bpf.CurrentUnknown (the program
// has not run there yet) or bpf.CurrentHelper (it asks the helper).
func (r *Recorder) currentSlots() ([]uint64, error) {
	var vals []bpf.RecorderCpuCache
	if err := r.cache.Lookup(uint32(0), &vals); err != nil {
		return nil, fmt.Errorf("recorder: read cache: %w", err)
	}
	slots := make([]uint64, len(vals))
	for i, v := range vals {
		slots[i] = v.CurrentSlot
	}
	return slots, nil
}

// HostMountNS returns the inode of the mount namespace treated as the host's.
func (r *Recorder) HostMountNS() uint32 {
	return r.hostMntNS
}

// Close detaches the recorder and frees its kernel memory; a running Run
// returns nil. The recorded sets are gone after Close: Snapshot first.
func (r *Recorder) Close() error {
	r.closeOnce.Do(func() {
		var errs []error
		// Detach first, so that nothing runs on sys_enter from here on.
		if r.link != nil {
			errs = append(errs, r.link.Close())
			r.link = nil
		}
		if r.reader != nil {
			errs = append(errs, r.reader.Close())
		}
		errs = append(errs, r.closeKernel())
		if err := errors.Join(errs...); err != nil {
			r.closeErr = fmt.Errorf("recorder: close: %w", err)
		}
	})
	return r.closeErr
}

// Run reads new-key events and calls fn for each, in the order the kernel
// sent them, after reading /proc/<pid> for it. When ctx is done it delivers
// the events already in the ring buffer and returns ctx.Err(); it returns nil
// when the Recorder is closed, and an error when another Run is active.
func (r *Recorder) Run(ctx context.Context, fn func(NewKey)) error {
	if !r.runMu.TryLock() {
		return errors.New("recorder: Run is already active")
	}
	defer r.runMu.Unlock()

	// Flush wakes a blocked read: the records already in the ring buffer
	// are still delivered, then the read returns ErrFlushed.
	stop := context.AfterFunc(ctx, func() { _ = r.reader.Flush() })
	defer stop()

	var rec ringbuf.Record
	for {
		if err := r.reader.ReadInto(&rec); err != nil {
			switch {
			case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
				return nil
			case errors.Is(err, ringbuf.ErrFlushed):
				if ctx.Err() != nil {
					return ctx.Err()
				}
				continue
			}
			return fmt.Errorf("recorder: read event: %w", err)
		}
		ev, err := decodeNewKey(rec.RawSample)
		if err != nil {
			r.log.Warn("recorder: bad event", "error", err)
			continue
		}
		readProc(r.procRoot, &ev)
		fn(ev)
	}
}

// SyscallSet is the set of syscalls one key made with one ABI.
type SyscallSet struct {
	// ABI is the convention the calls were made with.
	ABI ABI
	// Arch is the name of the ABI's syscall table on this machine
	// ("x86_64", "i386", "x32", "aarch64", "arm"), empty if there is none.
	Arch string
	// Numbers are the syscall numbers, ascending.
	Numbers []int
	// Names are the names the ABI's table gives Numbers, sorted.
	Names []string
	// Unknown are the Numbers the table has no name for, ascending.
	Unknown []int
	// Args are the recorded arguments of the calls that open doors, by
	// call name (report.ArgCalls): native ABI only, nil for the others.
	Args map[string]report.CallArgs
}

// KeySet is what one key recorded.
type KeySet struct {
	// Key is the workload.
	Key Key
	// MountNS is the inode of the key's mount namespace (the host's for
	// KeyCgroup keys); 0 for a key read in the instant after its insert.
	MountNS uint32
	// Sets has one entry per ABI that made at least one syscall, in ABI order.
	Sets []SyscallSet
}

// Set returns the key's set for abi, and false if that ABI made no syscall.
func (k KeySet) Set(abi ABI) (SyscallSet, bool) {
	for _, s := range k.Sets {
		if s.ABI == abi {
			return s, true
		}
	}
	return SyscallSet{}, false
}

// Snapshot returns what every key has recorded so far, sorted by key. It
// reads the kernel map without stopping the recording.
func (r *Recorder) Snapshot() ([]KeySet, error) {
	var (
		out []KeySet
		key uint64
		val bpf.RecorderSyscallSet
	)
	it := r.sets.Iterate()
	for it.Next(&key, &val) {
		out = append(out, keySetOf(Key(key), &val))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("recorder: snapshot: %w", err)
	}
	slices.SortFunc(out, func(a, b KeySet) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	return out, nil
}

// keySetOf turns a kernel set into names with each ABI's own table.
func keySetOf(key Key, val *bpf.RecorderSyscallSet) KeySet {
	ks := KeySet{Key: key, MountNS: val.Mntns}
	for abi := range bpf.ABICount {
		var set SyscallSet
		for w, word := range val.Bits[abi] {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &^= 1 << b
				set.Numbers = append(set.Numbers, w*64+b)
			}
		}
		if len(set.Numbers) == 0 {
			continue
		}
		set.ABI = ABI(abi)
		info := set.ABI.Arch()
		if info != nil {
			set.Arch = info.Name
		}
		for _, nr := range set.Numbers {
			if info != nil {
				if name, ok := info.SyscallNumbers[nr]; ok {
					set.Names = append(set.Names, name)
					continue
				}
			}
			set.Unknown = append(set.Unknown, nr)
		}
		slices.Sort(set.Names)
		if abi == bpf.ABINative {
			set.Args = argsOf(&val.Args, set.Names)
		}
		ks.Sets = append(ks.Sets, set)
	}
	return ks
}

// Delete forgets keys: their sets are dropped, and their next syscall starts
// a new set and sends a new NewKey event. Keys not present are ignored.
// Syscalls made while Delete runs may be counted in the old sets.
func (r *Recorder) Delete(keys ...Key) error {
	r.deleteMu.Lock()
	defer r.deleteMu.Unlock()
	// The kernel's per-CPU caches remember bits of the sets; a new
	// generation before and after the deletes makes every cache slot that
	// may have seen an old set invalid.
	if err := r.bumpGeneration(); err != nil {
		return fmt.Errorf("recorder: %w", err)
	}
	var errs []error
	for _, k := range keys {
		if err := r.sets.Delete(uint64(k)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("delete %s: %w", k, err))
		}
	}
	if err := r.bumpGeneration(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("recorder: %w", err)
	}
	return nil
}

// bumpGeneration makes every per-CPU cache slot filled so far stale.
func (r *Recorder) bumpGeneration() error {
	var gen uint64
	if err := r.gen.Get(&gen); err != nil {
		return fmt.Errorf("read generation: %w", err)
	}
	if err := r.gen.Set(gen + 1); err != nil {
		return fmt.Errorf("set generation: %w", err)
	}
	return nil
}

// LostCounters counts, since the recorder was loaded, what it could not
// record. Any non-zero field means a recording is incomplete.
type LostCounters struct {
	// MapFull counts syscalls not recorded because their key was new and the
	// map already held MaxKeys keys.
	MapFull uint64
	// RingBufFull counts NewKey events dropped because the ring buffer was
	// full; the syscalls of those keys are still recorded.
	RingBufFull uint64
	// OutOfRange counts syscalls whose number was negative or beyond the
	// sets (bpf.NrBits), e.g. ARM private calls (0xf0000+).
	OutOfRange uint64
	// StaleMemo counts task memos the program found stale (never expected):
	// calls before it may have been recorded under the task's previous key.
	StaleMemo uint64
}

// Total returns the sum of the counters.
func (l LostCounters) Total() uint64 {
	return l.MapFull + l.RingBufFull + l.OutOfRange + l.StaleMemo
}

// Lost reads the kernel's loss counters, summed over all CPUs.
func (r *Recorder) Lost() (LostCounters, error) {
	var sums [bpf.LostCount]uint64
	var perCPU []uint64
	for i := range uint32(bpf.LostCount) {
		if err := r.lost.Lookup(i, &perCPU); err != nil {
			return LostCounters{}, fmt.Errorf("recorder: read lost counter %d: %w", i, err)
		}
		for _, n := range perCPU {
			sums[i] += n
		}
	}
	return LostCounters{
		MapFull:     sums[bpf.LostMapFull],
		RingBufFull: sums[bpf.LostRingBufFull],
		OutOfRange:  sums[bpf.LostOutOfRange],
		StaleMemo:   sums[bpf.LostStaleMemo],
	}, nil
}

// nsGetMntnsID is NS_GET_MNTNS_ID, _IOR(0xb7, 0x5, __u64) (Linux 6.10+).
const nsGetMntnsID = 0x8008b705

// MountNSID returns the unique id of the mount namespace of the process whose
// /proc directory is procDir: the id of its KeyMountNS key. It needs Linux
// 6.10 or later.
func MountNSID(procDir string) (uint64, error) {
	f, err := os.Open(filepath.Join(procDir, "ns", "mnt"))
	if err != nil {
		return 0, fmt.Errorf("mount namespace id: %w", err)
	}
	defer f.Close()
	var id uint64
	sc, err := f.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("mount namespace id of %s: %w", procDir, err)
	}
	var errno syscall.Errno
	if err := sc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, nsGetMntnsID, uintptr(unsafe.Pointer(&id)))
	}); err != nil {
		return 0, fmt.Errorf("mount namespace id of %s: %w", procDir, err)
	}
	if errno != 0 {
		return 0, fmt.Errorf("mount namespace id of %s: NS_GET_MNTNS_ID: %w", procDir, errno)
	}
	return id, nil
}

// MemoryUsage is the kernel memory of a Recorder's maps, as the kernel
// accounts it (bpftool's "memlock").
type MemoryUsage struct {
	// Sets, Events and Lost are the bytes of the set map (allocated up
	// front for MaxKeys keys), the ring buffer and the loss counters.
	Sets, Events, Lost uint64
	// MaxKeys is the capacity of the set map.
	MaxKeys int
}

// PerKey returns the bytes of the set map per key of capacity.
func (m MemoryUsage) PerKey() uint64 {
	if m.MaxKeys == 0 {
		return 0
	}
	return m.Sets / uint64(m.MaxKeys)
}

// Memory reads the kernel's accounting of the recorder's maps.
func (r *Recorder) Memory() (MemoryUsage, error) {
	u := MemoryUsage{MaxKeys: r.maxKeys}
	for _, m := range []struct {
		m   *ebpf.Map
		dst *uint64
	}{{r.sets, &u.Sets}, {r.events, &u.Events}, {r.lost, &u.Lost}} {
		info, err := m.m.Info()
		if err != nil {
			return MemoryUsage{}, fmt.Errorf("recorder: map info: %w", err)
		}
		*m.dst, _ = info.Memlock()
	}
	return u, nil
}

// MountNSOf returns the mount namespace inode of the process whose /proc
// directory is procDir (e.g. "/proc/1" or "/proc/self").
func MountNSOf(procDir string) (uint32, error) {
	fi, err := os.Stat(filepath.Join(procDir, "ns", "mnt"))
	if err != nil {
		return 0, fmt.Errorf("mount namespace: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("mount namespace of %s: no inode", procDir)
	}
	return uint32(st.Ino), nil
}
