package merge

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubearmor/kscmp/api"
)

// Target is one container (of a pod, or on a host) or one systemd service
// for which a profile is merged. A pod target has Namespace and Labels; a
// host target has Unit or ContainerName instead, and is selected only by
// host policies (selector.systemdUnits, selector.containerNames), whatever
// their namespace.
type Target struct {
	Namespace string
	Labels    map[string]string // the pod's labels
	Container string            // the container's name in the pod; "" matches only policies without a containers filter
	// Unit is a systemd service on a host ("nginx" means "nginx.service").
	Unit string
	// ContainerName is a container run without Kubernetes: docker's or
	// podman's name, runc's or crun's id.
	ContainerName string
	Family        api.Family // the node's family; "" is amd64
	// Runtime is the container runtime whose start-up set an allow-list
	// gets; "" is runc. A systemd unit has none: systemd installs the
	// filter itself just before it executes the service, so Runtime is
	// ignored for Unit targets.
	Runtime Runtime
}

// Host reports whether the target is a host workload.
func (t Target) Host() bool { return t.Unit != "" || t.ContainerName != "" }

// String describes the target for people.
func (t Target) String() string {
	keys := make([]string, 0, len(t.Labels))
	for k := range t.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		keys[i] = k + "=" + t.Labels[k]
	}
	switch {
	case t.Unit != "":
		return "systemd unit " + api.UnitName(t.Unit)
	case t.ContainerName != "":
		return "host container " + t.ContainerName
	}
	s := fmt.Sprintf("namespace %s, labels {%s}", t.Namespace, strings.Join(keys, ","))
	if t.Container != "" {
		s += ", container " + t.Container
	}
	return s
}

// Selects reports whether the policy applies to the target: same namespace,
// the selector matches the labels, and the containers filter (if any) names
// the container.
func Selects(p *api.KubeArmorSeccompPolicy, t Target) bool {
	if sel := &p.Spec.Selector; sel.Host() || t.Host() {
		return sel.Host() && t.Host() && hostMatches(sel, t)
	}
	if p.Namespace != t.Namespace {
		return false
	}
	if len(p.Spec.Containers) > 0 && !slices.Contains(p.Spec.Containers, t.Container) {
		return false
	}
	return selectorMatches(&p.Spec.Selector, t.Labels)
}

func hostMatches(s *api.Selector, t Target) bool {
	if t.Unit != "" {
		unit := api.UnitName(t.Unit)
		for _, u := range s.SystemdUnits {
			if api.UnitName(u) == unit {
				return true
			}
		}
	}
	return t.ContainerName != "" && slices.Contains(s.ContainerNames, t.ContainerName)
}

func selectorMatches(s *api.Selector, labels map[string]string) bool {
	if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
		return false // an empty selector selects nothing, never everything
	}
	for k, v := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		v, ok := labels[r.Key]
		switch r.Operator {
		case metav1.LabelSelectorOpIn:
			if !ok || !slices.Contains(r.Values, v) {
				return false
			}
		case metav1.LabelSelectorOpNotIn:
			if ok && slices.Contains(r.Values, v) {
				return false
			}
		case metav1.LabelSelectorOpExists:
			if !ok {
				return false
			}
		case metav1.LabelSelectorOpDoesNotExist:
			if ok {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// Set is an immutable, indexed set of valid policies: Merge finds the
// policies of a target without looking at the others. Build a new Set when
// the policies change.
type Set struct {
	policies []*api.KubeArmorSeccompPolicy
	byNS     map[string]*nsIndex
	host     []int // host policies (few: scanned)
}

type nsIndex struct {
	byLabel map[string][]int // "key\x00value" → policies indexed under that pair
	scan    []int            // policies without matchLabels
}

// NewSet indexes the policies. The policies must be valid (api.Validate) and
// are not copied: do not change them while the Set is in use.
func NewSet(policies []*api.KubeArmorSeccompPolicy) *Set {
	s := &Set{policies: policies, byNS: make(map[string]*nsIndex)}
	for i, p := range policies {
		if p.Spec.Selector.Host() {
			s.host = append(s.host, i)
			continue
		}
		ix := s.byNS[p.Namespace]
		if ix == nil {
			ix = &nsIndex{byLabel: make(map[string][]int)}
			s.byNS[p.Namespace] = ix
		}
		if len(p.Spec.Selector.MatchLabels) == 0 {
			ix.scan = append(ix.scan, i)
			continue
		}
		// A target must carry every matchLabels pair, so indexing under one
		// of them (the smallest key, for determinism) finds it.
		var key string
		for k := range p.Spec.Selector.MatchLabels {
			if key == "" || k < key {
				key = k
			}
		}
		pair := key + "\x00" + p.Spec.Selector.MatchLabels[key]
		ix.byLabel[pair] = append(ix.byLabel[pair], i)
	}
	return s
}

// Len returns the number of policies in the set.
func (s *Set) Len() int { return len(s.policies) }

// Select returns the policies that apply to the target, in the Set's order.
func (s *Set) Select(t Target) []*api.KubeArmorSeccompPolicy {
	if t.Host() {
		var out []*api.KubeArmorSeccompPolicy
		for _, i := range s.host {
			if Selects(s.policies[i], t) {
				out = append(out, s.policies[i])
			}
		}
		return out
	}
	ix := s.byNS[t.Namespace]
	if ix == nil {
		return nil
	}
	var idx []int
	for k, v := range t.Labels {
		idx = append(idx, ix.byLabel[k+"\x00"+v]...)
	}
	idx = append(idx, ix.scan...)
	slices.Sort(idx)
	var out []*api.KubeArmorSeccompPolicy
	for _, i := range idx {
		if Selects(s.policies[i], t) {
			out = append(out, s.policies[i])
		}
	}
	return out
}

// Merge computes the rule set of a target from the policies that select it.
// See the package documentation and Merge.
func (s *Set) Merge(t Target) (*RuleSet, error) {
	return mergeSelected(s.Select(t), t)
}

// Merge computes the rule set of a target from every policy that selects it:
//
//   - deny wins: when policies give one system call different actions, the
//     strongest applies (Kill > Block > Audit > Allow);
//   - the default action is the strongest of the policies' defaults: an
//     allow-list policy's spec.seccomp.defaultAction (Block unless Audit,
//     complain mode), a deny-list's Allow; so Block (EPERM) when any
//     applicable allow-list blocks, Audit when all of them only log, Allow
//     when no rule allows; Block, Kill and Audit rules stay listed either way;
//   - architectures are the union of the policies' arch lists, or the
//     target family's when no policy gives one;
//   - an allow-list gets the runtime's start-up set and KernelSyscalls,
//     shown as their sources; with RuntimeNone it is exactly the policies'
//     rules (the design note's mapping); a systemd unit's allow-list gets
//     KernelSyscalls only.
//
// The policies must be valid (api.Validate). The result does not depend on
// their order; with no applicable policy it is Empty.
func Merge(policies []*api.KubeArmorSeccompPolicy, t Target) (*RuleSet, error) {
	var sel []*api.KubeArmorSeccompPolicy
	for _, p := range policies {
		if Selects(p, t) {
			sel = append(sel, p)
		}
	}
	return mergeSelected(sel, t)
}

// mergeSelected merges the policies already found to select t. It reads as
// the steps of a merge: check the target, collect every rule, settle the
// architectures, add the start-up sets an allow-list needs, and order the
// result; each step is a method of merger below.
func mergeSelected(sel []*api.KubeArmorSeccompPolicy, t Target) (*RuleSet, error) {
	familyArches, runtime, kernel, err := resolveTarget(t)
	if err != nil {
		return nil, err
	}
	if len(sel) == 0 {
		return &RuleSet{DefaultAction: api.ActionAllow, Arches: familyArches}, nil
	}
	m := newMerger(sel, runtime)
	arches, anyArch := m.collect(sel)
	m.architectures(arches, anyArch, familyArches)
	m.startupSets(runtime, kernel)
	rs := m.order()
	clone3ENOSYS(rs)
	if t.Unit != "" {
		// Compiled to a drop-in: say what systemd cannot enforce.
		rs.Warnings = append(rs.Warnings, rs.systemdArgs().warnings...)
		slices.Sort(rs.Warnings)
	}
	for i := range rs.Syscalls {
		if _, err := rs.Syscalls[i].regions(rs.DefaultAction); err != nil {
			return nil, err
		}
	}
	// Block refusals reach audit only with the filter's log flag, which
	// only some runtimes take (see Runtime.TakesLogFlag).
	rs.LogRefusals = runtime.TakesLogFlag() && rs.refuses()
	return rs, nil
}

// resolveTarget fills in the target's defaults (amd64, runc) and says which
// start-up sets an allow-list gets: a runtime's (none for a systemd unit,
// which installs the filter itself) and the kernel's (all but RuntimeNone
// on a container; always on a unit). It runs before anything is collected
// so a bad family or runtime fails even when no policy selects the target.
func resolveTarget(t Target) (familyArches []api.Arch, runtime Runtime, kernel bool, err error) {
	family := t.Family
	if family == "" {
		family = api.FamilyAMD64
	}
	familyArches, err = family.Arches()
	if err != nil {
		return nil, "", false, err
	}
	runtime = t.Runtime
	if runtime == "" {
		runtime = RuntimeRunc
	}
	if !slices.Contains(Runtimes[:], runtime) {
		return nil, "", false, fmt.Errorf("unknown runtime %q (want runc, crun, any or none)", runtime)
	}
	kernel = runtime != RuntimeNone
	if t.Unit != "" {
		runtime, kernel = RuntimeNone, true
	}
	return familyArches, runtime, kernel, nil
}

// merger is one merge in progress. Every system call gets one entry in
// rs.Syscalls (found through index) that keeps the strongest action seen,
// and every naming of it one contribution; order turns the contributions
// into each entry's Sources at the end.
type merger struct {
	rs       *RuleSet
	index    map[string]int32 // system call name → its entry in rs.Syscalls
	contribs []contribution
}

// contribution is one source naming the system call rs.Syscalls[idx].
// Contributions are kept in one slab and handed out as sub-slices at the
// end: one allocation instead of one per system call.
type contribution struct {
	idx int32
	src Source
}

// newMerger sizes the merge from the rules it will see, so collecting does
// not grow maps and slices call by call (the merge runs for every container
// of every node).
func newMerger(sel []*api.KubeArmorSeccompPolicy, runtime Runtime) *merger {
	n := len(startup[runtime].required) + len(startup[runtime].extra) + len(KernelSyscalls())
	for _, p := range sel {
		for _, r := range p.Spec.Seccomp.AllRules() {
			n += len(r.Syscalls)
		}
	}
	distinct := min(n, 512) // no ABI has many more system calls
	return &merger{
		rs:       &RuleSet{DefaultAction: api.ActionAllow, Syscalls: make([]Syscall, 0, distinct)},
		index:    make(map[string]int32, distinct),
		contribs: make([]contribution, 0, n),
	}
}

// add records that src names the system call: deny wins, so the entry's
// action becomes src's when src's is stronger.
func (m *merger) add(name string, src Source) {
	i, ok := m.index[name]
	if !ok {
		i = int32(len(m.rs.Syscalls))
		m.index[name] = i
		m.rs.Syscalls = append(m.rs.Syscalls, Syscall{Name: name, Action: src.Action})
	}
	if e := &m.rs.Syscalls[i]; src.Action.Precedence() > e.Action.Precedence() {
		e.Action = src.Action
	}
	m.contribs = append(m.contribs, contribution{i, src})
}

// addConditional records that src names the system call under the
// argument conditions args. Deny wins per argument tuple: RuleSet.Decide
// takes the strongest action of every rule that matches, which order
// settles once every rule is in.
func (m *merger) addConditional(name string, src Source, args []api.Resolved) {
	i, ok := m.index[name]
	if !ok {
		i = int32(len(m.rs.Syscalls))
		m.index[name] = i
		m.rs.Syscalls = append(m.rs.Syscalls, Syscall{Name: name})
	}
	e := &m.rs.Syscalls[i]
	e.Conditional = append(e.Conditional, Conditional{Action: src.Action, Args: args})
	m.contribs = append(m.contribs, contribution{i, src})
}

// collect adds every rule of every selected policy and notes the
// architectures they name. One allowing rule anywhere makes the result an
// allow-list (default Block): a policy that allows something means
// "only this", and deny-wins must not widen it.
func (m *merger) collect(sel []*api.KubeArmorSeccompPolicy) (arches [len(api.Arches)]bool, anyArch bool) {
	for _, p := range sel {
		m.rs.Policies = append(m.rs.Policies, p.Key())
		for _, a := range p.Spec.Seccomp.Arch {
			if i := a.Index(); i >= 0 {
				arches[i], anyArch = true, true
			}
		}
		m.defaultOf(p)
		for _, r := range p.Spec.Seccomp.AllRules() {
			act := r.Action.Canonical()
			src := Source{Kind: SourcePolicy, Name: p.Key(), Action: act}
			if len(r.Args) > 0 {
				args := make([]api.Resolved, len(r.Args))
				for i, a := range r.Args {
					args[i] = a.Resolve()
				}
				src.Condition = describeArgs(args)
				for _, name := range r.Syscalls {
					m.addConditional(name, src, args)
				}
				continue
			}
			for _, name := range r.Syscalls {
				m.add(name, src)
			}
		}
	}
	return arches, anyArch
}

// defaultOf takes the policy's default into the merged one: deny wins, so
// the strongest stays (one policy that blocks what it does not allow is
// never turned into logging by another's complain mode). An allow-list's
// default is recorded as a source, so the result says who decided it.
func (m *merger) defaultOf(p *api.KubeArmorSeccompPolicy) {
	def := p.Spec.Seccomp.EffectiveDefault()
	if def == api.ActionAllow {
		return // a deny-list: the calls it does not name run
	}
	m.rs.DefaultSources = append(m.rs.DefaultSources, Source{Kind: SourcePolicy, Name: p.Key(), Action: def})
	if def.Precedence() > m.rs.DefaultAction.Precedence() {
		m.rs.DefaultAction = def
	}
}

// architectures sets the ABIs the profile covers: the union of the
// policies' arch lists, or the target family's when no policy names one
// (then FamilyArches says so). They come out in api.Arches' canonical
// order, whatever order the policies listed them in.
func (m *merger) architectures(arches [len(api.Arches)]bool, anyArch bool, familyArches []api.Arch) {
	if !anyArch {
		m.rs.FamilyArches = true
		for _, a := range familyArches {
			arches[a.Index()] = true
		}
	}
	for i, ok := range arches {
		if ok {
			m.rs.Arches = append(m.rs.Arches, api.Arches[i])
		}
	}
}

// startupSets adds to an allow-list what the workload never asks for but
// cannot start or run without: the calls the kernel makes for a process
// (signal return) and the runtime's calls between installing the filter
// and executing the workload. A deny list needs neither. A start-up call a
// policy blocks or kills stays blocked (deny wins) and is warned about: the
// container may not start.
func (m *merger) startupSets(runtime Runtime, kernel bool) {
	if !m.rs.AllowList() {
		return
	}
	if kernel {
		src := Source{Kind: SourceKernel, Name: "signals", Action: api.ActionAllow}
		for _, name := range KernelSyscalls() {
			m.add(name, src)
		}
	}
	if runtime == RuntimeNone {
		return
	}
	m.rs.Runtime = runtime
	src := Source{Kind: SourceRuntime, Name: string(runtime), Action: api.ActionAllow}
	for _, name := range runtime.StartupSyscalls() {
		m.add(name, src)
		if e := &m.rs.Syscalls[m.index[name]]; e.Action == api.ActionBlock || e.Action == api.ActionKill {
			m.rs.Warnings = append(m.rs.Warnings, fmt.Sprintf("%s is %s by policy, but %s calls it while starting the container: the container may not start", name, verb(e.Action), runtime))
		}
	}
}

// order makes the result independent of the policies' order: system calls
// by name, each one's sources sorted and without duplicates, policies and
// warnings sorted. The contributions are grouped by system call with a
// counting sort into one slab, so each entry's Sources is a sub-slice of it.
func (m *merger) order() *RuleSet {
	rs := m.rs
	start := make([]int32, len(rs.Syscalls)+1)
	for _, c := range m.contribs {
		start[c.idx+1]++
	}
	for i := 1; i < len(start); i++ {
		start[i] += start[i-1]
	}
	slab := make([]Source, len(m.contribs))
	fill := slices.Clone(start[:len(rs.Syscalls)])
	for _, c := range m.contribs {
		slab[fill[c.idx]] = c.src
		fill[c.idx]++
	}
	byName := make([]int32, len(rs.Syscalls))
	for i := range byName {
		byName[i] = int32(i)
	}
	slices.SortFunc(byName, func(a, b int32) int { return strings.Compare(rs.Syscalls[a].Name, rs.Syscalls[b].Name) })
	sorted := make([]Syscall, len(rs.Syscalls))
	for k, i := range byName {
		srcs := slab[start[i]:start[i+1]:start[i+1]]
		slices.SortFunc(srcs, compareSource)
		sorted[k] = Syscall{Name: rs.Syscalls[i].Name, Action: rs.Syscalls[i].Action, Conditional: rs.Syscalls[i].Conditional, Sources: slices.Compact(srcs)}
		settleConditional(&sorted[k])
	}
	rs.Syscalls = sorted
	slices.Sort(rs.Policies)
	slices.Sort(rs.Warnings)
	slices.SortFunc(rs.DefaultSources, compareSource)
	return rs
}

func verb(a api.Action) string {
	switch a {
	case api.ActionBlock:
		return "blocked"
	case api.ActionKill:
		return "killed"
	case api.ActionAudit:
		return "audited"
	}
	return "allowed"
}
