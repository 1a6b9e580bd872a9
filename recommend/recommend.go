// Package recommend turns observation reports (kscmp discover) into the
// smallest KubeArmorSeccompPolicy per workload: files a person reviews as a
// pull request, with a summary of what changed and which risky system calls
// are allowed.
package recommend

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/internal/escape"
	"github.com/kubearmor/kscmp/merge"
)

// DockerDefaultCount is the number of system calls Docker's default profile
// allows unconditionally on x86_64: the yardstick of the summary.
const DockerDefaultCount = 300

// DefaultHostNamespace is the namespace of recommended host policies.
const DefaultHostNamespace = "kscmp-host"

// ManagedByLabel marks the policies kscmp recommended.
const ManagedByLabel = "app.kubernetes.io/managed-by"

// volatileLabels change from pod to pod of one workload and never select it.
var volatileLabels = []string{
	"pod-template-hash", "controller-revision-hash", "statefulset.kubernetes.io/pod-name",
	"apps.kubernetes.io/pod-index", "controller-uid", "batch.kubernetes.io/controller-uid",
	"job-name", "batch.kubernetes.io/job-name", "batch.kubernetes.io/job-completion-index",
}

// Options tunes Recommend.
type Options struct {
	// Portable adds, for each observed ABI, the other family's ABI with the
	// calls the same program makes there (open → openat on aarch64, …).
	Portable bool
	// Runtime is the container runtime whose start-up set the merger adds;
	// it is only named in comments and the summary.
	Runtime merge.Runtime
	// HostNamespace is the namespace of host policies; DefaultHostNamespace
	// if empty.
	HostNamespace string
	// Existing are the policies already reviewed (e.g. the files of the
	// target directory); a recommendation for the same policy is their
	// union with what was observed, unless Prune.
	Existing []api.Document
	// Prune makes a recommendation replace an existing policy's allowed
	// calls with exactly what was observed.
	Prune bool
	// Complain writes new policies in complain mode (defaultAction: Audit):
	// what they do not allow runs and is logged, to be switched to Block
	// once the logs show nothing missing. A reviewed policy keeps its own
	// default either way: a recommendation never loosens what a person
	// approved.
	Complain bool
	// NoArgs writes no argument conditions: every observed call is allowed
	// with any arguments. By default a call whose arguments were recorded
	// (clone, unshare, setns, socket, socketpair, personality, prctl) is
	// allowed only with the namespace flags, address families, personas
	// and options observed (see conditionFor).
	NoArgs bool

	// Violations are violation reports (see ViolationSource): the calls
	// enforcement refused or logged in production. They only widen a
	// reviewed policy (Existing): a workload seen only here gets no policy
	// of its own, and Recommend refuses Prune with them.
	Violations []report.Source
}

// File is one recommended policy file.
type File struct {
	// Path is relative to the output directory: <namespace>/<name>.yaml,
	// or _host/<name>.yaml for host workloads.
	Path   string
	Data   []byte
	Policy *api.KubeArmorSeccompPolicy
	// Workload describes the workload for people.
	Workload string
	// Observed are the calls observed, per ABI.
	Observed map[api.Arch][]string
	// Portable are the calls added for the other family.
	Portable []Equivalent
	// Added and Removed compare the allowed calls with the existing
	// policy's; Kept are existing calls not observed this time and kept
	// (no Prune). New says there was no existing policy.
	Added, Removed, Kept []string
	New                  bool
	// Complain says the policy is in complain mode (defaultAction: Audit);
	// NotSwitched that Options.Complain asked for it but the reviewed
	// policy's default (Block) was kept.
	Complain, NotSwitched bool

	// Refused are the added calls that enforcement refused or logged in
	// production (Options.Violations); StillRefused those an explicit
	// Block or Kill rule of the reviewed policy keeps refusing.
	Refused, StillRefused []string
	// OnlyViolations says the file widens a reviewed policy by violations
	// alone, with no observation of the workload.
	OnlyViolations bool
	// Conditioned are the calls allowed only with the arguments observed,
	// sorted by name.
	Conditioned []Conditioned
}

// Result is what Recommend produces.
type Result struct {
	Files   []File // sorted by Path
	Skipped []string
	Summary []byte // Markdown, fit for a pull request description
}

// group collects the observations of one policy-to-be.
type group struct {
	namespace, name string
	host            bool
	selector        api.Selector
	describe        string
	pods            map[string]bool
	podLabels       []map[string]string
	byContainer     map[string]map[api.Arch]map[string]bool
	// args are the recorded arguments per container, per call.
	args           map[string]map[string]*argSeen
	nodes, reports map[string]bool
	start, end     time.Time
	// refused are the calls of violation reports; observed says an
	// observation report had the workload too.
	refused  map[string]bool
	observed bool
}

// Recommend groups the workloads of all reports into policies: pods by
// workload (app.kubernetes.io/name or app label, else their owner), the
// union over replicas, nodes and reports; a policy per container when the
// containers of a pod differ; host policies for systemd services and
// containers run without Kubernetes. The output is deterministic.
func Recommend(sources []report.Source, opts Options) (*Result, error) {
	if opts.HostNamespace == "" {
		opts.HostNamespace = DefaultHostNamespace
	}
	if opts.Prune && len(opts.Violations) > 0 {
		return nil, errors.New("recommend: violation reports only widen reviewed policies: they cannot be pruned to")
	}
	res := &Result{}
	groups := map[string]*group{}
	for i, src := range slices.Concat(sources, opts.Violations) {
		for _, w := range src.Report.Workloads {
			g, why := groupFor(groups, w.Identity, opts.HostNamespace)
			if g == nil {
				res.Skipped = append(res.Skipped, fmt.Sprintf("%s: %s", w.Identity, why))
				continue
			}
			g.add(src, w)
			if i < len(sources) {
				g.observed = true
				continue
			}
			for _, names := range w.Syscalls {
				for _, n := range names {
					g.refused[n] = true
				}
			}
		}
	}
	existing := map[string]*api.KubeArmorSeccompPolicy{}
	for _, d := range opts.Existing {
		existing[d.Policy.Key()] = d.Policy
	}
	used := map[string]bool{}
	for _, key := range slices.Sorted(maps.Keys(groups)) {
		g := groups[key]
		files, skips, err := g.files(opts, existing, used)
		if err != nil {
			return nil, err
		}
		res.Files = append(res.Files, files...)
		res.Skipped = append(res.Skipped, skips...)
	}
	slices.Sort(res.Skipped)
	res.Skipped = slices.Compact(res.Skipped)
	slices.SortFunc(res.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	res.Summary = summary(res, sources, opts)
	return res, nil
}

// groupFor finds or makes the group of a workload, or says why it has none.
func groupFor(groups map[string]*group, id report.Identity, hostNS string) (*group, string) {
	var g group
	switch {
	case id.Kind == report.KindPod && id.Namespace != "":
		name, sel := workloadName(id)
		if name == "" {
			return nil, "a pod without labels or owner: nothing stable selects it"
		}
		g = group{namespace: id.Namespace, name: name, selector: sel}
		switch {
		case id.Owner != nil:
			g.describe = fmt.Sprintf("%s %s/%s", id.Owner.Kind, id.Namespace, id.Owner.Name)
		default:
			g.describe = fmt.Sprintf("pods %s/%s", id.Namespace, name)
		}
	case id.Kind == report.KindPod:
		return nil, "a pod that could not be resolved (run discover with a kubeconfig)"
	case id.Kind == report.KindSystemd && id.Unit != "":
		g = group{namespace: hostNS, name: strings.TrimSuffix(id.Unit, ".service"), host: true,
			selector: api.Selector{SystemdUnits: []string{id.Unit}}, describe: "systemd service " + id.Unit}
	case id.Kind == report.KindContainer && id.ContainerID != "":
		g = group{namespace: hostNS, name: id.ContainerID, host: true,
			selector: api.Selector{ContainerNames: []string{id.ContainerID}}, describe: "host container " + id.ContainerID}
		if id.Runtime != "" {
			g.describe += " (" + id.Runtime + ")"
		}
	default:
		return nil, "a plain process: record it as a systemd service (--systemd-unit) to get a policy"
	}
	// Host workloads are keyed by kind too: a container named nginx and
	// the unit nginx.service are two workloads, never one policy.
	key := g.namespace + "/" + g.name
	if g.host {
		key = "\x00host/" + id.Kind + "/" + g.name
	}
	if prev := groups[key]; prev != nil {
		return prev, ""
	}
	g.pods, g.nodes, g.reports = map[string]bool{}, map[string]bool{}, map[string]bool{}
	g.byContainer = map[string]map[api.Arch]map[string]bool{}
	g.args = map[string]map[string]*argSeen{}
	g.refused = map[string]bool{}
	groups[key] = &g
	return &g, ""
}

// workloadName names a pod's workload and the labels that select it: the
// stable labels app.kubernetes.io/name or app, else the owner (whose pods'
// common labels select it, computed when the group is complete).
func workloadName(id report.Identity) (string, api.Selector) {
	for _, k := range []string{"app.kubernetes.io/name", "app"} {
		if v := id.Labels[k]; v != "" {
			return v, api.Selector{MatchLabels: map[string]string{k: v}}
		}
	}
	if id.Owner != nil {
		return id.Owner.Name, api.Selector{}
	}
	if len(stableLabels(id.Labels)) > 0 {
		return id.Pod, api.Selector{}
	}
	return "", api.Selector{}
}

func stableLabels(l map[string]string) map[string]string {
	out := maps.Clone(l)
	for _, k := range volatileLabels {
		delete(out, k)
	}
	return out
}

func (g *group) add(src report.Source, w report.Workload) {
	r := src.Report
	g.reports[src.Name] = true
	if r.Node != "" {
		g.nodes[r.Node] = true
	}
	if g.start.IsZero() || r.Start.Before(g.start) {
		g.start = r.Start
	}
	if r.End.After(g.end) {
		g.end = r.End
	}
	if w.Identity.Pod != "" && !g.pods[w.Identity.Pod] {
		g.pods[w.Identity.Pod] = true
		g.podLabels = append(g.podLabels, w.Identity.Labels)
	}
	c := w.Identity.Container
	if g.byContainer[c] == nil {
		g.byContainer[c] = map[api.Arch]map[string]bool{}
		g.args[c] = map[string]*argSeen{}
	}
	addArgs(g.args[c], w)
	for abi, names := range w.Syscalls {
		a, ok := report.ArchOf(abi)
		if !ok {
			continue
		}
		if g.byContainer[c][a] == nil {
			g.byContainer[c][a] = map[string]bool{}
		}
		for _, n := range names {
			g.byContainer[c][a][n] = true
		}
	}
}

// files makes the group's policy files: one, or one per container when the
// containers of its pods make different calls. A file that cannot be made
// for its workload (a name no policy can select by, no call observed) is
// left out and said why in skips: one odd workload never costs the others
// their policies. err is an internal error only.
func (g *group) files(opts Options, existing map[string]*api.KubeArmorSeccompPolicy, used map[string]bool) (out []File, skips []string, err error) {
	if !g.host && g.selector.MatchLabels == nil {
		common := commonLabels(g.podLabels)
		if len(common) == 0 {
			return nil, []string{g.describe + ": " + noStableLabels}, nil
		}
		g.selector = api.Selector{MatchLabels: common}
	}
	type part struct {
		name, container string
		observed        map[api.Arch]map[string]bool
		args            map[string]*argSeen
	}
	var parts []part
	containers := slices.Sorted(maps.Keys(g.byContainer))
	if !g.observed {
		names, containerOf, observed := g.violationParts(existing)
		for _, n := range names {
			parts = append(parts, part{n, containerOf[n], observed[n], nil})
		}
	} else if len(containers) > 1 && !allEqual(g.byContainer, containers) {
		for _, c := range containers {
			name := g.name + "-" + c
			if c == "" {
				name = g.name + "-unnamed"
			}
			parts = append(parts, part{name, c, g.byContainer[c], g.args[c]})
		}
	} else {
		merged := map[api.Arch]map[string]bool{}
		var args []map[string]*argSeen
		for _, c := range containers {
			args = append(args, g.args[c])
			for a, set := range g.byContainer[c] {
				if merged[a] == nil {
					merged[a] = map[string]bool{}
				}
				maps.Copy(merged[a], set)
			}
		}
		parts = append(parts, part{g.name, "", merged, unionArgs(args...)})
	}
	for _, p := range parts {
		f, err := g.file(p.name, p.container, p.observed, p.args, opts, existing, used)
		var sk *skip
		switch {
		case errors.As(err, &sk):
			skips = append(skips, sk.Error())
		case err != nil:
			return nil, nil, err
		default:
			out = append(out, f)
		}
	}
	return out, skips, nil
}

// noStableLabels is why pods grouped by owner get no policy when their
// pods share no label but volatile ones.
const noStableLabels = "its pods share no stable label: nothing selects them all"

// skip is why no file could be made for a workload: it is reported and
// left out, the other workloads still get theirs.
type skip struct{ workload, why string }

func (s *skip) Error() string { return s.workload + ": " + s.why }

func allEqual(m map[string]map[api.Arch]map[string]bool, keys []string) bool {
	first := m[keys[0]]
	for _, k := range keys[1:] {
		other := m[k]
		if len(other) != len(first) {
			return false
		}
		for a, set := range first {
			if !maps.Equal(set, other[a]) {
				return false
			}
		}
	}
	return true
}

// commonLabels are the stable labels every pod of a group carries.
func commonLabels(pods []map[string]string) map[string]string {
	if len(pods) == 0 {
		return nil
	}
	common := stableLabels(pods[0])
	for _, l := range pods[1:] {
		for k, v := range common {
			if l[k] != v {
				delete(common, k)
			}
		}
	}
	return common
}

// maxNameLen is the longest policy name recommend makes: a DNS-1123
// subdomain (253) whose file, <name>.yaml, and that file's temporary file
// fit in a file name (fsutil.NameMax) with room to spare.
const maxNameLen = 200

// policyName makes a policy name of s: s itself when it is a valid one
// (a DNS-1123 subdomain of at most maxNameLen), else s lower-cased, every
// character but [a-z0-9.-] made "-", each dot-separated label trimmed of
// "-" and empty labels dropped ("web..1" → "web.1"), cut to length, and
// "-" + a short hash of s added. The hash keeps names that sanitise alike
// ("web..1", "web.1", "Web.1") apart, and the same in every run, so a
// workload always finds its own reviewed policy (Options.Existing), never
// another's. Every s has a name: an s with nothing usable is
// "workload-<hash>".
func policyName(s string) string {
	if len(s) <= maxNameLen && len(validation.IsDNS1123Subdomain(s)) == 0 {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	sum := sha256.Sum256([]byte(s))
	hash := hex.EncodeToString(sum[:4])
	n := trimLabels(b.String())
	if len(n) > maxNameLen-len(hash)-1 {
		n = trimLabels(n[:maxNameLen-len(hash)-1])
	}
	if n == "" {
		return "workload-" + hash
	}
	return n + "-" + hash
}

// trimLabels drops the "-" at both ends of each dot-separated label of n,
// and the empty labels, so every label starts and ends with [a-z0-9].
func trimLabels(n string) string {
	var labels []string
	for _, l := range strings.Split(n, ".") {
		if l = strings.Trim(l, "-"); l != "" {
			labels = append(labels, l)
		}
	}
	return strings.Join(labels, ".")
}

// file makes one policy file of the group, in steps: a name of its own, the
// calls observed (and, with Portable, their equivalents for the other
// family), the policy, reconciled with the reviewed policy of that name,
// its rules, then checked and rendered. Each step is apart so a reader sees
// where a call in the file came from.
func (g *group) file(name, container string, observed map[api.Arch]map[string]bool, args map[string]*argSeen, opts Options,
	existing map[string]*api.KubeArmorSeccompPolicy, used map[string]bool) (File, error) {
	dir, name := g.reserve(name, used)
	f := File{Path: dir + "/" + name + ".yaml", Observed: map[api.Arch][]string{}, Workload: g.describe}
	if container != "" {
		f.Workload += ", container " + container
	}
	allowed, arches := f.observe(observed)
	if opts.Portable {
		arches = f.addPortable(allowed, arches)
	}
	p := g.policy(name, container, arches)
	if !g.observed && existing[p.Key()] == nil {
		return File{}, &skip{f.Workload, "refused in production, but there is no reviewed policy " + p.Key() + " to widen (give it with --existing); a violation report alone never makes a policy"}
	}
	f.OnlyViolations = !g.observed
	others := f.reconcile(p, existing[p.Key()], allowed, opts.Prune)
	f.noteRefused(g.refused, others)
	if len(allowed) == 0 {
		return File{}, &skip{f.Workload, "no system calls observed"}
	}
	var conditioned []api.Rule
	if !opts.NoArgs {
		conditioned, f.Conditioned = conditionRules(allowed, args, f.unconditional(allowed, opts.Prune))
	}
	setRules(p, slices.Sorted(maps.Keys(allowed)), slices.Concat(conditioned, others))
	f.complainMode(p, opts.Complain)
	if errs := api.Validate(p); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return File{}, &skip{f.Workload, "no valid policy can select it: " + strings.Join(msgs, "; ")}
	}
	data, err := render(p, g, &f, opts)
	if err != nil {
		return File{}, err
	}
	if f.Policy, err = parseBack(f.Path, data, p); err != nil {
		return File{}, err
	}
	f.Data = data
	return f, nil
}

// unconditional are the allowed calls a reviewed policy already allowed
// with any arguments: without prune they stay so, a recommendation never
// narrows what a person approved. A new policy has none.
func (f *File) unconditional(allowed map[string]bool, prune bool) map[string]bool {
	keep := map[string]bool{}
	if f.New || prune {
		return keep
	}
	for n := range allowed {
		if !slices.Contains(f.Added, n) {
			keep[n] = true
		}
	}
	return keep
}

// complainMode sets a new policy's default to Audit when asked to, and
// notes in f which mode the policy is in. A reviewed policy keeps the
// default reconcile copied from it.
func (f *File) complainMode(p *api.KubeArmorSeccompPolicy, complain bool) {
	if f.New && complain {
		p.Spec.Seccomp.DefaultAction = api.ActionAudit
	}
	f.Complain = p.Spec.Seccomp.DefaultAction.Canonical() == api.ActionAudit
	f.NotSwitched = complain && !f.Complain
}

// reserve makes name a policy name that no other file of this run has in
// the group's directory (a second "web" becomes "web-2"): two workloads
// must never write one file.
func (g *group) reserve(name string, used map[string]bool) (dir, unique string) {
	dir = g.namespace
	if g.host {
		dir = "_host"
	}
	base := policyName(name)
	unique = base
	for i := 2; used[dir+"/"+unique]; i++ {
		unique = fmt.Sprintf("%s-%d", base, i)
	}
	used[dir+"/"+unique] = true
	return dir, unique
}

// observe records what was observed in f, per ABI, and returns the calls to
// allow and the ABIs they were made with, in canonical order.
func (f *File) observe(observed map[api.Arch]map[string]bool) (allowed map[string]bool, arches []api.Arch) {
	allowed = map[string]bool{}
	for _, a := range api.Arches {
		if set := observed[a]; len(set) > 0 {
			f.Observed[a] = slices.Sorted(maps.Keys(set))
			arches = append(arches, a)
			maps.Copy(allowed, set)
		}
	}
	return allowed, arches
}

// addPortable adds, for each observed ABI, the other family's ABI and the
// calls the same program makes there, so a policy recorded on amd64 also
// runs the workload on arm64. The additions are listed in f.Portable for
// the reviewer. It returns the ABIs in canonical order.
func (f *File) addPortable(allowed map[string]bool, arches []api.Arch) []api.Arch {
	for _, a := range slices.Clone(arches) {
		other, ok := otherFamily(a)
		if !ok {
			continue
		}
		if !slices.Contains(arches, other) {
			arches = append(arches, other)
		}
		eq, _ := Equivalents(a, other, f.Observed[a])
		for _, e := range eq {
			if !allowed[e.Name] {
				f.Portable = append(f.Portable, e)
			}
		}
	}
	for _, e := range f.Portable {
		allowed[e.Name] = true
	}
	slices.SortFunc(arches, func(a, b api.Arch) int { return a.Index() - b.Index() })
	return arches
}

// policy is the group's allow-list policy named name, without its calls.
func (g *group) policy(name, container string, arches []api.Arch) *api.KubeArmorSeccompPolicy {
	p := &api.KubeArmorSeccompPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: api.APIVersion, Kind: api.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: g.namespace,
			Labels: map[string]string{ManagedByLabel: "kscmp"}},
		Spec: api.PolicySpec{Selector: g.selector, Seccomp: api.SeccompSpec{Arch: arches, Action: api.ActionAllow}},
	}
	if container != "" {
		p.Spec.Containers = []string{container}
	}
	return p
}

// reconcile makes the recommendation extend the reviewed policy old (nil
// when there is none): a new recording never silently narrows what a person
// approved. Observed calls the reviewed Block, Kill and Audit rules name are
// dropped from allowed, since those rules win; they are returned to be kept.
// Reviewed allowed calls not observed now are kept, or with prune removed.
// f says what changed; p gets old's architectures and severity.
func (f *File) reconcile(p, old *api.KubeArmorSeccompPolicy, allowed map[string]bool, prune bool) (others []api.Rule) {
	f.New = old == nil
	if old == nil {
		return nil
	}
	oldAllowed := map[string]bool{}
	for _, r := range old.Spec.Seccomp.AllRules() {
		if len(r.Args) > 0 {
			// A reviewed argument condition stays as written. An allow
			// under a condition restricts its calls: observing them does
			// not allow them with any arguments. A refusal under one
			// refines the calls' allow, which stays.
			others = append(others, r)
			if r.Action.Canonical() == api.ActionAllow {
				for _, n := range r.Syscalls {
					delete(allowed, n)
				}
			}
			continue
		}
		if r.Action.Canonical() == api.ActionAllow {
			for _, n := range r.Syscalls {
				oldAllowed[n] = true
			}
			continue
		}
		others = append(others, r)
		for _, n := range r.Syscalls {
			delete(allowed, n)
		}
	}
	for n := range allowed {
		if !oldAllowed[n] {
			f.Added = append(f.Added, n)
		}
	}
	for n := range oldAllowed {
		switch {
		case allowed[n]:
		case prune:
			f.Removed = append(f.Removed, n)
		default:
			f.Kept = append(f.Kept, n)
			allowed[n] = true
		}
	}
	slices.Sort(f.Added)
	slices.Sort(f.Removed)
	slices.Sort(f.Kept)
	for _, a := range old.Spec.Seccomp.Arch {
		if !slices.Contains(p.Spec.Seccomp.Arch, a) {
			p.Spec.Seccomp.Arch = append(p.Spec.Seccomp.Arch, a)
		}
	}
	slices.SortFunc(p.Spec.Seccomp.Arch, func(a, b api.Arch) int { return a.Index() - b.Index() })
	p.Spec.Severity = old.Spec.Severity
	p.Spec.Seccomp.DefaultAction = old.Spec.Seccomp.DefaultAction
	return others
}

// setRules gives p its calls: the short form (syscalls + action Allow) when
// only allowed calls are listed, else rules: the allow rule of the calls
// allowed with any arguments first, then the others (the conditional
// allows, then the reviewed rules) in the order given.
func setRules(p *api.KubeArmorSeccompPolicy, allowed []string, others []api.Rule) {
	if len(others) == 0 {
		p.Spec.Seccomp.Syscalls = allowed
		return
	}
	p.Spec.Seccomp.Action = ""
	if len(allowed) > 0 {
		p.Spec.Seccomp.Rules = []api.Rule{{Syscalls: allowed, Action: api.ActionAllow}}
	}
	p.Spec.Seccomp.Rules = append(p.Spec.Seccomp.Rules, others...)
}

// policyDoc is the written form: no status, no server-side metadata.
type policyDoc struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   docMeta        `json:"metadata"`
	Spec       api.PolicySpec `json:"spec"`
}

type docMeta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// render writes the file: comment lines that say where the policy came
// from, then the policy. Every comment line is made by escape.Comment, so
// no text from a report (a file name, a node, an owner, a runtime) can end
// a comment and start YAML of its own.
func render(p *api.KubeArmorSeccompPolicy, g *group, f *File, opts Options) ([]byte, error) {
	body, err := yaml.Marshal(policyDoc{APIVersion: p.APIVersion, Kind: p.Kind,
		Metadata: docMeta{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels}, Spec: p.Spec})
	if err != nil {
		return nil, fmt.Errorf("recommend: render %s: %w", f.Path, err)
	}
	var b bytes.Buffer
	b.WriteString(escape.Comment("Recommended by kscmp from observations: review it before applying."))
	if len(g.pods) > 0 {
		b.WriteString(escape.Comment("Workload: %s (%d pods)", f.Workload, len(g.pods)))
	} else {
		b.WriteString(escape.Comment("Workload: %s", f.Workload))
	}
	reports, nodes := slices.Sorted(maps.Keys(g.reports)), slices.Sorted(maps.Keys(g.nodes))
	start, end := g.start.UTC().Format(time.RFC3339), g.end.UTC().Format(time.RFC3339)
	if len(nodes) > 0 {
		b.WriteString(escape.Comment("Observed: %s on %s, %s to %s", reports, nodes, start, end))
	} else {
		b.WriteString(escape.Comment("Observed: %s, %s to %s", reports, start, end))
	}
	for _, a := range api.Arches {
		if n := len(f.Observed[a]); n > 0 {
			b.WriteString(escape.Comment("%s: %d system calls observed", a, n))
		}
	}
	if len(f.Portable) > 0 {
		var adds []string
		for _, e := range f.Portable {
			adds = append(adds, fmt.Sprintf("%s (%s, for %s)", e.Name, e.Arch, e.For))
		}
		b.WriteString(escape.Comment("Portable: added for the other architecture family: %s", adds))
	}
	if words := argWords(*f); words != "" {
		b.WriteString(escape.Comment("Arguments: %s.", words))
	}
	if len(f.Refused) > 0 {
		b.WriteString(escape.Comment("Widened by calls refused in production: %s", f.Refused))
	}
	if len(f.Kept) > 0 && !f.OnlyViolations {
		b.WriteString(escape.Comment("Kept from the reviewed policy, not observed this time: %s", f.Kept))
	}
	if f.Complain {
		b.WriteString(escape.Comment("Complain mode (defaultAction: Audit): calls not allowed here run and are logged; remove defaultAction to enforce."))
	}
	rt := opts.Runtime
	if rt == "" {
		rt = merge.RuntimeRunc
	}
	if rt != merge.RuntimeNone && len(g.selector.SystemdUnits) == 0 {
		b.WriteString(escape.Comment("kscmp merge adds the container runtime's start-up set (%s: %s).", rt, strings.Join(rt.StartupSyscalls(), " ")))
	}
	b.Write(body)
	return b.Bytes(), nil
}

// parseBack reads data, the bytes of the file at path, with the policy
// parser every other kscmp command uses, and returns the one policy it
// holds. Anything else — more than one document, a document that does not
// parse, a policy other than want — is an internal error: the bytes are
// not what kscmp meant to write, and the run writes nothing. What the
// summary says about a file is taken from the policy returned here, so it
// describes what the file allows.
func parseBack(path string, data []byte, want *api.KubeArmorSeccompPolicy) (*api.KubeArmorSeccompPolicy, error) {
	docs, err := api.Parse(bytes.NewReader(data), path)
	if err != nil {
		return nil, fmt.Errorf("recommend: internal error: %s does not parse back: %w", path, err)
	}
	if len(docs) != 1 {
		return nil, fmt.Errorf("recommend: internal error: %s parses back as %d policies, want exactly 1", path, len(docs))
	}
	got := docs[0].Policy
	if got.Key() != want.Key() || !equality.Semantic.DeepEqual(got.Spec, want.Spec) || !maps.Equal(got.Labels, want.Labels) {
		return nil, fmt.Errorf("recommend: internal error: %s parses back as policy %s, not the policy %s it was made from", path, got.Key(), want.Key())
	}
	return got, nil
}
