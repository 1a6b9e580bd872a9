package merge

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/kubearmor/kscmp/api"
)

// Explain writes, for people, what the rule set does and where each system
// call's action came from.
func (r *RuleSet) Explain(w io.Writer) error {
	ew := &errWriter{w: w}
	switch {
	case r.Complain():
		ew.printf("default action: %s (allow-list in complain mode: every system call not listed runs and is logged)\n", r.DefaultAction.SeccompAction())
	case r.AllowList():
		ew.printf("default action: %s (allow-list: every system call not listed fails with EPERM)\n", r.DefaultAction.SeccompAction())
	default:
		ew.printf("default action: %s (deny-list: every system call not listed runs)\n", r.DefaultAction.SeccompAction())
	}
	if len(r.DefaultSources) > 0 {
		ew.printf("default from: %s\n", describeDefault(r))
	}
	arches := make([]string, len(r.Arches))
	for i, a := range r.Arches {
		arches[i] = string(a)
	}
	ew.printf("architectures: %s\n", strings.Join(arches, " "))
	if len(r.Policies) > 0 {
		ew.printf("policies: %s\n", strings.Join(r.Policies, " "))
	}
	if r.Runtime != "" && r.Runtime != RuntimeNone {
		ew.printf("runtime start-up set: %s (%s)\n", r.Runtime, plural(len(r.Runtime.StartupSyscalls()), "system call"))
	}
	counts := make([]string, 0, len(api.Actions))
	for _, a := range api.Actions {
		if n := len(r.Names(a)); n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, a))
		}
	}
	ew.printf("%s (%s)\n", plural(len(r.Syscalls), "system call"), strings.Join(counts, ", "))
	for _, warn := range r.Warnings {
		ew.printf("warning: %s\n", warn)
	}
	ew.printf("\n")
	if ew.err != nil {
		return ew.err
	}

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SYSCALL\tACTION\tFROM")
	for _, s := range r.Syscalls {
		var won, lost []string
		for _, src := range s.Sources {
			if src.Condition != "" && slices.ContainsFunc(s.Conditional, func(c Conditional) bool {
				return c.Action == src.Action && describeArgs(c.Args) == src.Condition
			}) {
				continue // shown on its condition's line
			}
			desc := describe(src)
			if src.Condition != "" {
				desc += " if " + src.Condition
			}
			if src.Action == s.Action && src.Condition == "" {
				won = append(won, desc)
			} else {
				lost = append(lost, desc+" "+string(src.Action))
			}
		}
		from := strings.Join(won, ", ")
		if len(lost) > 0 {
			from += "; overrides " + strings.Join(lost, ", ")
		}
		act := string(s.Action)
		if act == "" {
			act = "(default)"
		}
		if s.Errno == ENOSYS {
			act += " (ENOSYS)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, act, strings.TrimPrefix(from, "; "))
		// Conditional actions, strongest first: the first that matches decides.
		for _, c := range s.Conditional {
			var srcs []string
			for _, src := range s.Sources {
				if src.Action == c.Action && src.Condition == describeArgs(c.Args) {
					srcs = append(srcs, describe(src))
				}
			}
			fmt.Fprintf(tw, "  if %s\t%s\t%s\n", describeArgs(c.Args), c.Action, strings.Join(srcs, ", "))
		}
	}
	return tw.Flush()
}

// describeDefault names the policies whose default won and those it
// overrides, as the table does for each system call.
func describeDefault(r *RuleSet) string {
	var won, lost []string
	for _, src := range r.DefaultSources {
		if src.Action == r.DefaultAction {
			won = append(won, describe(src))
		} else {
			lost = append(lost, describe(src)+" "+string(src.Action))
		}
	}
	s := strings.Join(won, ", ")
	if len(lost) > 0 {
		s += "; overrides " + strings.Join(lost, ", ")
	}
	return s
}

func describe(s Source) string {
	switch s.Kind {
	case SourceRuntime:
		return "runtime " + s.Name + " (start-up)"
	case SourceKernel:
		return "kernel (" + s.Name + ")"
	default:
		return string(s.Kind) + " " + s.Name
	}
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
