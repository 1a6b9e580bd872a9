/* recorder.h: the layout shared by the kernel programs and user space.
 *
 * Every constant and struct here has a mirror in Go (package bpf, file
 * layout.go); TestLayout checks that the two agree with the compiled object.
 */
#ifndef KSCMP_RECORDER_H
#define KSCMP_RECORDER_H

/* Syscall numbers per ABI that fit in a set. x86_64 is near 470 and x32's
 * private numbers end near 548, so 1024 leaves room for years of new calls. */
#define KSCMP_NR_BITS 1024
#define KSCMP_NR_WORDS (KSCMP_NR_BITS / 64)

/* ABIs, the first index of syscall_set.bits. */
#define KSCMP_ABI_NATIVE 0 /* x86_64, aarch64 */
#define KSCMP_ABI_COMPAT 1 /* i386 on x86_64, arm (AArch32) on aarch64 */
#define KSCMP_ABI_X32 2    /* x32 on x86_64 (syscall number bit 30) */
#define KSCMP_ABI_COUNT 3

/* A key is a u64: the kind in the top two bits, the id below.
 * For a mount namespace the id is its unique id (ns_common.ns_id since 6.18,
 * mnt_namespace.seq before; a counter since boot, never reused), not its
 * inode: inodes of dead namespaces are handed out again at once, which would
 * merge one container's set into its predecessor's and hide its arrival.
 * Cgroup ids are kernfs ids: on 64-bit kernels the inode number, whose upper
 * half only counts wraps of a 32-bit allocator, never reused either. */
#define KSCMP_KEY_KIND_SHIFT 62
#define KSCMP_KEY_MNTNS (1ULL << KSCMP_KEY_KIND_SHIFT)
#define KSCMP_KEY_CGROUP (2ULL << KSCMP_KEY_KIND_SHIFT)
#define KSCMP_KEY_ID_MASK ((1ULL << KSCMP_KEY_KIND_SHIFT) - 1)

/* Slots of the per-CPU cache of recently confirmed bits (a power of two). */
#define KSCMP_CACHE_SLOTS 4

/* Indexes of the per-CPU lost counters. */
#define KSCMP_LOST_MAP_FULL 0     /* syscalls of a new key that found the set map full */
#define KSCMP_LOST_RINGBUF_FULL 1 /* new-key events that found the ring buffer full */
#define KSCMP_LOST_OUT_OF_RANGE 2 /* syscall numbers >= KSCMP_NR_BITS (or negative) */
#define KSCMP_LOST_STALE_MEMO 3   /* task memos found stale on a cache miss (never expected) */
#define KSCMP_LOST_COUNT 4

/* Sizes of the path buffers in new_key_event. Paths are stored leaf first as
 * NUL-terminated components; a component read starts at most at offset
 * (BUF - 1), so every buffer has KSCMP_NAME_READ bytes of slack. */
#define KSCMP_NAME_READ 256
#define KSCMP_EXE_BUF 2048
#define KSCMP_CGROUP_BUF 1024
#define KSCMP_PATH_DEPTH 32

/* Event flags. */
#define KSCMP_EV_EXE_TRUNCATED (1U << 0)
#define KSCMP_EV_CGROUP_TRUNCATED (1U << 1)

/* Distinct values an arg_set keeps of a call whose argument is a number,
 * not a set of flags (personality, the large prctl options). */
#define KSCMP_ARG_VALUES 4

/* Flags of arg_set.overflow: more distinct values came than fit. */
#define KSCMP_ARG_PERSONA_OVERFLOW (1ULL << 0) /* personality: more than KSCMP_ARG_VALUES */
#define KSCMP_ARG_PRCTL_OVERFLOW (1ULL << 1)   /* prctl: more large options than KSCMP_ARG_VALUES */

/* arg_set.setns_ns bit for setns(fd, 0) ("any type"); no CLONE_NEW* flag
 * uses bit 0 (it is in CSIGNAL, the exit signal of clone). */
#define KSCMP_SETNS_ANY (1ULL << 0)
/* Bit of a socket family mask for families >= 63 (AF_MAX is 46 in 6.18). */
#define KSCMP_FAMILY_OTHER 63
/* Options of prctl below this are bits of arg_set.prctl_options; larger ones
 * (PR_SET_PTRACER 0x59616d61, PR_SET_VMA 0x53564d41) go to prctl_large. */
#define KSCMP_PRCTL_BITS 128

/* arg_set holds the arguments that matter of the calls that open doors, for
 * the native ABI only: every field only ever gains bits (atomic OR, or a
 * compare-and-swap into an empty value slot), so concurrent CPUs never lose
 * one. A value slot holds (1 << 32) | value, 0 when empty. */
struct arg_set {
	__u64 clone_ns;            /* clone: flags & CLONE_NEW* (not CLONE_NEWTIME: clone's exit signal) */
	__u64 unshare_ns;          /* unshare: flags & CLONE_NEW* */
	__u64 setns_ns;            /* setns: nstype & CLONE_NEW*, KSCMP_SETNS_ANY for 0 */
	__u64 socket_families;     /* socket: 1 << domain */
	__u64 socketpair_families; /* socketpair: 1 << domain */
	__u32 socket_types;        /* socket: 1 << (type & SOCK_TYPE_MASK) */
	__u32 socketpair_types;    /* socketpair: likewise */
	__u64 prctl_options[KSCMP_PRCTL_BITS / 64]; /* prctl: 1 << option */
	__u64 prctl_large[KSCMP_ARG_VALUES];        /* prctl: larger options, value slots */
	__u64 personas[KSCMP_ARG_VALUES];           /* personality: value slots */
	__u64 overflow;                             /* KSCMP_ARG_*_OVERFLOW */
};

struct syscall_set {
	__u32 mntns; /* inode of the key's mount namespace, written once after insert */
	__u32 pad;
	struct arg_set args; /* native ABI: see arg_set */
	__u64 bits[KSCMP_ABI_COUNT][KSCMP_NR_WORDS];
};

/* cache_slot remembers, on one CPU, bits known to be set in one key's set:
 * valid while key and gen (the global generation) match. */
struct cache_slot {
	__u64 key;
	__u64 gen;
	__u64 bits[KSCMP_ABI_COUNT][KSCMP_NR_WORDS];
};

/* task_memo remembers, on one CPU, the key of a task's calls, by the task's
 * address: valid while gen equals the program's task_generation, which is
 * bumped whenever a task's mount namespace may change under the same address
 * (the task calls unshare or setns, or it is freed and its memory may hold
 * another task next). */
struct task_memo {
	__u64 task;
	__u64 gen;
	__u64 key;
};

/* Ways of the task memo: the tasks last seen on a CPU (a pipe's two ends). */
#define KSCMP_MEMO_WAYS 2

/* Values of cpu_cache.current_slot other than an address. */
#define KSCMP_CURRENT_UNKNOWN 0 /* not looked for yet on this CPU */
#define KSCMP_CURRENT_HELPER 1  /* not usable: ask bpf_get_current_task_btf() */

/* cpu_cache is the per-CPU state of the recorder: the cache slots and where
 * this CPU keeps its current task. */
struct cpu_cache {
	__u64 current_slot; /* this CPU's address of current_task, or KSCMP_CURRENT_* */
	__u64 scratch;      /* turns a pointer into a number (see learn_current) */
	struct task_memo memo[KSCMP_MEMO_WAYS]; /* most recent first */
	struct cache_slot slots[KSCMP_CACHE_SLOTS];
};

/* new_key_event is sent once, by the CPU whose insert created the key. */
struct new_key_event {
	__u64 key;
	__u64 cgroup_id;
	__u64 start_boottime; /* task start, ns since boot: /proc/pid/stat field 22 */
	__u32 mntns; /* inode */
	__u32 pid;  /* thread id */
	__u32 tgid; /* process id */
	__u32 abi;
	__u32 nr; /* the first syscall number recorded for the key */
	__u32 flags;
	__u16 exe_len;    /* bytes used in exe */
	__u16 cgroup_len; /* bytes used in cgroup */
	char comm[16];
	char exe[KSCMP_EXE_BUF + KSCMP_NAME_READ];
	char cgroup[KSCMP_CGROUP_BUF + KSCMP_NAME_READ];
};

#endif
