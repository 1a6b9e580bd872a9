package merge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kubearmor/kscmp/api"
)

// OCI returns the rule set as the seccomp profile that runc and crun read
// (the runtime-spec LinuxSeccomp, which is also the Docker/containerd
// profile format): one entry per action, names sorted, actions from the
// weakest to the strongest.
func (r *RuleSet) OCI() *specs.LinuxSeccomp {
	prof := &specs.LinuxSeccomp{DefaultAction: specs.LinuxSeccompAction(r.DefaultAction.SeccompAction())}
	for _, a := range r.Arches {
		prof.Architectures = append(prof.Architectures, specs.Arch(a.OCI()))
	}
	if r.LogRefusals {
		prof.Flags = []specs.LinuxSeccompFlag{FlagLog}
	}
	for _, act := range api.Actions {
		names := r.Names(act)
		if len(names) == 0 || (act == api.ActionAllow && !r.AllowList()) {
			continue
		}
		prof.Syscalls = append(prof.Syscalls, specs.LinuxSyscall{
			Names:  names,
			Action: specs.LinuxSeccompAction(act.SeccompAction()),
		})
	}
	return prof
}

// FlagLog is the OCI seccomp flag for SECCOMP_FILTER_FLAG_LOG: the kernel
// then logs every call the filter refuses with an error (SCMP_ACT_ERRNO,
// Block) to the audit subsystem, as it always logs kills and SCMP_ACT_LOG,
// so `kscmp violations` sees Block refusals too.
const FlagLog specs.LinuxSeccompFlag = "SECCOMP_FILTER_FLAG_LOG"

// TakesLogFlag reports whether the runtime accepts the OCI seccomp flags
// field with FlagLog: crun does (1.8.1, the recorded version); runc 1.1.5
// refuses to start a container whose profile carries it, and a profile for
// any runtime must start under runc too.
func (r Runtime) TakesLogFlag() bool { return r == RuntimeCrun }

// refuses reports whether the rule set can refuse a call with an error:
// its default or one of its rules is Block.
func (r *RuleSet) refuses() bool {
	return r.DefaultAction.Canonical() == api.ActionBlock || len(r.Names(api.ActionBlock)) > 0
}

// MarshalOCI returns the OCI profile as indented JSON with a trailing newline:
// the same rule set always gives the same bytes.
func (r *RuleSet) MarshalOCI() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r.OCI()); err != nil {
		return nil, fmt.Errorf("encode OCI seccomp profile: %w", err)
	}
	return buf.Bytes(), nil
}

// ParseOCI reads an OCI/Docker seccomp profile back into a rule set, so it
// can be explained or compiled to another format. Every system call gets one
// source of kind SourceProfile named file. Profiles with argument conditions,
// or actions kscmp does not produce, are refused: kscmp cannot enforce them
// faithfully.
func ParseOCI(data []byte, file string) (*RuleSet, error) {
	var prof specs.LinuxSeccomp
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&prof); err != nil {
		return nil, fmt.Errorf("%s: not an OCI seccomp profile: %w", file, err)
	}
	def, ok := api.ActionFromSeccomp(string(prof.DefaultAction))
	if !ok || (def != api.ActionAllow && def != api.ActionBlock) {
		return nil, fmt.Errorf("%s: defaultAction: %q: want SCMP_ACT_ERRNO or SCMP_ACT_ALLOW", file, prof.DefaultAction)
	}
	rs := &RuleSet{DefaultAction: def}
	for i, a := range prof.Architectures {
		arch, ok := api.ArchFromOCI(string(a))
		if !ok {
			return nil, fmt.Errorf("%s: architectures[%d]: %q: unknown architecture", file, i, a)
		}
		if !slices.Contains(rs.Arches, arch) {
			rs.Arches = append(rs.Arches, arch)
		}
	}
	slices.SortFunc(rs.Arches, func(a, b api.Arch) int { return a.Index() - b.Index() })
	index := make(map[string]int)
	for i, sc := range prof.Syscalls {
		act, ok := api.ActionFromSeccomp(string(sc.Action))
		if !ok {
			return nil, fmt.Errorf("%s: syscalls[%d].action: %q: not supported (want SCMP_ACT_ALLOW, _LOG, _ERRNO or _KILL_PROCESS)", file, i, sc.Action)
		}
		if len(sc.Args) > 0 {
			return nil, fmt.Errorf("%s: syscalls[%d].args: argument conditions are not supported", file, i)
		}
		if sc.ErrnoRet != nil && *sc.ErrnoRet != 1 {
			return nil, fmt.Errorf("%s: syscalls[%d].errnoRet: %d: only EPERM (1) is supported", file, i, *sc.ErrnoRet)
		}
		for j, name := range sc.Names {
			if !api.SyscallKnown(name, rs.Arches) {
				return nil, fmt.Errorf("%s: syscalls[%d].names[%d]: %q: unknown system call", file, i, j, name)
			}
			src := Source{Kind: SourceProfile, Name: file, Action: act}
			if k, dup := index[name]; dup {
				e := &rs.Syscalls[k]
				if act.Precedence() > e.Action.Precedence() {
					e.Action = act
				}
				e.Sources = append(e.Sources, src)
				continue
			}
			index[name] = len(rs.Syscalls)
			rs.Syscalls = append(rs.Syscalls, Syscall{Name: name, Action: act, Sources: []Source{src}})
		}
	}
	slices.SortFunc(rs.Syscalls, func(a, b Syscall) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return rs, nil
}
