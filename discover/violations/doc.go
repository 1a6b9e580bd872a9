// Package violations watches what seccomp enforcement refuses (Block, Kill)
// and logs (Audit) on this node or host, and reports it as a
// violation.Report: per workload, system call, ABI and action, with counts.
//
// Source: the kernel's audit records of type SECCOMP (1326), read from the
// audit netlink multicast group (AUDIT_NLGRP_READLOG). The kernel copies
// every record there beside auditd's socket, also when no auditd runs and
// audit is disabled (auditctl -e 0): then it writes the records to its log
// only through a rate-limited printk, but the multicast copy is not rate
// limited. The socket and the record parser are package internal/auditlog's,
// the one audit reader kscmp has. By default nothing is loaded into the
// kernel and nothing sits on the system call path: the kernel writes a record only where a filter already
// decided to log it (SCMP_ACT_LOG, the kill actions, and SCMP_ACT_ERRNO
// when the filter carries SECCOMP_FILTER_FLAG_LOG). A Block under runc
// 1.1.5, which refuses that flag, is not seen by audit: Options.ExitErrors
// (off by default) counts it with an eBPF program on sys_exit instead, for
// the cgroups a WatchSource lists (exiterr.go, runtimes.go).
//
// Workloads are named with package discover's identity code (cgroup path,
// container id, systemd unit, and the pod through a discover.PodLookup), so
// a violation and an observation of one workload carry equal identities.
// The package depends on discover and api/violation, never the other way.
//
// Floods are counted, not kept one by one: memory is bounded by
// Options.MaxEntries (entries past it are counted as lost.overflow) and the
// identity cache; the kernel's drops are counted from the socket (ENOBUFS)
// and from the audit subsystem's own lost counter.
package violations
