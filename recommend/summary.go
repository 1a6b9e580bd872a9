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
	"github.com/kubearmor/kscmp/merge"
)

// nativeCount is the number of allowed calls a policy has on x86_64 (the
// yardstick's ABI), or on aarch64 when it has no x86_64 names.
func nativeCount(p *api.KubeArmorSeccompPolicy) int {
	for _, a := range []api.Arch{api.ArchX86_64, api.ArchAARCH64} {
		if !slices.Contains(p.Spec.Seccomp.Arch, a) {
			continue
		}
		n := 0
		for _, r := range p.Spec.Seccomp.AllRules() {
			if r.Action.Canonical() != api.ActionAllow {
				continue
			}
			for _, name := range r.Syscalls {
				if a.Has(name) {
					n++
				}
			}
		}
		return n
	}
	return 0
}

// riskyIn returns the risky calls a policy allows, sorted.
func riskyIn(p *api.KubeArmorSeccompPolicy) []string {
	var out []string
	for _, r := range p.Spec.Seccomp.AllRules() {
		if r.Action.Canonical() != api.ActionAllow {
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

// summary writes the review summary in Markdown.
func summary(res *Result, sources []report.Source, opts Options) []byte {
	var b bytes.Buffer
	b.WriteString("# kscmp: recommended seccomp policies\n\n")
	var from []string
	for _, s := range sources {
		from = append(from, fmt.Sprintf("`%s` (node %s, %s to %s)", s.Name, s.Report.Node,
			s.Report.Start.UTC().Format(time.RFC3339), s.Report.End.UTC().Format(time.RFC3339)))
	}
	slices.Sort(from)
	fmt.Fprintf(&b, "From %d report(s): %s.\n\n", len(sources), strings.Join(from, ", "))
	rt := opts.Runtime
	if rt == "" {
		rt = merge.RuntimeRunc
	}
	if rt != merge.RuntimeNone {
		fmt.Fprintf(&b, "Merging adds the container runtime's start-up set (%s, %d calls) to container profiles; the counts below do not include it.\n\n", rt, len(rt.StartupSyscalls()))
	}
	if len(res.Files) == 0 {
		b.WriteString("No policy recommended.\n")
	} else {
		b.WriteString("| workload | policy | syscalls | of Docker's default | change | risky |\n|---|---|---|---|---|---|\n")
		for _, f := range res.Files {
			n := nativeCount(f.Policy)
			change := "new"
			if !f.New {
				change = fmt.Sprintf("+%d −%d", len(f.Added), len(f.Removed))
				if len(f.Kept) > 0 {
					change += fmt.Sprintf(", %d kept", len(f.Kept))
				}
			}
			fmt.Fprintf(&b, "| %s | `%s` | %d | %d%% | %s | %d |\n", f.Workload, f.Path, n, share(n), change, len(riskyIn(f.Policy)))
		}
	}
	for _, f := range res.Files {
		fmt.Fprintf(&b, "\n## %s\n\n", f.Workload)
		n := nativeCount(f.Policy)
		fmt.Fprintf(&b, "- `%s`: %d system calls allowed, %d%% of Docker's default profile (%d).\n", f.Path, n, share(n), DockerDefaultCount)
		var obs []string
		for _, a := range api.Arches {
			if c := len(f.Observed[a]); c > 0 {
				obs = append(obs, fmt.Sprintf("%s %d", a, c))
			}
		}
		fmt.Fprintf(&b, "- Observed: %s.\n", strings.Join(obs, ", "))
		if len(f.Portable) > 0 {
			byArch := map[api.Arch][]string{}
			for _, e := range f.Portable {
				byArch[e.Arch] = append(byArch[e.Arch], fmt.Sprintf("`%s` for `%s`", e.Name, e.For))
			}
			for _, a := range slices.Sorted(maps.Keys(byArch)) {
				fmt.Fprintf(&b, "- Portable to %s: %s.\n", a, strings.Join(byArch[a], ", "))
			}
		}
		switch {
		case f.New:
			b.WriteString("- New policy.\n")
		default:
			if len(f.Added) > 0 {
				fmt.Fprintf(&b, "- **Widened**: %d calls added to the reviewed policy: %s.\n", len(f.Added), codeList(f.Added))
			}
			if len(f.Removed) > 0 {
				fmt.Fprintf(&b, "- **Narrowed** (--prune): %d calls removed: %s.\n", len(f.Removed), codeList(f.Removed))
			}
			if len(f.Kept) > 0 {
				fmt.Fprintf(&b, "- Not observed this time, kept from the reviewed policy (use --prune to drop): %s.\n", codeList(f.Kept))
			}
			if len(f.Added)+len(f.Removed) == 0 {
				b.WriteString("- Unchanged allowed calls.\n")
			}
		}
		if rs := riskyIn(f.Policy); len(rs) > 0 {
			b.WriteString("- Risky system calls allowed:\n")
			for _, r := range rs {
				fmt.Fprintf(&b, "  - `%s`: %s.\n", r, risky[r])
			}
		} else {
			b.WriteString("- No risky system call allowed.\n")
		}
	}
	if len(res.Skipped) > 0 {
		b.WriteString("\n## Not recommended\n\n")
		for _, s := range res.Skipped {
			fmt.Fprintf(&b, "- %s\n", s)
		}
	}
	return b.Bytes()
}

func share(n int) int { return (n*100 + DockerDefaultCount/2) / DockerDefaultCount }

func codeList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "`" + n + "`"
	}
	return strings.Join(q, ", ")
}
