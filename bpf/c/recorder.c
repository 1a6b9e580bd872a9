//go:build ignore

/* recorder.c: the kscmp syscall recorder. One job: the set of syscall
 * numbers, per ABI, that each workload makes. Three programs, of which user
 * space attaches two:
 *   sys_enter_btf  tp_btf/sys_enter, the recorder (direct reads, task memo);
 *   task_free      tp_btf/sched_process_free, with sys_enter_btf: drops the
 *                  task memos before a freed task's memory can be reused;
 *   sys_enter_raw  raw_tp/sys_enter, the recorder on kernels without tp_btf
 *                  (probe reads, no memo), attached alone.
 *
 * A workload is keyed by its mount namespace (containers; the namespace's
 * unique id, see recorder.h), or, for tasks in the host mount namespace, by
 * its cgroup (so systemd services are told apart); the host is skipped unless
 * the loader asks for it.
 *
 * Hot path (key known, bit already set): the per-CPU cache (an array lookup
 * the verifier inlines), the current task, its key from the per-CPU task
 * memo and one bit test; no helper call, no map call, no write (x86-64, see
 * current_task and task_key below). On
 * a cache miss the hash map is read, the bit is set with an atomic OR only if
 * it is not set yet, and the cache slot learns the bit. The first syscall of
 * a new key inserts a zeroed set and sends one event to user space; nothing
 * else crosses to user space.
 *
 * Argument recording (arg_set in recorder.h): for the few native calls
 * whose arguments open doors (clone, unshare, setns: namespace flags;
 * socket, socketpair: family and type; personality: persona; prctl:
 * option), the cache never learns the call's bit (arg_call, checked only in
 * record_slow), so each of them takes the slow path and folds its arguments
 * into the key's set. Every other call's path is unchanged by construction.
 *
 * Like every sys_enter hook, the recorder runs after seccomp: calls a filter
 * already denies are never seen. Record without a profile.
 */

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "recorder.h"
#include "cgpath.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Kernel constants that are macros, so not in BTF (vmlinux.h): copied from
 * the kernel's headers, part of its ABI or stable for years. Nothing in Go
 * mirrors them; the tests that would break are named. */

/* include/uapi/asm-generic/errno-base.h. */
#define EEXIST 17

/* x86: thread_info.status bit of a task in a 32-bit (int 0x80 or compat)
 * syscall, TS_COMPAT in arch/x86/include/asm/thread_info.h (TestCompat32). */
#define X86_TS_COMPAT 0x0002
/* x86: the x32 marker in the syscall number, __X32_SYSCALL_BIT in
 * arch/x86/include/uapi/asm/unistd.h (TestX32). */
#define X86_X32_SYSCALL_BIT 0x40000000UL
/* arm64: pstate bit of a task running AArch32 code, PSR_MODE32_BIT in
 * arch/arm64/include/uapi/asm/ptrace.h (not exercised here: x86-64 only). */
#define ARM64_PSR_MODE32_BIT 0x10

/* The calls whose arguments are recorded, native ABI, by number (part of
 * the ABI: never reused); the x86_64 ones are exercised by
 * discover's TestArgRecording, the aarch64 ones by no test here.
 *   x86_64  arch/x86/entry/syscalls/syscall_64.tbl;
 *   aarch64 include/uapi/asm-generic/unistd.h (scripts/syscall.tbl since
 *           6.11). */
#if defined(__TARGET_ARCH_x86)
#define NR_SOCKET 41
#define NR_SOCKETPAIR 53
#define NR_CLONE 56
#define NR_PERSONALITY 135
#define NR_PRCTL 157
#define NR_UNSHARE 272
#define NR_SETNS 308
#elif defined(__TARGET_ARCH_arm64)
#define NR_PERSONALITY 92
#define NR_UNSHARE 97
#define NR_PRCTL 167
#define NR_SOCKET 198
#define NR_SOCKETPAIR 199
#define NR_CLONE 220
#define NR_SETNS 268
#endif

/* Namespace flags, include/uapi/linux/sched.h. CLONE_NEWTIME (0x80) lies
 * in clone's CSIGNAL byte (the exit signal), so it counts only for unshare
 * and setns. */
#define CLONE_NEWTIME 0x00000080
#define CLONE_NEWNS 0x00020000
#define CLONE_NEWCGROUP 0x02000000
#define CLONE_NEWUTS 0x04000000
#define CLONE_NEWIPC 0x08000000
#define CLONE_NEWUSER 0x10000000
#define CLONE_NEWPID 0x20000000
#define CLONE_NEWNET 0x40000000
#define CLONE_NS_FLAGS (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | \
			CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET)
#define UNSHARE_NS_FLAGS (CLONE_NS_FLAGS | CLONE_NEWTIME)

/* The socket type without SOCK_NONBLOCK and SOCK_CLOEXEC, SOCK_TYPE_MASK in
 * include/linux/net.h. */
#define SOCK_TYPE_MASK 0xf

/* Set at load time by user space. */
volatile const __u32 host_mntns = 0;  /* inode of the host mount namespace */
volatile const __u8 include_host = 0; /* record tasks in host_mntns, keyed by cgroup */
volatile const __u8 include_runtime = 0; /* also record the container runtime's own calls */

/* x86-64: the address of the kernel's per-CPU variable current_task (the
 * task `current` is), found by user space (discover/current.go); 0 when
 * unknown, and then the hot path asks the helper bpf_get_current_task_btf(). */
volatile const __u64 current_task_addr = 0;

/* Bumped by user space around deleting keys: cache slots of an older
 * generation are not trusted. */
volatile __u64 generation = 0;

/* Set at load time by user space: the tp_btf program keeps a per-CPU memo
 * of task → key (task_key below). Only with task_free attached. */
volatile const __u8 use_memo = 0;

/* Bumped by the programs whenever a task's key may change while its address
 * stays: task memos of an older generation are not trusted. Next to
 * generation: the hot path reads both from one cache line. */
volatile __u64 task_generation = 0;

/* The set inserted for a new key. */
const struct syscall_set zero_set = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192); /* overridden at load: RecorderOptions.MaxKeys */
	__type(key, __u64);
	__type(value, struct syscall_set);
} sets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* overridden at load: RecorderOptions.RingBufferSize */
	__type(value, struct new_key_event); /* documents the records; not sent to the kernel */
} events SEC(".maps");

/* The per-CPU cache, one element. Safe without atomics: programs on syscall
 * tracepoints run with preemption disabled and never nest on one CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_cache);
} cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KSCMP_LOST_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* arm64's pt_regs, for the compat test; CO-RE finds pstate by name. */
struct user_pt_regs___arm64 {
	__u64 pstate;
} __attribute__((preserve_access_index));

/* arm64's pt_regs for a syscall's arguments: orig_x0 keeps argument 0
 * (x0 becomes the return value), regs[1] argument 1. */
struct pt_regs___kscmp_arm64 {
	__u64 regs[31];
	__u64 orig_x0;
} __attribute__((preserve_access_index));

/* syscall_arg returns argument i (0 or 1) of the syscall being entered, as
 * the native syscall ABI passes it (probe reads: regs is a BTF pointer under
 * tp_btf, a number under raw_tp). x86-64: rdi, rsi (not rcx: the syscall
 * instruction clobbers it; the kernel reads r10 for argument 3). */
static __always_inline __u64 syscall_arg(struct pt_regs *regs, int i)
{
	__u64 v = 0;

#if defined(__TARGET_ARCH_x86)
	if (i == 0)
		bpf_core_read(&v, sizeof(v), &regs->di);
	else
		bpf_core_read(&v, sizeof(v), &regs->si);
#elif defined(__TARGET_ARCH_arm64)
	struct pt_regs___kscmp_arm64 *r = (void *)regs;

	if (i == 0)
		bpf_core_read(&v, sizeof(v), &r->orig_x0);
	else
		bpf_core_read(&v, sizeof(v), &r->regs[1]);
#endif
	return v;
}

/* mnt_namespace before 6.18 kept its unique id in seq. */
struct mnt_namespace___pre618 {
	__u64 seq;
} __attribute__((preserve_access_index));

/* task_free runs when the kernel frees a task (the tracepoint fires from
 * the RCU callback that drops the task's last reference after it was
 * reaped, so before its memory can be reused): from then on the address may
 * be another task's, and no memo made for the old one may be trusted. Not on
 * the syscall path; once per task, like fork. */
SEC("tp_btf/sched_process_free")
int BPF_PROG(task_free, struct task_struct *task)
{
	__sync_fetch_and_add(&task_generation, 1);
	return 0;
}

/* A kfunc the verifier turns into a plain move (kernel 6.2+): it lets the
 * program read kernel memory at a computed address, faults reading zero. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

static __always_inline void count_lost(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&lost, &reason);

	if (n)
		*n += 1; /* per-CPU slot; the program does not nest on one CPU */
}

/* read_cgroup_path stores the components of the task's cgroup v2 path,
 * leaf first, each NUL-terminated (cgpath.h). */
static __always_inline void read_cgroup_path(struct task_struct *task, struct new_key_event *ev)
{
	if (read_cgroup_names(task, ev->cgroup, ev->cgroup_len))
		ev->flags |= KSCMP_EV_CGROUP_TRUNCATED;
}

/* read_exe_path stores the components of the task's executable path, leaf
 * first, each NUL-terminated, crossing mounts up to the root of the task's
 * mount namespace. */
static __always_inline void read_exe_path(struct task_struct *task, struct new_key_event *ev)
{
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	struct dentry *d, *parent;
	struct mount *mnt, *mnt_parent;
	__u64 mnt_off = bpf_core_field_offset(struct mount, mnt);
	__u32 off;
	long n;

	ev->exe_len = 0;
	if (!exe) {
		ev->flags |= KSCMP_EV_EXE_TRUNCATED;
		return;
	}
	d = BPF_CORE_READ(exe, f_path.dentry);
	mnt = (void *)BPF_CORE_READ(exe, f_path.mnt) - mnt_off;

	for (int i = 0; i < KSCMP_PATH_DEPTH; i++) {
		if (d == BPF_CORE_READ(mnt, mnt.mnt_root)) {
			mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
			if (mnt_parent == mnt) /* root of the namespace: complete */
				return;
			d = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = mnt_parent;
			continue;
		}
		parent = BPF_CORE_READ(d, d_parent);
		if (d == parent) /* root of a file system not mounted here */
			return;
		off = RELOAD(ev->exe_len);
		if (off >= KSCMP_EXE_BUF)
			break;
		n = bpf_probe_read_kernel_str(&ev->exe[off], KSCMP_NAME_READ, BPF_CORE_READ(d, d_name.name));
		if (n <= 0)
			break;
		ev->exe_len = off + n;
		d = parent;
	}
	ev->flags |= KSCMP_EV_EXE_TRUNCATED;
}

/* new_key inserts an empty set for key and, if this CPU created it, tells user
 * space who made the first syscall. Rare: once per key. */
static __noinline struct syscall_set *new_key(struct task_struct *task, __u64 key, __u32 abi, __u32 nr)
{
	struct new_key_event *ev;
	__u32 mntns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	struct syscall_set *set;
	__u64 pid_tgid;
	long err;

	err = bpf_map_update_elem(&sets, &key, &zero_set, BPF_NOEXIST);
	if (err && err != -EEXIST) {
		count_lost(KSCMP_LOST_MAP_FULL);
		return 0;
	}
	if (!err) {
		ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
		if (!ev) {
			count_lost(KSCMP_LOST_RINGBUF_FULL);
		} else {
			pid_tgid = bpf_get_current_pid_tgid();
			ev->key = key;
			ev->cgroup_id = bpf_get_current_cgroup_id();
			ev->start_boottime = BPF_CORE_READ(task, start_boottime);
			ev->mntns = mntns;
			ev->pid = (__u32)pid_tgid;
			ev->tgid = pid_tgid >> 32;
			ev->abi = abi;
			ev->nr = nr;
			ev->flags = 0;
			bpf_get_current_comm(ev->comm, sizeof(ev->comm));
			read_exe_path(task, ev);
			read_cgroup_path(task, ev);
			bpf_ringbuf_submit(ev, 0);
		}
	}
	set = bpf_map_lookup_elem(&sets, &key);
	if (set && !err)
		set->mntns = mntns;
	return set;
}

/* runtime_init reports whether the current thread is setting up a workload
 * for someone else, before it executes the workload: a container runtime
 * (runc's init "runc:[1:CHILD]", "runc:[2:INIT]"; crun's child "crun") or
 * systemd, whose child for a service is named "(<program>)" (e.g. "(sh)")
 * from the fork until it executes the service, after installing the unit's
 * filter. Their calls in the workload's namespace or cgroup are not the
 * workload's: the merger adds the runtime's start-up set back, and systemd
 * allows what it needs itself. Checked only on the slow path, so it costs
 * the hot path nothing. */
static __always_inline bool runtime_init(void)
{
	char comm[16];

	if (include_runtime)
		return false;
	bpf_get_current_comm(comm, sizeof(comm));
	if (comm[0] == 'r' && comm[1] == 'u' && comm[2] == 'n' && comm[3] == 'c' && comm[4] == ':' && comm[5] == '[')
		return true;
	if (comm[0] == '(')
		return true;
	return comm[0] == 'c' && comm[1] == 'r' && comm[2] == 'u' && comm[3] == 'n' && comm[4] == 0;
}

/* arg_call reports whether the native call nr has its arguments recorded:
 * the cache must then never learn its bit. */
static __always_inline bool arg_call(__u32 abi, __u32 nr)
{
#if defined(NR_SOCKET)
	return abi == KSCMP_ABI_NATIVE &&
	       (nr == NR_SOCKET || nr == NR_SOCKETPAIR || nr == NR_CLONE || nr == NR_PERSONALITY ||
		nr == NR_PRCTL || nr == NR_UNSHARE || nr == NR_SETNS);
#else
	return false;
#endif
}

/* or64 and or32 add bits to a field of an arg_set; the atomic only when a
 * bit is new, so a repeated call writes nothing. */
static __always_inline void or64(__u64 *w, __u64 bits)
{
	if ((*w & bits) != bits)
		__sync_fetch_and_or(w, bits);
}

static __always_inline void or32(__u32 *w, __u32 bits)
{
	if ((*w & bits) != bits)
		__sync_fetch_and_or(w, bits);
}

/* add_value adds v to KSCMP_ARG_VALUES value slots, (1 << 32) | v each, 0
 * empty: a compare-and-swap claims an empty slot, so two CPUs never write
 * one slot; no free slot sets flag in *overflow. */
static __always_inline void add_value(__u64 *slots, __u64 *overflow, __u64 flag, __u32 v)
{
	__u64 want = (1ULL << 32) | v, old;

	for (int i = 0; i < KSCMP_ARG_VALUES; i++) {
		old = slots[i];
		if (old == 0)
			old = __sync_val_compare_and_swap(&slots[i], 0, want);
		if (old == 0 || old == want)
			return;
	}
	or64(overflow, flag);
}

/* record_args folds the arguments of an arg_call into a. */
static __noinline void record_args(struct arg_set *a, struct pt_regs *regs, __u32 nr)
{
#if defined(NR_SOCKET)
	__u64 a0 = syscall_arg(regs, 0), a1;

	switch (nr) {
	case NR_CLONE:
		or64(&a->clone_ns, a0 & CLONE_NS_FLAGS);
		break;
	case NR_UNSHARE:
		or64(&a->unshare_ns, a0 & UNSHARE_NS_FLAGS);
		break;
	case NR_SETNS:
		a1 = (__u32)syscall_arg(regs, 1);
		or64(&a->setns_ns, a1 ? a1 & UNSHARE_NS_FLAGS : KSCMP_SETNS_ANY);
		break;
	case NR_SOCKET:
	case NR_SOCKETPAIR:
		a1 = syscall_arg(regs, 1);
		a0 = (__u32)a0; /* int domain */
		a0 = 1ULL << (a0 < KSCMP_FAMILY_OTHER ? a0 : KSCMP_FAMILY_OTHER);
		a1 = 1U << (a1 & SOCK_TYPE_MASK);
		if (nr == NR_SOCKET) {
			or64(&a->socket_families, a0);
			or32(&a->socket_types, a1);
		} else {
			or64(&a->socketpair_families, a0);
			or32(&a->socketpair_types, a1);
		}
		break;
	case NR_PERSONALITY:
		add_value(a->personas, &a->overflow, KSCMP_ARG_PERSONA_OVERFLOW, a0);
		break;
	case NR_PRCTL:
		a0 = (__u32)a0; /* int option */
		if (a0 < KSCMP_PRCTL_BITS)
			or64(&a->prctl_options[a0 / 64], 1ULL << (a0 & 63));
		else
			add_value(a->prctl_large, &a->overflow, KSCMP_ARG_PRCTL_OVERFLOW, a0);
		break;
	}
#endif
}

/* record_slow records a syscall the cache did not know, and teaches it
 * unless it is an arg_call, whose arguments it records instead. task must
 * be the current task, as the helper returns it. */
static __noinline int record_slow(struct task_struct *task, struct pt_regs *regs, struct cache_slot *c, __u64 key,
				  __u32 call)
{
	__u32 abi = call >> 16, nr = call & 0xffff;
	struct syscall_set *set;
	__u64 *word, bit, gen;

	if (abi >= KSCMP_ABI_COUNT || nr >= KSCMP_NR_BITS)
		return 0;
	if (runtime_init())
		return 0;
	set = bpf_map_lookup_elem(&sets, &key);
	if (!set) {
		set = new_key(task, key, abi, nr);
		if (!set)
			return 0;
	}
	bit = 1ULL << (nr & 63);
	word = &set->bits[abi][nr / 64];
	if (!(*word & bit))
		__sync_fetch_and_or(word, bit);
	if (arg_call(abi, nr)) {
		record_args(&set->args, regs, nr);
		return 0;
	}

	gen = generation;
	if (c->key != key || c->gen != gen) {
		for (int i = 0; i < KSCMP_NR_WORDS; i++) {
			c->bits[KSCMP_ABI_NATIVE][i] = 0;
			c->bits[KSCMP_ABI_COMPAT][i] = 0;
			c->bits[KSCMP_ABI_X32][i] = 0;
		}
		c->key = key;
		c->gen = gen;
	}
	c->bits[abi][nr / 64] |= bit;
	return 0;
}

/* slow_call packs a call's ABI and number into record_slow's fifth and
 * last argument (a BPF function takes at most five). nr is below
 * KSCMP_NR_BITS here (known counted larger ones). */
static __always_inline __u32 slow_call(__u32 abi, __u64 nr)
{
	return abi << 16 | (__u32)nr;
}

/* cpu_cache returns this CPU's state. */
static __always_inline struct cpu_cache *cpu_cache(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&cache, &zero);
}

/* cache_slot returns the cache slot of key. */
static __always_inline struct cache_slot *cache_slot(struct cpu_cache *cc, __u64 key)
{
	return &cc->slots[key & (KSCMP_CACHE_SLOTS - 1)];
}

/* known reports whether the call needs no more work: its bit is in the
 * cache, or its number cannot be recorded (counted). Unsigned nr: a negative
 * number must fail the range test too. */
static __always_inline bool known(struct cache_slot *c, __u64 key, __u32 abi, __u64 nr)
{
	if (nr >= KSCMP_NR_BITS) {
		count_lost(KSCMP_LOST_OUT_OF_RANGE);
		return true;
	}
	return c->key == key && c->gen == generation && (c->bits[abi][nr / 64] & (1ULL << (nr & 63)));
}

/* abi_of returns the ABI of the syscall being entered and strips ABI markers
 * from its number. */
static __always_inline __u32 abi_of(__u32 status, __u64 pstate, __u64 *nr)
{
#if defined(__TARGET_ARCH_x86)
	if (status & X86_TS_COMPAT)
		return KSCMP_ABI_COMPAT;
	if (*nr & X86_X32_SYSCALL_BIT) {
		*nr &= ~X86_X32_SYSCALL_BIT;
		return KSCMP_ABI_X32;
	}
#elif defined(__TARGET_ARCH_arm64)
	if (pstate & ARM64_PSR_MODE32_BIT)
		return KSCMP_ABI_COMPAT;
#endif
	return KSCMP_ABI_NATIVE;
}

/* key_of returns the key of task's syscalls, or 0 if they are not recorded.
 * Direct reads (tp_btf); a field behind a NULL pointer reads as 0. */
static __always_inline __u64 key_of(struct task_struct *task)
{
	struct mnt_namespace *ns = task->nsproxy->mnt_ns;
	__u32 mntns = ns->ns.inum;
	__u64 id;

	if (mntns != host_mntns) {
		if (!mntns) /* exiting task: namespaces already gone */
			return 0;
		if (bpf_core_field_exists(ns->ns.ns_id))
			id = ns->ns.ns_id;
		else
			id = ((struct mnt_namespace___pre618 *)ns)->seq;
		return KSCMP_KEY_MNTNS | (id & KSCMP_KEY_ID_MASK);
	}
	if (include_host)
		return KSCMP_KEY_CGROUP | (task->cgroups->dfl_cgrp->kn->id & KSCMP_KEY_ID_MASK);
	return 0;
}

/* ns_call reports whether syscall id may be unshare or setns, in any ABI:
 * the calls that change the caller's namespaces (a task changes only its
 * own). Other calls with these numbers in another ABI only cost a bump.
 *
 * The numbers are the kernel's, from its syscall tables (part of the ABI:
 * a number is never reused for another call):
 *   x86_64, x32  arch/x86/entry/syscalls/syscall_64.tbl: unshare 272,
 *                setns 308 (both "common": x32 shares them, bit 30 set);
 *   i386         arch/x86/entry/syscalls/syscall_32.tbl: unshare 310,
 *                setns 346;
 *   aarch64      include/uapi/asm-generic/unistd.h (scripts/syscall.tbl
 *                since 6.11): unshare 97, setns 268;
 *   arm          arch/arm/tools/syscall.tbl: unshare 337, setns 375.
 * The Go side names recorded numbers with elastic/go-seccomp-bpf's tables
 * (arch/zsyscalls.go), which give the same numbers. What must stay in step
 * is the set of calls, not the numbers: should the kernel add another call
 * that changes the caller's mount namespace, it must be listed here for
 * every ABI, or the memo keeps the task's old key after it. Only the x86_64
 * pair is exercised by a test (TestMemoNamespaceSwitch). */
static __always_inline bool ns_call(long id)
{
#if defined(__TARGET_ARCH_x86)
	id &= ~X86_X32_SYSCALL_BIT;
	return id == 272 || id == 308 || /* x86_64, x32: unshare, setns */
	       id == 310 || id == 346;   /* i386: unshare, setns */
#elif defined(__TARGET_ARCH_arm64)
	return id == 97 || id == 268 || /* aarch64: unshare, setns */
	       id == 337 || id == 375;  /* arm: unshare, setns */
#else
	return true;
#endif
}

/* task_key returns key_of(task), from this CPU's task memo when it holds the
 * task. The chain task → nsproxy → mount namespace is three dependent loads
 * that miss the cache when the task streams data (tar: about half of the
 * recorder's cost over the empty program, BENCHMARKS.md); the memo is in
 * the first 64 bytes of this CPU's state, next to current_slot, which the
 * hot path reads anyway.
 *
 * A memo is valid while task_generation has not moved. A task's mount
 * namespace changes only in its own unshare or setns (and at exit, after its
 * last syscall); before such a call enters, every memo is dropped, and none
 * is made during it. A freed task's address may come back as another task:
 * task_free drops every memo before that. Cgroup keys (host tasks) are not
 * memoized: another task can move this one to another cgroup. Should a memo
 * still be wrong, the slow path finds it on the task's next cache miss
 * (LOST_STALE_MEMO) unless the memo said "not recorded" (key 0). */
static __always_inline __u64 task_key(struct cpu_cache *cc, struct task_struct *task, long id)
{
	__u64 gen = task_generation, key;

	if (!use_memo)
		return key_of(task);
	if (ns_call(id)) {
		__sync_fetch_and_add(&task_generation, 1);
		return key_of(task);
	}
	if (cc->memo[0].task == (__u64)task && cc->memo[0].gen == gen)
		return cc->memo[0].key;
	if (cc->memo[1].task == (__u64)task && cc->memo[1].gen == gen)
		return cc->memo[1].key;
	key = key_of(task);
	if ((key & ~KSCMP_KEY_ID_MASK) != KSCMP_KEY_CGROUP) {
		cc->memo[1] = cc->memo[0];
		cc->memo[0].task = (__u64)task;
		cc->memo[0].gen = gen;
		cc->memo[0].key = key;
	}
	return key;
}

/* abi_of_task returns the ABI of task's syscall (tp_btf) and strips markers
 * from nr. */
static __always_inline __u32 abi_of_task(struct task_struct *task, struct pt_regs *regs, __u64 *nr)
{
	__u32 status = 0;
	__u64 pstate = 0;

#if defined(__TARGET_ARCH_x86)
	status = task->thread_info.status;
#elif defined(__TARGET_ARCH_arm64)
	pstate = BPF_CORE_READ((struct user_pt_regs___arm64 *)regs, pstate);
#endif
	return abi_of(status, pstate, nr);
}

#if defined(__TARGET_ARCH_x86)
/* The current task without a helper call (x86-64, tp_btf).
 *
 * bpf_get_current_task_btf() is a call the x86-64 JIT does not inline (up
 * to 6.18 at least), and on a syscall hook that call is most of the
 * recorder's cost over an empty program (BENCHMARKS.md). The kernel keeps the task in the per-CPU variable current_task; its
 * copy for this CPU lies at its address plus this CPU's per-CPU offset, the
 * same offset that separates this CPU's copy of the cache from the cache's
 * per-CPU pointer. learn_current works that address out once per CPU and
 * keeps it only if it holds the task the helper returns; the hot path then
 * reads the task from it with one load. Without current_task_addr (another
 * kernel layout, no bpf_rdonly_cast) or if the check fails, the helper it is.
 * The slow path checks the hot path's task against the helper's again on
 * every cache miss. */
static __noinline void learn_current(struct cpu_cache *cc)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 pptr = 0, slot, val = 0;

	cc->current_slot = KSCMP_CURRENT_HELPER;
	/* The per-CPU pointer of the cache's element, from the array map itself
	 * (struct bpf_array, field pptrs). Storing a pointer into a map value is
	 * allowed to CAP_PERFMON; read back, it is a number. */
	cc->scratch = (__u64)&cache;
	if (bpf_probe_read_kernel(&pptr, sizeof(pptr),
				  (void *)(RELOAD(cc->scratch) + bpf_core_field_offset(struct bpf_array, pptrs))))
		return;
	cc->scratch = (__u64)cc;
	slot = RELOAD(cc->scratch) - pptr + current_task_addr;
	if (bpf_probe_read_kernel(&val, sizeof(val), (void *)slot) || val != (__u64)task)
		return;
	cc->current_slot = slot;
}

static __always_inline struct task_struct *current_task(struct cpu_cache *cc)
{
	/* Constants at load time: without them the verifier drops this branch,
	 * and with it the call to bpf_rdonly_cast (user space sets
	 * current_task_addr only if the kernel has that kfunc) and the CO-RE
	 * relocations of types this kernel may not have. */
	if (current_task_addr && bpf_core_type_exists(struct rcuwait) &&
	    bpf_core_field_exists(struct bpf_array, pptrs)) {
		__u64 slot = cc->current_slot;

		if (slot > KSCMP_CURRENT_HELPER)
			return ((struct rcuwait *)bpf_rdonly_cast((void *)slot, bpf_core_type_id_kernel(struct rcuwait)))->task;
		if (slot == KSCMP_CURRENT_UNKNOWN)
			learn_current(cc);
	}
	return bpf_get_current_task_btf();
}
#endif

/* sys_enter_btf: BTF-enabled tracepoint, direct reads of kernel memory. */
SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter_btf, struct pt_regs *regs, long id)
{
	struct cpu_cache *cc = cpu_cache();
	struct task_struct *task, *helper_task;
	struct cache_slot *c;
	__u64 nr = id, key, helper_key;
	__u32 abi;

	if (!cc)
		return 0;
#if defined(__TARGET_ARCH_x86)
	task = current_task(cc);
#else
	task = bpf_get_current_task_btf();
#endif
	key = task_key(cc, task, id);
	if (!key)
		return 0;
	abi = abi_of_task(task, regs, &nr);
	c = cache_slot(cc, key);
	if (known(c, key, abi, nr))
		return 0;

	/* Slow path: with the task the helper returns and its key read now,
	 * which is what the hot path's task and key must be. */
	helper_task = bpf_get_current_task_btf();
	helper_key = key_of(helper_task);
	if (task != helper_task || key != helper_key) {
#if defined(__TARGET_ARCH_x86)
		/* The hot path did not read the current task: never again on
		 * this CPU. */
		if (task != helper_task)
			cc->current_slot = KSCMP_CURRENT_HELPER;
#endif
		/* Same task, other key, and one the memo may have given: a
		 * stale memo. */
		if (task == helper_task && use_memo &&
		    (key & ~KSCMP_KEY_ID_MASK) != KSCMP_KEY_CGROUP) {
			count_lost(KSCMP_LOST_STALE_MEMO);
			__sync_fetch_and_add(&task_generation, 1);
		}
		/* This call from the helper's task and key. */
		key = helper_key;
		if (!key)
			return 0;
		nr = id;
		abi = abi_of_task(helper_task, regs, &nr);
		c = cache_slot(cc, key);
		if (known(c, key, abi, nr))
			return 0;
	}
	/* regs read again from the context here, not kept from the entry: the
	 * hot path then spills nothing for the slow path's sake. */
	return record_slow(helper_task, (struct pt_regs *)RELOAD(ctx[0]), c, key, slow_call(abi, nr));
}

/* sys_enter_raw: the fallback for kernels without tp_btf; CO-RE probe reads. */
SEC("raw_tp/sys_enter")
int BPF_PROG(sys_enter_raw, struct pt_regs *regs, long id)
{
	struct cpu_cache *cc = cpu_cache();
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct mnt_namespace *ns = BPF_CORE_READ(task, nsproxy, mnt_ns);
	__u32 mntns = BPF_CORE_READ(ns, ns.inum);
	__u32 status = 0, abi;
	__u64 pstate = 0, nr = id, key;
	struct cache_slot *c;

	if (!cc)
		return 0;
	if (mntns != host_mntns) {
		if (!mntns)
			return 0;
		if (bpf_core_field_exists(ns->ns.ns_id))
			key = BPF_CORE_READ(ns, ns.ns_id);
		else
			key = BPF_CORE_READ((struct mnt_namespace___pre618 *)ns, seq);
		key = KSCMP_KEY_MNTNS | (key & KSCMP_KEY_ID_MASK);
	} else if (include_host) {
		key = KSCMP_KEY_CGROUP | (bpf_get_current_cgroup_id() & KSCMP_KEY_ID_MASK);
	} else {
		return 0;
	}
#if defined(__TARGET_ARCH_x86)
	status = BPF_CORE_READ(task, thread_info.status);
#elif defined(__TARGET_ARCH_arm64)
	pstate = BPF_CORE_READ((struct user_pt_regs___arm64 *)regs, pstate);
#endif
	abi = abi_of(status, pstate, &nr);
	c = cache_slot(cc, key);
	if (known(c, key, abi, nr))
		return 0;
	return record_slow(task, regs, c, key, slow_call(abi, nr));
}
