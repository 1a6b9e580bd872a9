/* cgpath.h: reading a task's cgroup v2 path in the kernel, shared by
 * recorder.c (the path of a new workload) and exited.c (the path of a
 * process that exits under a seccomp filter). Include after vmlinux.h and
 * the libbpf headers. */
#ifndef KSCMP_CGPATH_H
#define KSCMP_CGPATH_H

#include "recorder.h" /* KSCMP_NAME_READ, KSCMP_CGROUP_BUF, KSCMP_PATH_DEPTH */

/* kernfs_node before 6.15 named its parent "parent". */
struct kernfs_node___pre615 {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

static __always_inline struct kernfs_node *kn_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(kn->__parent))
		return BPF_CORE_READ(kn, __parent);
	return BPF_CORE_READ((struct kernfs_node___pre615 *)kn, parent);
}

/* The path walks keep their write offset in the caller's buffer and reload
 * it through a volatile read: the verifier then sees an unknown but bounded
 * offset, so the states of all paths through one iteration are equal and
 * pruned, instead of growing with every combination of branches. */
#define RELOAD(x) (*(volatile typeof(x) *)&(x))

/* read_cgroup_names stores the components of the task's cgroup v2 path into
 * buf (KSCMP_CGROUP_BUF + KSCMP_NAME_READ bytes), leaf first, each
 * NUL-terminated, and their length in *len. It returns 0, or 1 when the path
 * was too deep or long and is cut. A macro, not a function: buf and len stay
 * fields of the caller's object (a ring buffer record, a map value), whose
 * bounds the verifier then knows. */
#define read_cgroup_names(task, buf, len)                                             \
	({                                                                            \
		struct kernfs_node *kn__ = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn); \
		struct kernfs_node *parent__;                                         \
		int cut__ = 1;                                                        \
		__u32 off__;                                                          \
		long n__;                                                             \
		(len) = 0;                                                            \
		for (int i__ = 0; i__ < KSCMP_PATH_DEPTH; i__++) {                    \
			if (!kn__) {                                                  \
				cut__ = 0;                                            \
				break;                                                \
			}                                                             \
			parent__ = kn_parent(kn__);                                   \
			if (!parent__) { /* the root, named "/": complete */          \
				cut__ = 0;                                            \
				break;                                                \
			}                                                             \
			off__ = RELOAD(len);                                          \
			if (off__ >= KSCMP_CGROUP_BUF)                                \
				break;                                                \
			n__ = bpf_probe_read_kernel_str(&(buf)[off__], KSCMP_NAME_READ, \
							BPF_CORE_READ(kn__, name));   \
			if (n__ <= 0)                                                 \
				break;                                                \
			(len) = off__ + n__;                                          \
			kn__ = parent__;                                              \
		}                                                                     \
		cut__;                                                                \
	})

#endif
