//go:build ignore

/* exited.c: where a process was, after it is gone. The kernel's seccomp
 * audit record names a process only by its pid (kernel/auditsc.c
 * audit_seccomp → audit_log_task: pid=task_tgid_nr(current), comm, exe), and
 * it reaches user space a moment after the call (the audit queue's kauditd
 * thread). A short-lived process, such as the mkdir a shell forks, or one a
 * Kill action ended, has usually exited and been reaped by then, so user
 * space cannot read /proc/<pid>/cgroup to tell which workload made the call.
 *
 * This program runs when a thread exits (tp_btf/sched_process_exit, called
 * from do_exit before cgroup_exit, so the task is still in its cgroup) and,
 * for a task under seccomp (only such a task can have made a seccomp
 * record), keeps its thread group's cgroup id and exit time in
 * `exited` (an LRU map: the oldest exits are forgotten first) and, once per
 * cgroup, the cgroup's path in `paths` (the cgroup directory may be removed
 * right after its last process exits, before user space could resolve the
 * id). Nothing runs on the system call path: its cost is paid once per
 * thread exit, a compare for a task without a filter.
 */

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "exited.h"
#include "cgpath.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* include/uapi/linux/seccomp.h: a task without seccomp. Any other mode can
 * have made a record: STRICT (1) and FILTER (2), and DEAD (3, kernel/
 * seccomp.c: what a task a kill action ends is set to before it exits). */
#define SECCOMP_MODE_DISABLED 0

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384); /* overridden at load: Options in discover/violations */
	__type(key, __u32);
	__type(value, struct exit_record);
} exited SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024); /* overridden at load */
	__type(key, __u64);
	__type(value, struct cgroup_path);
} paths SEC(".maps");

/* A path is built here before it is inserted: it does not fit the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cgroup_path);
} scratch SEC(".maps");

SEC("tp_btf/sched_process_exit")
int BPF_PROG(process_exit, struct task_struct *task)
{
	struct exit_record e = {};
	struct cgroup_path *p;
	__u32 tgid, zero = 0;
	__u64 cgroup;

	if (task->seccomp.mode == SECCOMP_MODE_DISABLED)
		return 0;
	tgid = task->tgid;
	cgroup = task->cgroups->dfl_cgrp->kn->id;
	e.cgroup = cgroup;
	e.exit_ns = bpf_ktime_get_boot_ns();
	/* do_exit calls exit_task_namespaces after the tracepoint: still set. */
	e.mntns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	bpf_map_update_elem(&exited, &tgid, &e, BPF_ANY);
	if (bpf_map_lookup_elem(&paths, &cgroup))
		return 0;
	p = bpf_map_lookup_elem(&scratch, &zero);
	if (!p)
		return 0;
	p->flags = read_cgroup_names(task, p->names, p->len) ? KSCMP_CGPATH_TRUNCATED : 0;
	bpf_map_update_elem(&paths, &cgroup, p, BPF_NOEXIST);
	return 0;
}
