package recommend

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
)

// argSeen is what the observations of one policy-to-be say about the
// arguments of one call whose arguments are recorded (report.ArgCalls),
// over all its ABIs, containers and reports.
type argSeen struct {
	// any: some observation made the call without recorded arguments, or
	// with more distinct values than the recorder keeps (Overflow): any
	// argument may have been passed, so no condition is written.
	any bool
	// seen unions the recorded arguments.
	seen report.CallArgs
}

// addArgs records w's arguments of the recorded calls it made in into, per
// call. A call made without an entry in w.Args had its arguments not
// recorded (an older recorder, a violation report): it is marked any.
func addArgs(into map[string]*argSeen, w report.Workload) {
	for abi, names := range w.Syscalls {
		for _, n := range names {
			if !slices.Contains(report.ArgCalls(), n) {
				continue
			}
			s := into[n]
			if s == nil {
				s = &argSeen{}
				into[n] = s
			}
			c, ok := w.Args[abi][n]
			if !ok || c.Overflow || c.AnyNamespace {
				s.any = true
				continue
			}
			s.seen.Namespaces = append(s.seen.Namespaces, c.Namespaces...)
			s.seen.Families = append(s.seen.Families, c.Families...)
			s.seen.Values = append(s.seen.Values, c.Values...)
			s.seen.Options = append(s.seen.Options, c.Options...)
		}
	}
}

// unionArgs merges the argument observations of several containers.
func unionArgs(parts ...map[string]*argSeen) map[string]*argSeen {
	out := map[string]*argSeen{}
	for _, p := range parts {
		for n, s := range p {
			o := out[n]
			if o == nil {
				o = &argSeen{}
				out[n] = o
			}
			o.any = o.any || s.any
			o.seen.Namespaces = append(o.seen.Namespaces, s.seen.Namespaces...)
			o.seen.Families = append(o.seen.Families, s.seen.Families...)
			o.seen.Values = append(o.seen.Values, s.seen.Values...)
			o.seen.Options = append(o.seen.Options, s.seen.Options...)
		}
	}
	return out
}

// cloneNamespaces are the namespace flags clone may be refused: CLONE_NEWTIME
// (0x80) is left out, as Docker's default profile does, since in clone's
// first argument that bit belongs to the exit signal (CSIGNAL) and only
// clone3 and unshare create time namespaces.
const cloneNamespaces = 0x7e020000

// allNamespaces are every CLONE_NEW* flag, for unshare.
const allNamespaces = cloneNamespaces | 0x80

// Conditioned is what a recommended policy allows of one call whose
// arguments were recorded, for the rules and the summary.
type Conditioned struct {
	// Call is the system call's name.
	Call string
	// Args are the alternative conditions: the call is allowed when one of
	// them holds (one rule each). A single empty entry means the call
	// was only seen without creating anything (MaskedEqual with value 0).
	Args [][]api.ArgCondition
	// Words says it for people: "AF_INET, AF_INET6 only", "no new
	// namespaces".
	Words string
}

// conditionFor turns what was seen of call into the conditions that allow
// exactly that, and ok false when no condition can be written (arguments
// not recorded, overflow, every value seen, or a contradictory empty list
// for a call that always passes a value: then the call stays allowed with
// any arguments rather than refused on a guess).
func conditionFor(call string, s *argSeen) (Conditioned, bool) {
	if s == nil || s.any {
		return Conditioned{}, false
	}
	c := Conditioned{Call: call}
	switch call {
	case "clone", "unshare":
		all := uint64(cloneNamespaces)
		if call == "unshare" {
			all = allNamespaces
		}
		var seen uint64
		for _, n := range s.seen.Namespaces {
			v, _ := report.ArgValue(report.NamespaceFlags, n, 0)
			seen |= v
		}
		mask := all &^ seen
		if mask == 0 {
			return Conditioned{}, false
		}
		c.Args = [][]api.ArgCondition{{{Index: 0, Operator: api.OpMaskedEqual, Mask: flagNames(mask), Value: "0"}}}
		c.Words = "no new namespaces"
		if seen != 0 {
			c.Words = "no new namespaces but " + strings.ReplaceAll(string(flagNames(seen)), "|", ", ")
		}
		return c, true
	case "setns":
		return equalEach(c, 1, report.NamespaceFlags, s.seen.Namespaces, 0, " only")
	case "socket", "socketpair":
		return equalEach(c, 0, report.SocketFamilies, s.seen.Families, 62, " only")
	case "prctl":
		return equalEach(c, 0, report.PrctlOptions, s.seen.Options, 1<<32-1, " only")
	case "personality":
		var names []string
		for _, v := range s.seen.Values {
			names = append(names, strconv.FormatUint(uint64(v), 10))
		}
		c, ok := equalEach(c, 0, nil, names, 1<<32-1, " only")
		c.Words = "persona " + c.Words
		return c, ok
	}
	return Conditioned{}, false
}

// equalEach allows the call when argument index equals one of the report's
// names (of table, or numbers up to max): one Equal condition each, by
// value, written by symbol where api.ArgSymbols has the same name.
func equalEach(c Conditioned, index int, table map[uint64]string, names []string, max uint64, suffix string) (Conditioned, bool) {
	vals := map[uint64]bool{}
	for _, n := range names {
		if v, ok := report.ArgValue(table, n, max); ok {
			vals[v] = true
		}
	}
	if len(vals) == 0 {
		return Conditioned{}, false
	}
	var words []string
	for _, v := range slices.Sorted(maps.Keys(vals)) {
		name := report.ArgName(table, v)
		val := api.ArgValue(strconv.FormatUint(v, 10))
		if sym, ok := api.ArgSymbols[name]; ok && sym == v && table != nil {
			val = api.ArgValue(name)
		}
		c.Args = append(c.Args, []api.ArgCondition{{Index: index, Operator: api.OpEqual, Value: val}})
		words = append(words, name)
	}
	slices.Sort(words)
	c.Words = strings.Join(words, ", ") + suffix
	return c, true
}

// flagNames writes namespace flags as "CLONE_NEWNS|CLONE_NEWUSER", in the
// order of their values.
func flagNames(m uint64) api.ArgValue {
	var names []string
	for _, b := range bitsOf(m) {
		names = append(names, report.ArgName(report.NamespaceFlags, b))
	}
	return api.ArgValue(strings.Join(names, "|"))
}

// bitsOf lists the single bits of m, lowest first.
func bitsOf(m uint64) []uint64 {
	var out []uint64
	for b := uint64(1); b != 0 && b <= m; b <<= 1 {
		if m&b != 0 {
			out = append(out, b)
		}
	}
	return out
}

// clone3Fallback handles a workload seen making threads or children with
// clone3 only (glibc 2.34+): clone3's flags are in memory, unrecorded and
// unfilterable, so allowing it would allow every namespace. When the
// report recorded arguments (some recorded call has them) and neither
// clone nor clone3 is a reviewed any-arguments allow, clone is allowed
// without namespace flags instead, and clone3 left to merge's ENOSYS, on
// which the C library falls back to clone: Docker's and systemd's answer,
// proven for glibc, musl and Go by internal/ocitest's TestClone3Refused.
// It returns args with clone's entry added (a copy; args is not changed).
func clone3Fallback(allowed map[string]bool, args map[string]*argSeen, keep map[string]bool) map[string]*argSeen {
	if !allowed["clone3"] || allowed["clone"] || keep["clone3"] || keep["clone"] || args["clone"] != nil {
		return args
	}
	recorded := false
	for _, s := range args {
		recorded = recorded || !s.any
	}
	if !recorded {
		return args
	}
	out := maps.Clone(args)
	out["clone"] = &argSeen{}
	allowed["clone"] = true
	return out
}

// conditionRules takes out of allowed the calls whose observed arguments
// allow conditions and returns their Allow rules (calls with the same
// condition share a rule) and what each call became. keep are calls that
// stay unconditional: a reviewed policy allowed them with any arguments,
// and a recommendation never narrows a person's approval unless pruned.
// The rules are sorted by condition, then calls, so equal input gives
// equal bytes.
func conditionRules(allowed map[string]bool, args map[string]*argSeen, keep map[string]bool) ([]api.Rule, []Conditioned) {
	args = clone3Fallback(allowed, args, keep)
	var conds []Conditioned
	byArgs := map[string]*api.Rule{}
	for _, call := range slices.Sorted(maps.Keys(args)) {
		if !allowed[call] || keep[call] {
			continue
		}
		c, ok := conditionFor(call, args[call])
		if !ok {
			continue
		}
		delete(allowed, call)
		if call == "clone" && !keep["clone3"] {
			// merge refuses clone3 with ENOSYS whenever clone is
			// conditioned; listing it as allowed would only draw
			// merge's warning that it overrides the policy.
			delete(allowed, "clone3")
		}
		conds = append(conds, c)
		for _, a := range c.Args {
			key := fmt.Sprint(a)
			if r := byArgs[key]; r != nil {
				r.Syscalls = append(r.Syscalls, call)
				continue
			}
			byArgs[key] = &api.Rule{Syscalls: []string{call}, Action: api.ActionAllow, Args: a}
		}
	}
	var rules []api.Rule
	for _, r := range byArgs {
		slices.Sort(r.Syscalls)
		rules = append(rules, *r)
	}
	slices.SortFunc(rules, func(a, b api.Rule) int {
		return cmp.Or(strings.Compare(a.Syscalls[0], b.Syscalls[0]), strings.Compare(fmt.Sprint(a.Syscalls), fmt.Sprint(b.Syscalls)),
			strings.Compare(fmt.Sprint(a.Args), fmt.Sprint(b.Args)))
	})
	return rules, conds
}

// argWords says in words what f's conditions allow, call by call: "socket:
// AF_INET, AF_INET6, AF_UNIX only; clone: no new namespaces; clone3: refused
// with ENOSYS (libc falls back to clone)". Empty when nothing is
// conditioned.
func argWords(f File) string {
	var out []string
	clone := false
	for _, c := range f.Conditioned {
		out = append(out, c.Call+": "+c.Words)
		clone = clone || c.Call == "clone"
	}
	if clone {
		// merge refuses clone3 so whenever clone is conditioned
		// (clone3's flags are in memory seccomp cannot read).
		out = append(out, "clone3: refused with ENOSYS (libc falls back to clone)")
	}
	return strings.Join(out, "; ")
}
