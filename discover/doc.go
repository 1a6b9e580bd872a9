// Package discover learns which syscalls each workload makes.
//
// The Recorder loads the in-kernel recorder of package bpf: per workload key
// (a mount namespace, or the cgroup of a host task), one set of syscall
// numbers per ABI (native, 32-bit compat, x32), deduplicated in the kernel.
// Run delivers one NewKey event per new key, with the executable and cgroup
// paths the kernel saw and what /proc said when the event was read; Snapshot
// returns the sets, named with each ABI's own syscall table; Lost reports
// whatever could not be recorded.
//
// The recorder sits on sys_enter, after seccomp: calls that a profile already
// denies are never seen. Record workloads that run without a profile.
package discover
