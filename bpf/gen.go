package bpf

// The objects are committed: building kscmp needs no clang. Regenerate them
// with `go generate ./bpf/...` (Debian: clang, llvm, libbpf-dev). vmlinux.h is
// refreshed separately by c/gen-vmlinux.sh. TestGeneratedCurrent checks that
// sources.sha256 matches the sources and TestGeneratedReproducible rebuilds
// the objects and compares them byte for byte.

//go:generate go tool bpf2go -go-package bpf -tags linux -target amd64,arm64 -type new_key_event -type syscall_set -type arg_set Recorder c/recorder.c -- -O2 -mcpu=v3 -Wall -Werror -Ic
//go:generate go tool bpf2go -go-package bpf -tags linux -target amd64,arm64 Bench c/bench.c -- -O2 -mcpu=v3 -Wall -Werror -Ic
//go:generate go tool bpf2go -go-package bpf -tags linux -target amd64,arm64 -type exit_refused -type exit_key -type exit_count ExitErr c/exiterr.c -- -O2 -mcpu=v3 -Wall -Werror -Ic
//go:generate go tool bpf2go -go-package bpf -tags linux -target amd64,arm64 -type exit_record -type cgroup_path Exited c/exited.c -- -O2 -mcpu=v3 -Wall -Werror -Ic
//go:generate sh -c "sha256sum gen.go c/recorder.c c/recorder.h c/cgpath.h c/bench.c c/exiterr.c c/exiterr.h c/exited.c c/exited.h c/vmlinux.h > sources.sha256"
