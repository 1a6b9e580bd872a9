package merge

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/kubearmor/kscmp/api"
)

// Conditional is one action a system call gets when its arguments satisfy
// every condition of Args.
type Conditional struct {
	Action api.Action     `json:"action"`
	Args   []api.Resolved `json:"args"`
}

// ErrTooComplex means the conditions of one system call cannot be compiled
// into at most maxTerms disjoint seccomp entries.
var ErrTooComplex = errors.New("argument conditions too complex to compile")

// maxTerms bounds the disjoint entries of one system call: each refusal
// under a condition splits the allowed region, and a profile a runtime
// loads must stay small.
const maxTerms = 256

// describeArgs renders a conjunction for people: "arg0 & 0x10000000 == 0 && arg1 == 0x2".
func describeArgs(args []api.Resolved) string {
	s := make([]string, len(args))
	for i, a := range args {
		s[i] = a.String()
	}
	return strings.Join(s, " && ")
}

// matchAll reports whether the argument tuple satisfies every condition.
func matchAll(args []api.Resolved, x [6]uint64) bool {
	for _, a := range args {
		if a.Index < 0 || a.Index > 5 || !a.Match(x[a.Index]) {
			return false
		}
	}
	return true
}

// Decide returns the action the rule set takes for a call with the
// argument tuple x: the first (strongest) conditional entry that matches,
// else the call's unconditional action, else the default. It is the
// semantics every compiled form must have, and what the tests check them
// against.
func (r *RuleSet) Decide(name string, x [6]uint64) api.Action {
	s := r.Lookup(name)
	if s == nil {
		return r.DefaultAction
	}
	for _, c := range s.Conditional {
		if matchAll(c.Args, x) {
			return c.Action
		}
	}
	if s.Action != "" {
		return s.Action
	}
	return r.DefaultAction
}

// settleConditional orders a call's conditional entries strongest first
// (ties by their text, for determinism), drops duplicates and the entries
// that cannot change the result because the unconditional action is at
// least as strong (deny wins: the result is the strongest action of every
// rule that matches).
func settleConditional(s *Syscall) {
	if len(s.Conditional) == 0 {
		return
	}
	base := s.Action.Precedence()
	s.Conditional = slices.DeleteFunc(s.Conditional, func(c Conditional) bool { return c.Action.Precedence() <= base })
	slices.SortStableFunc(s.Conditional, func(a, b Conditional) int {
		if d := b.Action.Precedence() - a.Action.Precedence(); d != 0 {
			return d
		}
		return strings.Compare(describeArgs(a.Args), describeArgs(b.Args))
	})
	s.Conditional = slices.CompactFunc(s.Conditional, func(a, b Conditional) bool {
		return a.Action == b.Action && describeArgs(a.Args) == describeArgs(b.Args)
	})
	if len(s.Conditional) == 0 {
		s.Conditional = nil
	}
}

// region is one disjoint piece of a call's argument space with its action:
// a disjunction of conjunctions (terms). A term with no condition is every
// argument tuple.
type region struct {
	action api.Action
	terms  [][]api.Resolved
}

// regions splits a call's decision into disjoint regions, one per
// conditional entry and one for the unconditional action, leaving out the
// allowed regions of a deny-list (its default runs them); refusals stay
// listed in an allow-list, as unconditional ones always have. Each
// entry's region is its conditions minus every stronger entry's, so the
// compiled entries never overlap and any evaluation order (libseccomp
// merges rules into a tree; go-seccomp-bpf tests them in order) gives the
// deny-wins result.
func (s *Syscall) regions(def api.Action) ([]region, error) {
	var out []region
	for i, c := range s.Conditional {
		terms := [][]api.Resolved{c.Args}
		for _, d := range s.Conditional[:i] {
			if d.Action == c.Action {
				continue // an overlap of one action decides nothing
			}
			if _, meet := simplify(append(slices.Clone(c.Args), d.Args...)); !meet {
				continue // disjoint already: no need to split
			}
			var err error
			if terms, err = andDNF(terms, negate(d.Args)); err != nil {
				return nil, fmt.Errorf("%s: %w", s.Name, err)
			}
		}
		if listed(c.Action, def) && len(terms) > 0 {
			out = append(out, region{c.Action, terms})
		}
	}
	if s.Action == "" || !listed(s.Action, def) {
		return out, nil
	}
	rest := [][]api.Resolved{nil} // what no conditional entry matches
	for _, d := range s.Conditional {
		var err error
		if rest, err = andDNF(rest, negate(d.Args)); err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name, err)
		}
	}
	if len(rest) > 0 {
		out = append(out, region{s.Action, rest})
	}
	return out, nil
}

// listed reports whether a region of action a is written out under the
// default action def: all but Allow in a deny-list.
func listed(a, def api.Action) bool { return a != api.ActionAllow || def != api.ActionAllow }

// negate returns ¬(p1 ∧ … ∧ pk) as a disjunction of terms: ¬p1 ∨ … ∨ ¬pk.
// MaskedEqual has no negated operator; (x & m) != v is "some bit of m
// differs from v", one single-bit MaskedEqual per bit of m.
func negate(args []api.Resolved) [][]api.Resolved {
	var out [][]api.Resolved
	for _, a := range args {
		n := api.Resolved{Index: a.Index, Value: a.Value}
		switch a.Operator {
		case api.OpEqual:
			n.Operator = api.OpNotEqual
		case api.OpNotEqual:
			n.Operator = api.OpEqual
		case api.OpLessThan:
			n.Operator = api.OpGreaterEqual
		case api.OpLessEqual:
			n.Operator = api.OpGreaterThan
		case api.OpGreaterThan:
			n.Operator = api.OpLessEqual
		case api.OpGreaterEqual:
			n.Operator = api.OpLessThan
		case api.OpMaskedEqual:
			if a.Value&^a.Mask != 0 {
				return [][]api.Resolved{nil} // never true: its negation always is
			}
			for m := a.Mask; m != 0; m &= m - 1 {
				bit := m & -m
				out = append(out, []api.Resolved{{Index: a.Index, Operator: api.OpMaskedEqual, Mask: bit, Value: bit &^ a.Value}})
			}
			continue
		}
		out = append(out, []api.Resolved{n})
	}
	return out
}

// andDNF returns (a1 ∨ a2 …) ∧ (b1 ∨ b2 …) as simplified terms, dropping
// the contradictions.
func andDNF(a, b [][]api.Resolved) ([][]api.Resolved, error) {
	var out [][]api.Resolved
	for _, x := range a {
		for _, y := range b {
			t, ok := simplify(append(slices.Clone(x), y...))
			if !ok {
				continue
			}
			if len(out) == maxTerms {
				return nil, fmt.Errorf("%w: more than %d entries", ErrTooComplex, maxTerms)
			}
			out = append(out, t)
		}
	}
	return out, nil
}

// simplify folds the conditions of one term per argument, so that the
// result has one comparison per argument where one can say it (libseccomp
// takes one per argument and rule): equal masks merge, an Equal decides
// the others, bounds narrow to the tightest. It reports false for a term
// no tuple satisfies.
func simplify(t []api.Resolved) ([]api.Resolved, bool) {
	var out []api.Resolved
	for idx := range 6 {
		var (
			eq         *uint64
			lo, hi     uint64 = 0, math.MaxUint64
			mask, val  uint64
			ne, others []api.Resolved
		)
		for _, c := range t {
			if c.Index != idx {
				continue
			}
			switch c.Operator {
			case api.OpEqual:
				if eq != nil && *eq != c.Value {
					return nil, false
				}
				v := c.Value
				eq = &v
			case api.OpLessThan:
				if c.Value == 0 {
					return nil, false
				}
				hi = min(hi, c.Value-1)
			case api.OpLessEqual:
				hi = min(hi, c.Value)
			case api.OpGreaterThan:
				if c.Value == math.MaxUint64 {
					return nil, false
				}
				lo = max(lo, c.Value+1)
			case api.OpGreaterEqual:
				lo = max(lo, c.Value)
			case api.OpMaskedEqual:
				if c.Value&^c.Mask != 0 || (val^c.Value)&mask&c.Mask != 0 {
					return nil, false
				}
				mask, val = mask|c.Mask, val|c.Value
			case api.OpNotEqual:
				if !slices.Contains(ne, c) {
					ne = append(ne, c)
				}
			default:
				others = append(others, c)
			}
		}
		if lo > hi {
			return nil, false
		}
		all := slices.Clone(ne)
		if mask != 0 {
			all = append(all, api.Resolved{Index: idx, Operator: api.OpMaskedEqual, Mask: mask, Value: val})
		}
		if eq != nil {
			probe := append(all, api.Resolved{Index: idx, Operator: api.OpGreaterEqual, Value: lo}, api.Resolved{Index: idx, Operator: api.OpLessEqual, Value: hi})
			var x [6]uint64
			x[idx] = *eq
			if !matchAll(probe, x) {
				return nil, false
			}
			out = append(out, api.Resolved{Index: idx, Operator: api.OpEqual, Value: *eq})
			continue
		}
		if lo == hi {
			// One value left: Equal, if the others allow it.
			var x [6]uint64
			x[idx] = lo
			if !matchAll(all, x) {
				return nil, false
			}
			out = append(out, api.Resolved{Index: idx, Operator: api.OpEqual, Value: lo})
			continue
		}
		if lo > 0 {
			all = append(all, api.Resolved{Index: idx, Operator: api.OpGreaterEqual, Value: lo})
		}
		if hi < math.MaxUint64 {
			all = append(all, api.Resolved{Index: idx, Operator: api.OpLessEqual, Value: hi})
		}
		out = append(out, append(all, others...)...)
	}
	return out, true
}

// ENOSYS is the errno of a call refused as if the kernel lacked it.
const ENOSYS = 38

// clone3ENOSYS refuses clone3 with ENOSYS when clone's arguments are
// filtered: clone3 takes its flags in memory, which seccomp cannot read,
// so allowing it would let a program create the namespaces clone may not
// (Docker's default profile does the same). ENOSYS, not EPERM, makes the C
// library fall back to clone (glibc's pthread_create does). A policy that
// allows clone3 is overridden and warned about; one that kills it wins.
func clone3ENOSYS(rs *RuleSet) {
	clone := rs.Lookup("clone")
	if clone == nil || len(clone.Conditional) == 0 {
		return
	}
	src := Source{Kind: SourceArgs, Name: "clone", Action: api.ActionBlock}
	e := rs.Lookup("clone3")
	if e == nil {
		rs.Syscalls = append(rs.Syscalls, Syscall{Name: "clone3"})
		slices.SortFunc(rs.Syscalls, func(a, b Syscall) int { return strings.Compare(a.Name, b.Name) })
		e = rs.Lookup("clone3")
	}
	if e.Action == api.ActionAllow || e.Action == api.ActionAudit {
		rs.Warnings = append(rs.Warnings, fmt.Sprintf("clone3 is %s by policy, but clone's flags are filtered and clone3's cannot be: clone3 is refused with ENOSYS (the C library falls back to clone)", verb(e.Action)))
		slices.Sort(rs.Warnings)
	}
	if e.Action != api.ActionKill {
		e.Action, e.Errno, e.Conditional = api.ActionBlock, ENOSYS, nil
	}
	e.Sources = append(e.Sources, src)
	slices.SortFunc(e.Sources, compareSource)
}
