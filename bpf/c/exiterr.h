/* exiterr.h: the layout shared by exiterr.c and user space
 * (discover/violations, through the bpf2go types and bpf/layout.go). */
#ifndef KSCMP_EXITERR_H
#define KSCMP_EXITERR_H

#include "recorder.h" /* KSCMP_NR_BITS, KSCMP_NR_WORDS */

/* A watched cgroup's refused set: the native-ABI calls its compiled profile
 * refuses with EPERM whatever their arguments, one bit per call number. */
struct exit_refused {
	__u64 bits[KSCMP_NR_WORDS];
};

/* A counted refusal: the cgroup (its id, the cgroup v2 directory's inode)
 * and the native call number. */
struct exit_key {
	__u64 cgroup;
	__u32 nr;
	__u32 pad;
};

/* How often, first and last (CLOCK_BOOTTIME ns), and the last caller's
 * thread group id. */
struct exit_count {
	__u64 count;
	__u64 first_ns;
	__u64 last_ns;
	__u32 tgid;
	__u32 pad;
};

#endif
