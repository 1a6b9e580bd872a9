// Package auditlog is kscmp's one reader of the kernel's audit records: the
// audit netlink socket, its messages and the seccomp records (type 1326,
// AUDIT_SECCOMP) that a filter's log action (SCMP_ACT_LOG, systemd's
// SystemCallLog=, the kill actions, SCMP_ACT_ERRNO under
// SECCOMP_FILTER_FLAG_LOG) makes. The `kscmp violations` monitor
// (discover/violations) and the complain-mode proofs in the tests (Listen,
// Wait) both read through it.
//
// It listens on the audit netlink socket's read-only multicast group
// (AUDIT_NLGRP_READLOG) rather than reading /dev/kmsg: every record reaches
// the group, whether or not an audit daemon runs, while the kernel prints a
// record to its log only when no daemon is registered and only as often as
// printk's rate limit lets it (a busy machine loses some). Root (or
// CAP_AUDIT_READ) is needed, and the records are the host's: a container or
// a systemd-nspawn machine in its own namespaces logs to the same kernel.
package auditlog
