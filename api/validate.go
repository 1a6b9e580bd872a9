package api

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Validate checks one policy and returns every problem found, each naming
// the field path (in the CRD form) and the value. It does not know the file;
// Parse and Load fill that in.
func Validate(p *KubeArmorSeccompPolicy) ErrorList {
	var errs ErrorList
	add := func(field, value, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Value: value, Detail: fmt.Sprintf(format, args...)})
	}

	if p.APIVersion != APIVersion {
		if p.APIVersion == "" {
			add("apiVersion", "", "missing: want %s", APIVersion)
		} else {
			add("apiVersion", p.APIVersion, "unknown group/version: want %s", APIVersion)
		}
	}
	if p.Kind != Kind {
		if p.Kind == "" {
			add("kind", "", "missing: want %s", Kind)
		} else {
			add("kind", p.Kind, "unknown kind: want %s", Kind)
		}
	}
	if p.Name == "" {
		add("metadata.name", "", "missing")
	} else if msgs := validation.IsDNS1123Subdomain(p.Name); len(msgs) > 0 {
		add("metadata.name", p.Name, "not a valid name: %s", strings.Join(msgs, "; "))
	}
	if p.Namespace == "" {
		add("metadata.namespace", "", "missing")
	} else if msgs := validation.IsDNS1123Label(p.Namespace); len(msgs) > 0 {
		add("metadata.namespace", p.Namespace, "not a valid namespace: %s", strings.Join(msgs, "; "))
	}

	s := &p.Spec
	if s.Severity != 0 && (s.Severity < 1 || s.Severity > 10) {
		add("spec.severity", strconv.Itoa(s.Severity), "must be between 1 and 10")
	}
	errs = append(errs, validateSelector(&s.Selector)...)
	for i, c := range s.Containers {
		f := fmt.Sprintf("spec.containers[%d]", i)
		if msgs := validation.IsDNS1123Label(c); len(msgs) > 0 {
			add(f, c, "not a valid container name: %s", strings.Join(msgs, "; "))
		} else if slices.Index(s.Containers, c) < i {
			add(f, c, "listed twice")
		}
	}
	for i, a := range s.Seccomp.Arch {
		f := fmt.Sprintf("spec.seccomp.arch[%d]", i)
		if !a.Valid() {
			add(f, string(a), "unknown architecture (want one of %s)", joinArches(Arches[:]))
		} else if slices.Index(s.Seccomp.Arch, a) < i {
			add(f, string(a), "listed twice")
		}
	}
	errs = append(errs, validateRules(&s.Seccomp)...)
	errs = append(errs, validateDefault(&s.Seccomp)...)
	return errs
}

// validateDefault checks spec.seccomp.defaultAction: Block or Audit, and
// only on an allow-list, since it says what happens to the calls the
// allow-list does not name (a deny-list lets them run already).
func validateDefault(sc *SeccompSpec) ErrorList {
	const f = "spec.seccomp.defaultAction"
	switch d := sc.DefaultAction; {
	case d == "":
		return nil
	case !slices.Contains(DefaultActions[:], d):
		return ErrorList{{Field: f, Value: string(d), Detail: "not a default action (want Block or Audit; Kill is only for named system calls)"}}
	case !sc.AllowsAny():
		return ErrorList{{Field: f, Value: string(d), Detail: "needs an allow-list: it applies to the system calls no Allow rule names, and the policy has no Allow rule"}}
	}
	return nil
}

func validateSelector(sel *Selector) ErrorList {
	var errs ErrorList
	add := func(field, value, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Value: value, Detail: fmt.Sprintf(format, args...)})
	}
	pods := len(sel.MatchLabels) > 0 || len(sel.MatchExpressions) > 0
	switch {
	case !pods && !sel.Host():
		add("spec.selector", "", "empty: a policy must select workloads by matchLabels, matchExpressions, systemdUnits or containerNames")
		return errs
	case pods && sel.Host():
		add("spec.selector", "", "selects pods (matchLabels, matchExpressions) and host workloads (systemdUnits, containerNames): use two policies")
		return errs
	}
	for i, u := range sel.SystemdUnits {
		f := fmt.Sprintf("spec.selector.systemdUnits[%d]", i)
		if err := ValidUnitName(UnitName(u)); err != nil {
			add(f, u, "%v", err)
		} else if slices.Index(sel.SystemdUnits, u) < i {
			add(f, u, "listed twice")
		}
	}
	for i, c := range sel.ContainerNames {
		f := fmt.Sprintf("spec.selector.containerNames[%d]", i)
		if err := ValidContainerName(c); err != nil {
			add(f, c, "%v", err)
		} else if slices.Index(sel.ContainerNames, c) < i {
			add(f, c, "listed twice")
		}
	}
	for _, k := range sortedKeys(sel.MatchLabels) {
		f := "spec.selector.matchLabels." + k
		if msgs := content.IsLabelKey(k); len(msgs) > 0 {
			add(f, k, "not a valid label key: %s", strings.Join(msgs, "; "))
		}
		if msgs := content.IsLabelValue(sel.MatchLabels[k]); len(msgs) > 0 {
			add(f, sel.MatchLabels[k], "not a valid label value: %s", strings.Join(msgs, "; "))
		}
	}
	for i, r := range sel.MatchExpressions {
		f := fmt.Sprintf("spec.selector.matchExpressions[%d]", i)
		if msgs := content.IsLabelKey(r.Key); len(msgs) > 0 {
			add(f+".key", r.Key, "not a valid label key: %s", strings.Join(msgs, "; "))
		}
		switch r.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(r.Values) == 0 {
				add(f+".values", "", "must not be empty with operator %s", r.Operator)
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(r.Values) > 0 {
				add(f+".values", strings.Join(r.Values, ","), "must be empty with operator %s", r.Operator)
			}
		default:
			add(f+".operator", string(r.Operator), "unknown operator (want In, NotIn, Exists or DoesNotExist)")
		}
		for j, v := range r.Values {
			if msgs := content.IsLabelValue(v); len(msgs) > 0 {
				add(fmt.Sprintf("%s.values[%d]", f, j), v, "not a valid label value: %s", strings.Join(msgs, "; "))
			}
		}
	}
	return errs
}

func validateRules(sc *SeccompSpec) ErrorList {
	var errs ErrorList
	add := func(field, value, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Value: value, Detail: fmt.Sprintf(format, args...)})
	}
	single := len(sc.Syscalls) > 0 || sc.Action != ""
	switch {
	case single && len(sc.Rules) > 0:
		add("spec.seccomp.rules", "", "give either spec.seccomp.syscalls with spec.seccomp.action, or spec.seccomp.rules, not both")
		return errs
	case !single && len(sc.Rules) == 0:
		add("spec.seccomp.syscalls", "", "empty: a policy must name at least one system call")
		return errs
	}

	type group struct {
		field   string
		rule    Rule
		nameFmt string
	}
	var groups []group
	if single {
		groups = append(groups, group{"spec.seccomp", Rule{Syscalls: sc.Syscalls, Action: sc.Action}, "spec.seccomp.syscalls[%d]"})
	} else {
		for i, r := range sc.Rules {
			f := fmt.Sprintf("spec.seccomp.rules[%d]", i)
			groups = append(groups, group{f, r, f + ".syscalls[%d]"})
		}
	}

	type seen struct {
		action Action
		field  string
	}
	first := make(map[string]seen)
	for _, g := range groups {
		switch {
		case g.rule.Action == "":
			add(g.field+".action", "", "missing: want one of Allow, Audit, Block, Deny, Kill")
		case !g.rule.Action.Valid():
			add(g.field+".action", string(g.rule.Action), "unknown action (want one of Allow, Audit, Block, Deny, Kill)")
		}
		if len(g.rule.Syscalls) == 0 {
			add(g.field+".syscalls", "", "empty: a rule must name at least one system call")
		}
		validateArgs(g.field, g.rule.Args, sc.Arch, add)
		for j, name := range g.rule.Syscalls {
			f := fmt.Sprintf(g.nameFmt, j)
			if !SyscallKnown(name, sc.Arch) {
				where := "any architecture kscmp knows"
				if len(sc.Arch) > 0 {
					where = joinArches(sc.Arch)
				}
				add(f, name, "unknown system call on %s", where)
				continue
			}
			if len(g.rule.Args) > 0 {
				continue // a conditional rule may refine another action of the call
			}
			prev, dup := first[name]
			if !dup {
				first[name] = seen{g.rule.Action.Canonical(), f}
				continue
			}
			if prev.action != g.rule.Action.Canonical() && g.rule.Action.Valid() && prev.action.Valid() {
				add(f, name, "system call has two actions in one policy: %s here, %s at %s", g.rule.Action, prev.action, prev.field)
			}
		}
	}
	return errs
}

func joinArches(as []Arch) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// UnitName returns u with ".service" added when it has no unit type suffix.
func UnitName(u string) string {
	if strings.Contains(u, ".") {
		return u
	}
	return u + ".service"
}
