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
// profile format): per action, from the weakest to the strongest, one entry
// of the calls it takes whatever their arguments (names sorted), then one
// entry per call and disjoint argument region (see Syscall.regions): no
// two entries ever match one call, so libseccomp's way of merging
// overlapping rules never decides. In complain mode the default is
// SCMP_ACT_LOG: what the allow-list does not list runs, and the kernel logs
// it. The error is ErrTooComplex.
func (r *RuleSet) OCI() (*specs.LinuxSeccomp, error) {
	prof := &specs.LinuxSeccomp{DefaultAction: specs.LinuxSeccompAction(r.DefaultAction.SeccompAction())}
	for _, a := range r.Arches {
		prof.Architectures = append(prof.Architectures, specs.Arch(a.OCI()))
	}
	if r.LogRefusals {
		prof.Flags = []specs.LinuxSeccompFlag{FlagLog}
	}
	plain := make(map[api.Action][]string)
	cond := make(map[api.Action][]specs.LinuxSyscall)
	for i := range r.Syscalls {
		s := &r.Syscalls[i]
		regs, err := s.regions(r.DefaultAction)
		if err != nil {
			return nil, err
		}
		for _, reg := range regs {
			if s.Errno != 0 {
				errno := uint(s.Errno)
				cond[reg.action] = append(cond[reg.action], specs.LinuxSyscall{
					Names: []string{s.Name}, Action: specs.LinuxSeccompAction(reg.action.SeccompAction()), ErrnoRet: &errno})
				continue
			}
			if len(reg.terms) == 1 && len(reg.terms[0]) == 0 {
				plain[reg.action] = append(plain[reg.action], s.Name)
				continue
			}
			for _, t := range reg.terms {
				cond[reg.action] = append(cond[reg.action], specs.LinuxSyscall{
					Names: []string{s.Name}, Action: specs.LinuxSeccompAction(reg.action.SeccompAction()), Args: ociArgs(t)})
			}
		}
	}
	for _, act := range api.Actions {
		if names := plain[act]; len(names) > 0 {
			prof.Syscalls = append(prof.Syscalls, specs.LinuxSyscall{
				Names:  names,
				Action: specs.LinuxSeccompAction(act.SeccompAction()),
			})
		}
		prof.Syscalls = append(prof.Syscalls, cond[act]...)
	}
	return prof, nil
}

// ociArgs writes a conjunction as runtime-spec argument comparisons;
// SCMP_CMP_MASKED_EQ takes the mask in value and the value in valueTwo.
func ociArgs(t []api.Resolved) []specs.LinuxSeccompArg {
	out := make([]specs.LinuxSeccompArg, len(t))
	for i, c := range t {
		out[i] = specs.LinuxSeccompArg{Index: uint(c.Index), Value: c.Value, Op: specs.LinuxSeccompOperator(c.Operator.OCI())}
		if c.Operator == api.OpMaskedEqual {
			out[i].Value, out[i].ValueTwo = c.Mask, c.Value
		}
	}
	return out
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
	prof, err := r.OCI()
	if err != nil {
		return nil, err
	}
	if err := enc.Encode(prof); err != nil {
		return nil, fmt.Errorf("encode OCI seccomp profile: %w", err)
	}
	return buf.Bytes(), nil
}

// ParseOCI reads an OCI/Docker seccomp profile back into a rule set, so it
// can be explained or compiled to another format. Every system call gets one
// source of kind SourceProfile named file. An entry with argument
// conditions becomes a conditional action of its calls; where entries
// overlap, the strongest action wins (kscmp's own profiles never overlap).
// Actions kscmp does not produce are refused: kscmp cannot enforce them
// faithfully.
func ParseOCI(data []byte, file string) (*RuleSet, error) {
	var prof specs.LinuxSeccomp
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&prof); err != nil {
		return nil, fmt.Errorf("%s: not an OCI seccomp profile: %w", file, err)
	}
	def, ok := api.ActionFromSeccomp(string(prof.DefaultAction))
	if !ok || def == api.ActionKill {
		return nil, fmt.Errorf("%s: defaultAction: %q: want SCMP_ACT_ERRNO, SCMP_ACT_LOG or SCMP_ACT_ALLOW", file, prof.DefaultAction)
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
		args, err := parseOCIArgs(sc.Args)
		if err != nil {
			return nil, fmt.Errorf("%s: syscalls[%d].%w", file, i, err)
		}
		errno := 0
		if sc.ErrnoRet != nil && *sc.ErrnoRet != 1 {
			if *sc.ErrnoRet != ENOSYS || act != api.ActionBlock || len(args) > 0 {
				return nil, fmt.Errorf("%s: syscalls[%d].errnoRet: %d: only EPERM (1), or ENOSYS (38) for a call refused whatever its arguments, is supported", file, i, *sc.ErrnoRet)
			}
			errno = ENOSYS
		}
		for j, name := range sc.Names {
			if !api.SyscallKnown(name, rs.Arches) {
				return nil, fmt.Errorf("%s: syscalls[%d].names[%d]: %q: unknown system call", file, i, j, name)
			}
			src := Source{Kind: SourceProfile, Name: file, Action: act}
			if len(args) > 0 {
				src.Condition = describeArgs(args)
				k, dup := index[name]
				if !dup {
					k = len(rs.Syscalls)
					index[name] = k
					rs.Syscalls = append(rs.Syscalls, Syscall{Name: name})
				}
				e := &rs.Syscalls[k]
				e.Conditional = append(e.Conditional, Conditional{Action: act, Args: args})
				e.Sources = append(e.Sources, src)
				continue
			}
			if k, dup := index[name]; dup {
				e := &rs.Syscalls[k]
				if act.Precedence() > e.Action.Precedence() {
					e.Action = act
				}
				if e.Action == api.ActionBlock && errno != 0 {
					e.Errno = errno
				}
				e.Sources = append(e.Sources, src)
				continue
			}
			index[name] = len(rs.Syscalls)
			rs.Syscalls = append(rs.Syscalls, Syscall{Name: name, Action: act, Errno: errno, Sources: []Source{src}})
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
	for i := range rs.Syscalls {
		settleConditional(&rs.Syscalls[i])
		if _, err := rs.Syscalls[i].regions(rs.DefaultAction); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	return rs, nil
}

// parseOCIArgs reads runtime-spec argument comparisons (SCMP_CMP_MASKED_EQ:
// mask in value, value in valueTwo). The error names the field.
func parseOCIArgs(in []specs.LinuxSeccompArg) ([]api.Resolved, error) {
	var out []api.Resolved
	for j, a := range in {
		op, ok := api.ArgOperatorFromOCI(string(a.Op))
		if !ok {
			return nil, fmt.Errorf("args[%d].op: %q: unknown operator (want SCMP_CMP_EQ, _NE, _LT, _LE, _GT, _GE or _MASKED_EQ)", j, a.Op)
		}
		if a.Index > 5 {
			return nil, fmt.Errorf("args[%d].index: %d: want 0 to 5", j, a.Index)
		}
		c := api.Resolved{Index: int(a.Index), Operator: op, Value: a.Value}
		if op == api.OpMaskedEqual {
			c.Mask, c.Value = a.Value, a.ValueTwo
		}
		out = append(out, c)
	}
	return out, nil
}
