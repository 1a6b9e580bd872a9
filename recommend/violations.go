package recommend

import (
	"maps"
	"slices"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/api/violation"
)

// ViolationSource turns a violation report (kscmp violations) into the
// observations Recommend reads, to be passed in Options.Violations: per
// workload, the calls enforcement refused or logged, whatever the action.
// Entries whose number has no name in their ABI's table cannot be allowed
// by name and are left out.
func ViolationSource(name string, vr *violation.Report) report.Source {
	r := report.New()
	r.Node, r.Kernel, r.Arch, r.Start, r.End = vr.Node, vr.Kernel, vr.Arch, vr.Start, vr.End
	for _, v := range vr.Violations {
		if v.Syscall == "" {
			continue
		}
		r.Add(report.Workload{Identity: v.Identity, Syscalls: map[string][]string{v.ABI: {v.Syscall}},
			FirstSeen: v.FirstSeen, LastSeen: v.LastSeen})
	}
	r.Sort()
	return report.Source{Name: name, Report: r}
}

// violationParts are the files a group seen only in violation reports
// widens: one per reviewed policy of its workload, the container's own
// (<name>-<container>) where the reviewed policies are per container, else
// the workload's. A violation report never makes a policy of its own.
func (g *group) violationParts(existing map[string]*api.KubeArmorSeccompPolicy) (names []string, containerOf map[string]string, observed map[string]map[api.Arch]map[string]bool) {
	containerOf, observed = map[string]string{}, map[string]map[api.Arch]map[string]bool{}
	for _, c := range slices.Sorted(maps.Keys(g.byContainer)) {
		name := g.name
		if c != "" && existing[g.namespace+"/"+policyName(g.name+"-"+c)] != nil {
			name, containerOf[g.name+"-"+c] = g.name+"-"+c, c
		}
		if observed[name] == nil {
			observed[name] = map[api.Arch]map[string]bool{}
		}
		for a, set := range g.byContainer[c] {
			if observed[name][a] == nil {
				observed[name][a] = map[string]bool{}
			}
			maps.Copy(observed[name][a], set)
		}
	}
	return slices.Sorted(maps.Keys(observed)), containerOf, observed
}

// refusedIn lists, of the calls refused in production, those f's policy
// now allows that the reviewed one did not (Added), and those an explicit
// Block or Kill rule of the reviewed policy still refuses (kept: that rule
// was a person's decision, and wins).
func (f *File) noteRefused(refused map[string]bool, others []api.Rule) {
	for _, n := range f.Added {
		if refused[n] {
			f.Refused = append(f.Refused, n)
		}
	}
	for _, r := range others {
		if a := r.Action.Canonical(); a != api.ActionBlock && a != api.ActionKill {
			continue
		}
		for _, n := range r.Syscalls {
			if refused[n] {
				f.StillRefused = append(f.StillRefused, n)
			}
		}
	}
	slices.Sort(f.StillRefused)
	f.StillRefused = slices.Compact(f.StillRefused)
}
