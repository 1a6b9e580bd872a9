/* exited.h: the layout shared by exited.c and user space
 * (discover/violations, through the bpf2go types and bpf/layout.go). */
#ifndef KSCMP_EXITED_H
#define KSCMP_EXITED_H

#include "recorder.h" /* KSCMP_CGROUP_BUF, KSCMP_NAME_READ */

/* The last exit of a thread group under seccomp: its cgroup (the
 * cgroup v2 directory's inode, bpf_get_current_cgroup_id), when it exited
 * (CLOCK_BOOTTIME ns) and its mount namespace's inode (user space tells a
 * container's process from the host's by it, as /proc/<pid>/ns/mnt would). Keyed by the thread group id, which is the pid= of
 * the kernel's seccomp audit record (audit_log_task: task_tgid_nr). */
struct exit_record {
	__u64 cgroup;
	__u64 exit_ns;
	__u32 mntns;
	__u32 pad;
};

/* Flags of cgroup_path.flags. */
#define KSCMP_CGPATH_TRUNCATED (1U << 0)

/* A cgroup's v2 path, as read_cgroup_names (cgpath.h) stores it: the
 * components leaf first, each NUL-terminated, len bytes in all. */
struct cgroup_path {
	__u16 len;
	__u16 flags;
	__u32 pad;
	char names[KSCMP_CGROUP_BUF + KSCMP_NAME_READ];
};

#endif
