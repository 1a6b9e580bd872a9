package violations

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubearmor/kscmp/api/report"
)

// DefaultRuntimeRoots are the state directories runc keeps its containers
// in: its own default and containerd's shim (per containerd namespace).
var DefaultRuntimeRoots = []string{"/run/runc", "/run/containerd/runc/*"}

// ociSeccomp is the part of an OCI config's linux.seccomp the refused set
// is read from (runtime-spec config-linux.md, "Seccomp").
type ociSeccomp struct {
	DefaultAction   string `json:"defaultAction"`
	DefaultErrnoRet *uint  `json:"defaultErrnoRet"`
	Syscalls        []struct {
		Names    []string          `json:"names"`
		Action   string            `json:"action"`
		ErrnoRet *uint             `json:"errnoRet"`
		Args     []json.RawMessage `json:"args"`
	} `json:"syscalls"`
}

// errnoEPERM is EPERM's number (include/uapi/asm-generic/errno-base.h), the
// errno SCMP_ACT_ERRNO returns when the profile names none (runc and crun
// default to it).
const errnoEPERM = 1

// RefusedNumbers returns the native-ABI (abi: "x86_64", "aarch64") call
// numbers that an OCI seccomp profile (linux.seccomp, JSON) refuses with
// EPERM whatever the arguments: a rule with argument conditions refuses
// only some invocations, so its calls are left out (an EPERM of theirs may
// be genuine), and so are the calls any such rule names under an EPERM
// default. Unknown names are skipped (a profile may name calls of newer
// kernels).
func RefusedNumbers(profile []byte, abi string) ([]int, error) {
	var p ociSeccomp
	if err := json.Unmarshal(profile, &p); err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	a, ok := report.ArchOf(abi)
	if !ok {
		return nil, fmt.Errorf("seccomp profile: ABI %q: unknown", abi)
	}
	table := a.Table()
	eperm := func(action string, ret *uint) bool {
		return action == "SCMP_ACT_ERRNO" && (ret == nil || *ret == errnoEPERM)
	}
	refused := map[int]bool{}
	if eperm(p.DefaultAction, p.DefaultErrnoRet) {
		for nr := range table.SyscallNumbers {
			refused[nr] = true
		}
	}
	for _, r := range p.Syscalls {
		for _, name := range r.Names {
			nr, ok := table.SyscallNames[name]
			switch {
			case !ok:
			case len(r.Args) > 0:
				delete(refused, nr)
			case eperm(r.Action, r.ErrnoRet):
				refused[nr] = true
			default:
				delete(refused, nr)
			}
		}
	}
	// A call some rule refuses only with some arguments stays out, also
	// when another rule refuses it unconditionally before it.
	for _, r := range p.Syscalls {
		if len(r.Args) > 0 {
			for _, name := range r.Names {
				delete(refused, table.SyscallNames[name])
			}
		}
	}
	out := make([]int, 0, len(refused))
	for nr := range refused {
		out = append(out, nr)
	}
	return out, nil
}

// runcState is the part of runc's state.json (libcontainer) that names a
// container's bundle and cgroup.
type runcState struct {
	Config struct {
		Labels []string `json:"labels"`
	} `json:"config"`
	CgroupPaths map[string]string `json:"cgroup_paths"`
}

// RuntimeWatches returns a WatchSource that lists runc's containers under
// the state directories roots (globs, e.g. DefaultRuntimeRoots): each one
// whose bundle's config.json has a seccomp profile refusing a call with
// EPERM, in its cgroup v2 path.
func RuntimeWatches(roots []string) WatchSource {
	abi := nativeABI()
	return func() ([]Watch, error) {
		var out []Watch
		for _, root := range roots {
			states, err := filepath.Glob(filepath.Join(root, "*", "state.json"))
			if err != nil {
				return nil, fmt.Errorf("runtime root %s: %w", root, err)
			}
			for _, st := range states {
				w, err := runcWatch(st, abi)
				switch {
				case errors.Is(err, fs.ErrNotExist):
					// The container ended while it was read.
				case err != nil:
					return nil, err
				case w != nil:
					out = append(out, *w)
				}
			}
		}
		return out, nil
	}
}

// runcWatch reads one runc state file: nil when the container has no
// profile that refuses a call with EPERM.
func runcWatch(state, abi string) (*Watch, error) {
	b, err := os.ReadFile(state)
	if err != nil {
		return nil, err
	}
	var st runcState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", state, err)
	}
	var bundle string
	for _, l := range st.Config.Labels {
		if v, ok := strings.CutPrefix(l, "bundle="); ok {
			bundle = v
		}
	}
	cg := st.CgroupPaths[""]
	if bundle == "" || cg == "" {
		return nil, nil // not runc's format, or cgroup v1: not watched
	}
	cfgPath := filepath.Join(bundle, "config.json")
	b, err = os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Linux struct {
			Seccomp json.RawMessage `json:"seccomp"`
		} `json:"linux"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	if len(cfg.Linux.Seccomp) == 0 || string(cfg.Linux.Seccomp) == "null" {
		return nil, nil
	}
	nrs, err := RefusedNumbers(cfg.Linux.Seccomp, abi)
	if err != nil {
		return nil, fmt.Errorf("%s: linux.seccomp: %w", cfgPath, err)
	}
	if len(nrs) == 0 {
		return nil, nil
	}
	return &Watch{Cgroup: trimCgroup(cg), Refused: nrs}, nil
}
