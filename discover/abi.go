package discover

import (
	"fmt"
	"runtime"

	"github.com/elastic/go-seccomp-bpf/arch"

	"github.com/kubearmor/kscmp/bpf"
)

// ABI is the system call convention a recorded call was made with. Each ABI
// has its own syscall numbers, so a number is only meaningful with its ABI.
type ABI int

// The ABIs the recorder tells apart.
const (
	// ABINative is the kernel's own ABI: x86_64 on amd64, aarch64 on arm64.
	ABINative ABI = bpf.ABINative
	// ABICompat is the 32-bit compat ABI: i386 on amd64, arm (AArch32) on
	// arm64.
	ABICompat ABI = bpf.ABICompat
	// ABIX32 is the x32 ABI of amd64 (64-bit registers, 32-bit pointers).
	ABIX32 ABI = bpf.ABIX32
)

// String returns "native", "compat" or "x32".
func (a ABI) String() string {
	switch a {
	case ABINative:
		return "native"
	case ABICompat:
		return "compat"
	case ABIX32:
		return "x32"
	}
	return fmt.Sprintf("abi(%d)", int(a))
}

// Arch returns the syscall table of the ABI on the architecture this program
// runs on (see ArchOf), or nil when that architecture has no such ABI.
func (a ABI) Arch() *arch.Info {
	return ArchOf(runtime.GOARCH, a)
}

// ArchOf returns the syscall table of abi on a kernel of the Go architecture
// goarch: on amd64, native is x86_64, compat is i386 and x32 is x32; on arm64,
// native is aarch64 and compat is arm. It returns nil for any other pair.
func ArchOf(goarch string, abi ABI) *arch.Info {
	switch goarch {
	case "amd64":
		switch abi {
		case ABINative:
			return arch.X86_64
		case ABICompat:
			return arch.I386
		case ABIX32:
			return arch.X32
		}
	case "arm64":
		switch abi {
		case ABINative:
			return arch.AARCH64
		case ABICompat:
			return arch.ARM
		}
	}
	return nil
}

// SyscallName returns the name of syscall number nr of abi on this machine's
// architecture. It reports false when the ABI's table has no such number.
func SyscallName(abi ABI, nr int) (string, bool) {
	info := abi.Arch()
	if info == nil {
		return "", false
	}
	name, ok := info.SyscallNumbers[nr]
	return name, ok
}
