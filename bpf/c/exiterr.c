//go:build ignore

/* exiterr.c: seccomp refusals seen at system call exit, for runtimes whose
 * filters cannot log them (runc 1.1.5 refuses SECCOMP_FILTER_FLAG_LOG, so
 * a SCMP_ACT_ERRNO refusal never reaches audit). Opt-in: user space attaches
 * it only for `kscmp violations --exit-errors`.
 *
 * A call seccomp refuses with an errno never reaches sys_enter (the filter
 * runs first and the call is skipped) but does reach sys_exit, with the
 * errno as its return value (kernel/seccomp.c __seccomp_filter,
 * SECCOMP_RET_ERRNO: syscall_set_return_value, then the exit work of
 * kernel/entry/common.c traces sys_exit). So: on sys_exit, a return other
 * than -EPERM leaves at once (the one compare every call of the node pays);
 * on -EPERM, the caller's cgroup is looked up in `watched` (filled by user
 * space with the cgroups under a profile) and the call's bit in that
 * cgroup's refused set (the calls its compiled profile refuses with EPERM
 * unconditionally). Only a set bit counts: such a call cannot have run, so
 * its EPERM is seccomp's; a genuine EPERM of an allowed call (kill,
 * sethostname without the capability) has no bit and is not counted.
 *
 * Refusals are counted in the kernel per (cgroup, call) with first and last
 * time, so a flood costs a map update per call and nothing crosses to user
 * space but the counters it reads; a new pair that finds the map full is
 * counted in `lost`.
 */

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "exiterr.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* include/uapi/asm-generic/errno-base.h. */
#define EPERM 1
#define EEXIST 17

/* x86: thread_info.status bit of a task in a 32-bit syscall, TS_COMPAT in
 * arch/x86/include/asm/thread_info.h; the x32 marker in the syscall number,
 * __X32_SYSCALL_BIT in arch/x86/include/uapi/asm/unistd.h. Only native
 * calls are counted: the refused set is the native ABI's. */
#define X86_TS_COMPAT 0x0002
#define X86_X32_SYSCALL_BIT 0x40000000UL
/* arm64: pstate bit of a task running AArch32 code, PSR_MODE32_BIT in
 * arch/arm64/include/uapi/asm/ptrace.h. */
#define ARM64_PSR_MODE32_BIT 0x10

/* arm64's pt_regs: the syscall number (syscallno, arch/arm64/include/asm/
 * ptrace.h) and pstate; CO-RE finds them by name. */
struct pt_regs___exiterr_arm64 {
	__u64 pstate;
	__s32 syscallno;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* overridden at load: the watched cgroups */
	__type(key, __u64);
	__type(value, struct exit_refused);
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* overridden at load: Options.MaxEntries */
	__type(key, struct exit_key);
	__type(value, struct exit_count);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* native_nr returns the native call number of the exiting call, or -1 for
 * a compat or x32 call or a number past the sets. Only on -EPERM exits. */
static __always_inline long native_nr(struct pt_regs *regs)
{
	long nr;
#if defined(__TARGET_ARCH_x86)
	struct task_struct *task = bpf_get_current_task_btf();

	if (task->thread_info.status & X86_TS_COMPAT)
		return -1;
	nr = regs->orig_ax;
	if (nr & X86_X32_SYSCALL_BIT)
		return -1;
#elif defined(__TARGET_ARCH_arm64)
	struct pt_regs___exiterr_arm64 *r = (void *)regs;

	if (BPF_CORE_READ(r, pstate) & ARM64_PSR_MODE32_BIT)
		return -1;
	nr = BPF_CORE_READ(r, syscallno);
#else
	return -1;
#endif
	if (nr < 0 || nr >= KSCMP_NR_BITS)
		return -1;
	return nr;
}

/* count adds one refusal of nr in cgroup: in place when the pair is known,
 * else a new entry (a racing insert of the same pair is retried once). */
static __always_inline void count(__u64 cgroup, __u32 nr)
{
	struct exit_key k = {.cgroup = cgroup, .nr = nr};
	__u64 now = bpf_ktime_get_boot_ns();
	struct exit_count *c = bpf_map_lookup_elem(&counts, &k);
	struct exit_count fresh = {.count = 1, .first_ns = now, .last_ns = now};
	__u32 zero = 0;
	__u64 *l;
	long err;

	if (!c) {
		fresh.tgid = bpf_get_current_pid_tgid() >> 32;
		err = bpf_map_update_elem(&counts, &k, &fresh, BPF_NOEXIST);
		if (!err)
			return;
		c = err == -EEXIST ? bpf_map_lookup_elem(&counts, &k) : 0;
		if (!c) {
			l = bpf_map_lookup_elem(&lost, &zero);
			if (l)
				*l += 1;
			return;
		}
	}
	__sync_fetch_and_add(&c->count, 1);
	c->last_ns = now;
	c->tgid = bpf_get_current_pid_tgid() >> 32;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit_eperm, struct pt_regs *regs, long ret)
{
	struct exit_refused *set;
	__u64 cgroup;
	long nr;

	if (ret != -EPERM)
		return 0;
	cgroup = bpf_get_current_cgroup_id();
	set = bpf_map_lookup_elem(&watched, &cgroup);
	if (!set)
		return 0;
	nr = native_nr(regs);
	if (nr < 0 || !(set->bits[nr / 64] & (1ULL << (nr & 63))))
		return 0;
	count(cgroup, nr);
	return 0;
}
