#!/bin/sh
# gen-vmlinux.sh regenerates vmlinux.h from the running kernel's BTF.
#
# It is deliberately not part of `go generate`: the committed objects must not
# depend on the kernel of the machine that regenerates them. The programs use
# CO-RE (preserve_access_index), so any recent vmlinux.h works; refresh it only
# when a newer kernel type is needed, then run `go generate ./bpf/...`.
set -eu
cd "$(dirname "$0")"
bpftool btf dump file "${1:-/sys/kernel/btf/vmlinux}" format c > vmlinux.h.tmp
mv vmlinux.h.tmp vmlinux.h
