package report

import (
	"strings"

	"github.com/kubearmor/kscmp/api"
)

// ABIName returns the report's name of a policy architecture: the name of
// its system call table in elastic/go-seccomp-bpf (x86_64, i386, x32,
// aarch64, arm), which is also the name the recorder gives the sets it reads
// with that table. It returns "" for an unknown architecture. Deriving the
// names from api.Arch's tables keeps one table of ABIs for both formats.
func ABIName(a api.Arch) string {
	if t := a.Table(); t != nil {
		return t.Name
	}
	return ""
}

// ArchOf maps a report's ABI name to the policy architecture (i386 → x86;
// the others are spelled alike). It reports false for a name no known ABI
// has.
func ArchOf(abi string) (api.Arch, bool) {
	for _, a := range api.Arches {
		if abi != "" && ABIName(a) == abi {
			return a, true
		}
	}
	return "", false
}

// abiNames lists the report's ABI names for messages: "x86_64, i386, x32,
// aarch64 or arm".
func abiNames() string {
	names := make([]string, len(api.Arches))
	for i, a := range api.Arches {
		names[i] = ABIName(a)
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
