package recommend

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/internal/escape"
	"github.com/kubearmor/kscmp/merge"
)

// nativeCount is the number of allowed calls a policy has on x86_64 (the
// yardstick's ABI), or on aarch64 when it has no x86_64 names.
func nativeCount(p *api.KubeArmorSeccompPolicy) int {
	for _, a := range []api.Arch{api.ArchX86_64, api.ArchAARCH64} {
		if !slices.Contains(p.Spec.Seccomp.Arch, a) {
			continue
		}
		// A call allowed under several conditions (socket, one rule per
		// family) is one call.
		names := map[string]bool{}
		for _, r := range p.Spec.Seccomp.AllRules() {
			if r.Action.Canonical() != api.ActionAllow {
				continue
			}
			for _, name := range r.Syscalls {
				if a.Has(name) {
					names[name] = true
				}
			}
		}
		return len(names)
	}
	return 0
}

// riskyIn returns the risky calls a policy lets run — those of its Allow
// and Audit rules (an audited call runs, it is only logged) —, sorted.
// The summary calls it on the policy parsed back from the file's bytes
// (parseBack), so its list is what the file allows.
func riskyIn(p *api.KubeArmorSeccompPolicy) []string {
	var out []string
	for _, r := range p.Spec.Seccomp.AllRules() {
		if a := r.Action.Canonical(); a != api.ActionAllow && a != api.ActionAudit {
			continue
		}
		for _, n := range r.Syscalls {
			if _, ok := risky[n]; ok {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// summary writes the review summary in Markdown. Every line is made by
// escape.MD: names that come from reports (file names, nodes, workloads)
// are escaped there, so none can add a heading, a table cell or a line
// that looks like kscmp's. Counts and risky calls are read from f.Policy,
// the policy parsed back from the bytes written.
func summary(res *Result, sources []report.Source, opts Options) []byte {
	var b bytes.Buffer
	w := func(format string, a ...any) { b.WriteString(string(escape.MD(format, a...))) }
	w("# kscmp: recommended seccomp policies\n\n")
	var from []string
	for _, s := range sources {
		from = append(from, string(escape.MD("%s (node %s, %s to %s)", escape.Code(s.Name), s.Report.Node,
			s.Report.Start.UTC().Format(time.RFC3339), s.Report.End.UTC().Format(time.RFC3339))))
	}
	for _, s := range opts.Violations {
		from = append(from, string(escape.MD("violations %s (node %s, %s to %s)", escape.Code(s.Name), s.Report.Node,
			s.Report.Start.UTC().Format(time.RFC3339), s.Report.End.UTC().Format(time.RFC3339))))
	}
	slices.Sort(from)
	w("From %d report(s): %s.\n\n", len(sources)+len(opts.Violations), escape.Markdown(strings.Join(from, ", ")))
	rt := opts.Runtime
	if rt == "" {
		rt = merge.RuntimeRunc
	}
	if rt != merge.RuntimeNone {
		w("Merging adds the container runtime's start-up set (%s, %d calls) to container profiles; the counts below do not include it.\n\n", escape.Markdown(rt), len(rt.StartupSyscalls()))
	}
	complainNote(w, res.Files)
	if len(res.Files) == 0 {
		w("No policy recommended.\n")
	} else {
		w("| workload | policy | syscalls | of Docker's default | change | risky |\n|---|---|---|---|---|---|\n")
		for _, f := range res.Files {
			n := nativeCount(f.Policy)
			change := "new"
			if !f.New {
				change = fmt.Sprintf("+%d −%d", len(f.Added), len(f.Removed))
				if len(f.Kept) > 0 && !f.OnlyViolations {
					change += fmt.Sprintf(", %d kept", len(f.Kept))
				}
			}
			w("| %s | %s | %d | %d%% | %s | %d |\n", f.Workload, escape.Code(f.Path), n, share(n), escape.Markdown(change), len(riskyIn(f.Policy)))
		}
	}
	for _, f := range res.Files {
		fileSummary(w, f)
	}
	if len(res.Skipped) > 0 {
		w("\n## Not recommended\n\n")
		for _, s := range res.Skipped {
			w("- %s\n", s)
		}
	}
	return b.Bytes()
}

// fileSummary writes the section of one file: what it allows, what was
// observed and added, what changed against the reviewed policy, and each
// risky call it lets run.
func fileSummary(w func(string, ...any), f File) {
	w("\n## %s\n\n", f.Workload)
	n := nativeCount(f.Policy)
	w("- %s: %d system calls allowed, %d%% of Docker's default profile (%d).\n", escape.Code(f.Path), n, share(n), DockerDefaultCount)
	var obs []string
	for _, a := range api.Arches {
		if c := len(f.Observed[a]); c > 0 {
			obs = append(obs, fmt.Sprintf("%s %d", a, c))
		}
	}
	w("- Observed: %s.\n", escape.Markdown(strings.Join(obs, ", "))) // ABI names and counts
	if words := argWords(f); words != "" {
		w("- Arguments: %s.\n", words)
	}
	if len(f.Portable) > 0 {
		byArch := map[api.Arch][]string{}
		for _, e := range f.Portable {
			byArch[e.Arch] = append(byArch[e.Arch], string(escape.MD("%s for %s", escape.Code(e.Name), escape.Code(e.For))))
		}
		for _, a := range slices.Sorted(maps.Keys(byArch)) {
			w("- Portable to %s: %s.\n", escape.Markdown(a), escape.Markdown(strings.Join(byArch[a], ", ")))
		}
	}
	switch {
	case f.Complain:
		w("- **Complain mode** (defaultAction: Audit): calls this policy does not allow run and are logged, not refused.\n")
	case f.NotSwitched:
		w("- Not switched to complain mode: the reviewed policy refuses what it does not allow, and keeps doing so.\n")
	}
	switch {
	case f.New:
		w("- New policy.\n")
	default:
		if len(f.Added) > 0 {
			w("- **Widened**: %d calls added to the reviewed policy: %s.\n", len(f.Added), codes(f.Added))
		}
		for _, n := range f.Refused {
			if why, ok := risky[n]; ok {
				w("  - %s: refused in production. Risky: %s.\n", escape.Code(n), escape.Markdown(why))
				continue
			}
			w("  - %s: refused in production.\n", escape.Code(n))
		}
		if len(f.StillRefused) > 0 {
			w("- Refused in production, and still refused by the reviewed policy's own Block or Kill rule (change that rule to allow them): %s.\n", codes(f.StillRefused))
		}
		if len(f.Removed) > 0 {
			w("- **Narrowed** (--prune): %d calls removed: %s.\n", len(f.Removed), codes(f.Removed))
		}
		if len(f.Kept) > 0 && !f.OnlyViolations {
			w("- Not observed this time, kept from the reviewed policy (use --prune to drop): %s.\n", codes(f.Kept))
		}
		if len(f.Added)+len(f.Removed) == 0 {
			w("- Unchanged allowed calls.\n")
		}
	}
	rs := riskyIn(f.Policy)
	if len(rs) == 0 {
		w("- No risky system call allowed.\n")
		return
	}
	w("- Risky system calls allowed:\n")
	for _, r := range rs {
		w("  - %s: %s.\n", escape.Code(r), escape.Markdown(risky[r]))
	}
}

// complainNote says at the top of the summary which policies are in
// complain mode and what that means, so no reviewer takes them for enforced.
func complainNote(w func(string, ...any), files []File) {
	var paths []escape.Code
	for _, f := range files {
		if f.Complain {
			paths = append(paths, escape.Code(f.Path))
		}
	}
	if len(paths) == 0 {
		return
	}
	w("**Complain mode**: %d of %d policies (%s) have defaultAction: Audit: what they do not allow runs and is logged by the kernel's audit (type=1326 records), nothing is refused but their explicit Block/Kill rules. Remove defaultAction (Block) once the logs show no such calls.\n\n",
		len(paths), len(files), paths)
}

func share(n int) int { return (n*100 + DockerDefaultCount/2) / DockerDefaultCount }

// codes shows names as code spans, for escape.MD.
func codes(names []string) []escape.Code {
	q := make([]escape.Code, len(names))
	for i, n := range names {
		q[i] = escape.Code(n)
	}
	return q
}
