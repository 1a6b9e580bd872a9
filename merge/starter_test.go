package merge

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kubearmor/kscmp/api"
)

// profile is an OCI profile read back: default action def, the names
// allowed, blocked and audited.
func profile(t *testing.T, def string, arches []string, allow, block, audit []string) *RuleSet {
	t.Helper()
	type entry struct {
		Names  []string `json:"names"`
		Action string   `json:"action"`
	}
	p := struct {
		DefaultAction string   `json:"defaultAction"`
		Architectures []string `json:"architectures,omitempty"`
		Syscalls      []entry  `json:"syscalls"`
	}{DefaultAction: def, Architectures: arches}
	for act, names := range map[string][]string{"SCMP_ACT_ALLOW": allow, "SCMP_ACT_ERRNO": block, "SCMP_ACT_LOG": audit} {
		if len(names) > 0 {
			p.Syscalls = append(p.Syscalls, entry{names, act})
		}
	}
	data, _ := json.Marshal(p)
	rs, err := ParseOCI(data, "p.json")
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// firstNames is every start-up entry's current name.
func firstNames(a api.Arch) []string {
	var out []string
	for _, alt := range StarterSyscalls(a) {
		out = append(out, alt[0])
	}
	return out
}

func TestStarterRefused(t *testing.T) {
	x86 := []string{"SCMP_ARCH_X86_64"}
	all := firstNames(api.ArchX86_64)
	if got := profile(t, "SCMP_ACT_ERRNO", x86, append(slices.Clone(all), "exit_group"), nil, nil).StarterRefused(api.ArchX86_64); len(got) != 0 {
		t.Errorf("an allow-list of the start-up set: refuses %v", got)
	}
	// Each one missing from an allow-list, or blocked in a deny-list, is
	// named, and only it.
	for i, name := range all {
		rest := slices.Delete(slices.Clone(all), i, i+1)
		if got := profile(t, "SCMP_ACT_ERRNO", x86, rest, nil, nil).StarterRefused(api.ArchX86_64); !reflect.DeepEqual(got, []string{name}) {
			t.Errorf("allow-list without %s: refused %v", name, got)
		}
		if got := profile(t, "SCMP_ACT_ALLOW", x86, nil, []string{name}, nil).StarterRefused(api.ArchX86_64); !reflect.DeepEqual(got, []string{name}) {
			t.Errorf("deny-list of %s: refused %v", name, got)
		}
	}
	// An older C library's name is enough; an audited call runs.
	older := []string{"execve", "mmap", "mprotect", "arch_prctl", "open", "read", "pread64", "close", "fstat"}
	if got := profile(t, "SCMP_ACT_ERRNO", x86, older, nil, nil).StarterRefused(api.ArchX86_64); len(got) != 0 {
		t.Errorf("an allow-list with fstat and open: refuses %v", got)
	}
	if got := profile(t, "SCMP_ACT_ERRNO", x86, all[1:], nil, []string{all[0]}).StarterRefused(api.ArchX86_64); len(got) != 0 {
		t.Errorf("%s audited: refused %v", all[0], got)
	}
	// The ABIs are the profile's; without any, the caller's native one.
	arm := []string{"SCMP_ARCH_AARCH64"}
	if got := profile(t, "SCMP_ACT_ERRNO", arm, firstNames(api.ArchAARCH64), nil, nil).StarterRefused(api.ArchX86_64); len(got) != 0 {
		t.Errorf("aarch64 needs no arch_prctl: refused %v", got)
	}
	none := profile(t, "SCMP_ACT_ERRNO", nil, []string{"read"}, nil, nil)
	if got := none.StarterRefused(api.ArchX86_64); !slices.Contains(got, "arch_prctl") || slices.Contains(got, "read") {
		t.Errorf("no ABI named, x86_64 native: refused %v", got)
	}
	if got := none.StarterRefused(api.ArchAARCH64); slices.Contains(got, "arch_prctl") {
		t.Errorf("no ABI named, aarch64 native: refused %v", got)
	}
	// The README's deny-wins example refuses the loader's calls.
	w := profile(t, "SCMP_ACT_ERRNO", x86, []string{"getpid", "read"}, []string{"mkdir", "write"}, nil).StarterWarning(api.ArchX86_64)
	if !strings.HasPrefix(w, "the profile refuses arch_prctl, close, execve, mmap, mprotect, newfstatat, openat, pread64, which every dynamically linked program calls") {
		t.Errorf("warning: %q", w)
	}
	if w := profile(t, "SCMP_ACT_ALLOW", x86, nil, []string{"mkdir"}, nil).StarterWarning(api.ArchX86_64); w != "" {
		t.Errorf("a deny-list of mkdir: warning %q", w)
	}
}
