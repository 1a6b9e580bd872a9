package merge

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kubearmor/kscmp/api"
)

// FuzzMerge checks the merger's invariants on random policy sets: the
// profile is valid JSON that reads back; a system call that any applicable
// policy blocks (or kills) is never allowed or only logged, explicitly or
// by the default (deny wins, complain mode included), and under a condition
// never for the arguments the condition matches (checkConditional); the
// output does not depend on
// the order of the policies; Set.Merge and Merge agree.
func FuzzMerge(f *testing.F) {
	f.Add(uint64(1), uint64(2), uint8(10), uint8(20), uint8(0), "a0")
	f.Add(uint64(7), uint64(9), uint8(40), uint8(80), uint8(1), "a1")
	f.Add(uint64(0), uint64(0), uint8(1), uint8(1), uint8(2), "")
	f.Fuzz(func(t *testing.T, s1, s2 uint64, n, k, rt uint8, app string) {
		r := rand.New(rand.NewPCG(s1, s2))
		ps := randomPolicies(r, 1+int(n%60), 1+int(k%100))
		for _, p := range ps {
			if p.Spec.Seccomp.AllowsAny() && r.IntN(2) == 0 {
				p.Spec.Seccomp.DefaultAction = api.ActionAudit // complain mode
			}
		}
		ps = append(ps, randomConditional(r, int(k%8))...)
		tg := Target{Namespace: "ns", Labels: map[string]string{"app": app, "tier": "t0"}, Runtime: Runtimes[int(rt)%len(Runtimes)]}
		rs, err := Merge(ps, tg)
		if errors.Is(err, ErrTooComplex) {
			t.Skip(err) // refused whole rather than compiled wrong
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := rs.MarshalOCI()
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON: %s", out)
		}
		if _, err := ParseOCI(out, "fuzz.json"); err != nil {
			t.Fatalf("profile does not read back: %v", err)
		}
		// Deny wins.
		for _, p := range ps {
			if !Selects(p, tg) {
				continue
			}
			for _, rule := range p.Spec.Seccomp.AllRules() {
				if len(rule.Args) > 0 {
					continue // checkConditional, per argument tuple
				}
				for _, name := range rule.Syscalls {
					e := rs.Lookup(name)
					if e == nil {
						t.Fatalf("%s from %s missing", name, p.Key())
					}
					if e.Action.Precedence() < rule.Action.Canonical().Precedence() {
						t.Fatalf("%s: %s by %s, but the profile says %s", name, rule.Action, p.Key(), e.Action)
					}
				}
			}
		}
		// Deny wins for the default too: a call no entry names gets the
		// strongest of the selecting policies' defaults, so a call one of
		// them refuses is never allowed or only logged.
		strongest := api.ActionAllow
		for _, p := range ps {
			if d := p.Spec.Seccomp.EffectiveDefault(); Selects(p, tg) && d.Precedence() > strongest.Precedence() {
				strongest = d
			}
		}
		if rs.DefaultAction != strongest {
			t.Fatalf("default %s, but the selecting policies' strongest default is %s", rs.DefaultAction, strongest)
		}
		if oci, err := rs.OCI(); err != nil {
			t.Fatal(err)
		} else if got := string(oci.DefaultAction); got != strongest.SeccompAction() {
			t.Fatalf("OCI default %s, want %s", got, strongest.SeccompAction())
		}
		if strongest == api.ActionBlock && bytes.Contains(rs.Systemd(), []byte("SystemCallLog=~")) {
			t.Fatal("the drop-in only logs what a selecting policy refuses")
		}
		if rs.AllowList() != slices.ContainsFunc(rs.Syscalls, func(s Syscall) bool {
			return slices.ContainsFunc(s.Sources, func(src Source) bool { return src.Kind == SourcePolicy && src.Action == api.ActionAllow })
		}) {
			t.Fatal("default action does not follow the allow rules")
		}
		checkConditional(t, r, ps, tg, rs)
		// Order independence.
		rev := slices.Clone(ps)
		slices.Reverse(rev)
		r.Shuffle(len(rev), func(i, j int) { rev[i], rev[j] = rev[j], rev[i] })
		rs2, err := NewSet(rev).Merge(tg)
		if err != nil {
			t.Fatal(err)
		}
		out2, _ := rs2.MarshalOCI()
		if !bytes.Equal(out, out2) || !bytes.Equal(rs.Systemd(), rs2.Systemd()) {
			t.Fatal("output depends on the order of the policies")
		}
	})
}
