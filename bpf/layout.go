package bpf

// Layout constants mirrored from c/recorder.h. TestLayout checks them against
// the compiled object.
const (
	// NrBits is the number of syscall numbers a set holds per ABI: numbers
	// 0..NrBits-1 are recorded, larger ones are counted as LostOutOfRange.
	NrBits = 1024
	// NrWords is the number of 64-bit words of one ABI's bitset.
	NrWords = NrBits / 64
)

// ABI indexes: the first index of RecorderSyscallSet.Bits and the value of
// RecorderNewKeyEvent.Abi.
const (
	// ABINative is the kernel's own ABI (x86_64, aarch64).
	ABINative = 0
	// ABICompat is the 32-bit compat ABI (i386 on x86_64, AArch32 on aarch64).
	ABICompat = 1
	// ABIX32 is x86_64's x32 ABI (syscall numbers with bit 30 set; the bit is
	// stripped before recording).
	ABIX32 = 2
	// ABICount is the number of ABIs in a set.
	ABICount = 3
)

// Key layout: a map key is a uint64 with the kind in the top two bits.
const (
	// KeyKindShift is the position of the key kind.
	KeyKindShift = 62
	// KeyMountNS marks a key whose id is the unique id of a mount namespace
	// (what ioctl(NS_GET_MNTNS_ID) returns; see c/recorder.h), not its
	// inode, which the kernel reuses.
	KeyMountNS uint64 = 1 << KeyKindShift
	// KeyCgroup marks a key whose id is a cgroup (v2) id, used for tasks in
	// the host mount namespace.
	KeyCgroup uint64 = 2 << KeyKindShift
	// KeyIDMask extracts the id from a key.
	KeyIDMask uint64 = 1<<KeyKindShift - 1
)

// Indexes of the per-CPU counters in the "lost" map.
const (
	// LostMapFull counts syscalls not recorded because their new key found
	// the set map full.
	LostMapFull = 0
	// LostRingBufFull counts new-key events dropped because the ring buffer
	// was full (the key's syscalls are still recorded).
	LostRingBufFull = 1
	// LostOutOfRange counts syscalls whose number was negative or >= NrBits.
	LostOutOfRange = 2
	// LostStaleMemo counts task memos found stale on a cache miss: calls
	// before it may have been recorded under the task's previous key. Never
	// expected; the memo is then dropped everywhere.
	LostStaleMemo = 3
	// LostCount is the number of counter slots in the map.
	LostCount = 4
)

// Flags of RecorderNewKeyEvent.Flags.
const (
	// EventExeTruncated: the in-kernel executable path is incomplete.
	EventExeTruncated = 1 << 0
	// EventCgroupTruncated: the in-kernel cgroup path is incomplete.
	EventCgroupTruncated = 1 << 1
)

// MemoWays is the number of tasks in a CPU's task memo
// (RecorderCpuCache.Memo).
const MemoWays = 2

// Values of RecorderCpuCache.CurrentSlot other than an address: where the
// program reads the current task on that CPU.
const (
	// CurrentUnknown: the program has not run on the CPU yet.
	CurrentUnknown = 0
	// CurrentHelper: the program calls bpf_get_current_task_btf() (no
	// usable address of current_task, or not tp_btf on x86-64).
	CurrentHelper = 1
)

// Argument recording (RecorderArgSet, the field Args of RecorderSyscallSet):
// the native ABI's clone, unshare, setns, socket, socketpair, personality and
// prctl fold their arguments that matter into it. Mirrors of c/recorder.h.
const (
	// ArgValues is the number of value slots of RecorderArgSet.Personas and
	// PrctlLarge. A slot holds 1<<32 | value, 0 when empty.
	ArgValues = 4
	// ArgSlotUsed marks a used value slot.
	ArgSlotUsed = 1 << 32
	// ArgPersonaOverflow (in RecorderArgSet.Overflow): more distinct
	// personas came than ArgValues.
	ArgPersonaOverflow = 1 << 0
	// ArgPrctlOverflow: more distinct prctl options >= PrctlBits came than
	// ArgValues.
	ArgPrctlOverflow = 1 << 1
	// SetnsAny is the bit of RecorderArgSet.SetnsNs for setns(fd, 0).
	SetnsAny = 1 << 0
	// FamilyOther is the bit of a socket family mask for families >= 63.
	FamilyOther = 63
	// PrctlBits: prctl options below it are bits of PrctlOptions.
	PrctlBits = 128
)
