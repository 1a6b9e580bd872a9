package api

import (
	"fmt"
	"slices"

	"github.com/elastic/go-seccomp-bpf/arch"
)

// Arch names a system call ABI.
//
// +kubebuilder:validation:Enum=x86_64;x86;x32;aarch64;arm
type Arch string

// The ABIs kscmp knows, in their canonical order.
const (
	ArchX86_64  Arch = "x86_64"
	ArchX86     Arch = "x86"
	ArchX32     Arch = "x32"
	ArchAARCH64 Arch = "aarch64"
	ArchARM     Arch = "arm"
)

// Arches lists every known ABI in canonical order.
var Arches = [...]Arch{ArchX86_64, ArchX86, ArchX32, ArchAARCH64, ArchARM}

// Family is a node's architecture family, as Go and Kubernetes name it.
type Family string

// The families kscmp supports.
const (
	FamilyAMD64 Family = "amd64"
	FamilyARM64 Family = "arm64"
)

// Arches returns the ABIs a node of the family runs.
func (f Family) Arches() ([]Arch, error) {
	switch f {
	case FamilyAMD64:
		return []Arch{ArchX86_64, ArchX86, ArchX32}, nil
	case FamilyARM64:
		return []Arch{ArchAARCH64, ArchARM}, nil
	}
	return nil, fmt.Errorf("unknown architecture family %q (want amd64 or arm64)", string(f))
}

// Native returns the family's native ABI.
func (f Family) Native() Arch {
	if f == FamilyARM64 {
		return ArchAARCH64
	}
	return ArchX86_64
}

// Valid reports whether a is a known ABI.
func (a Arch) Valid() bool { return slices.Contains(Arches[:], a) }

// Index is a's position in the canonical order, or -1.
func (a Arch) Index() int { return slices.Index(Arches[:], a) }

// OCI returns the OCI/libseccomp name of the ABI ("SCMP_ARCH_X86_64").
func (a Arch) OCI() string {
	switch a {
	case ArchX86_64:
		return "SCMP_ARCH_X86_64"
	case ArchX86:
		return "SCMP_ARCH_X86"
	case ArchX32:
		return "SCMP_ARCH_X32"
	case ArchAARCH64:
		return "SCMP_ARCH_AARCH64"
	case ArchARM:
		return "SCMP_ARCH_ARM"
	}
	return ""
}

// ArchFromOCI is the inverse of Arch.OCI.
func ArchFromOCI(s string) (Arch, bool) {
	for _, a := range Arches {
		if a.OCI() == s {
			return a, true
		}
	}
	return "", false
}

// Systemd returns systemd's name of the ABI, as SystemCallArchitectures=
// takes it.
func (a Arch) Systemd() string {
	switch a {
	case ArchX86_64:
		return "x86-64"
	case ArchAARCH64:
		return "arm64"
	}
	return string(a)
}

// Table returns the ABI's system call table (from elastic/go-seccomp-bpf).
func (a Arch) Table() *arch.Info {
	switch a {
	case ArchX86_64:
		return arch.X86_64
	case ArchX86:
		return arch.I386
	case ArchX32:
		return arch.X32
	case ArchAARCH64:
		return arch.AARCH64
	case ArchARM:
		return arch.ARM
	}
	return nil
}

// aliases are names libseccomp and the C libraries use that the
// go-seccomp-bpf tables spell differently: aarch64's call 79 is newfstatat
// (asm-generic's 64-bit name), which the table lists as fstatat.
var aliases = map[Arch]map[string]string{
	ArchAARCH64: {"newfstatat": "fstatat"},
}

// Has reports whether name is a system call of the ABI.
func (a Arch) Has(name string) bool {
	t := a.Table()
	if t == nil {
		return false
	}
	if _, ok := t.SyscallNames[name]; ok {
		return true
	}
	if alt, ok := aliases[a][name]; ok {
		_, ok = t.SyscallNames[alt]
		return ok
	}
	return false
}

// SyscallKnown reports whether name is a system call of at least one of the
// ABIs; with no ABIs, of any ABI kscmp knows.
func SyscallKnown(name string, arches []Arch) bool {
	if len(arches) == 0 {
		arches = Arches[:]
	}
	for _, a := range arches {
		if a.Has(name) {
			return true
		}
	}
	return false
}
