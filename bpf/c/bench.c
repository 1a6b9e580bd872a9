//go:build ignore

/* bench.c: empty programs on the recorder's hooks. They measure the floor: the
 * cost of having any program attached to sys_enter. Used only by the overhead
 * benchmark. */

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/sys_enter")
int BPF_PROG(empty_btf, struct pt_regs *regs, long id)
{
	return 0;
}

SEC("raw_tp/sys_enter")
int BPF_PROG(empty_raw, struct pt_regs *regs, long id)
{
	return 0;
}

/* The floor of a sys_exit program (exiterr.c). */
SEC("tp_btf/sys_exit")
int BPF_PROG(empty_exit_btf, struct pt_regs *regs, long ret)
{
	return 0;
}
