package merge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"

	"github.com/kubearmor/kscmp/api"
)

// argPool are values that make random conditions meet: small numbers,
// namespace flags, families, and the edges of the 32- and 64-bit ranges.
var argPool = []uint64{0, 1, 2, 3, 10, 16, 0x10000000, 0x40000000, 0x50000000, 0x7fffffff, 0xffffffff, 1 << 32, ^uint64(0)}

// condCalls are the calls random conditional rules name.
var condCalls = []string{"clone", "unshare", "socket", "personality", "ioctl"}

// randomConditional makes n policies of namespace ns selecting app=a0..a2
// with conditional rules (and some unconditional ones) on condCalls; the
// invalid ones (one call with two unconditional actions) are dropped.
func randomConditional(r *rand.Rand, n int) []*api.KubeArmorSeccompPolicy {
	var out []*api.KubeArmorSeccompPolicy
	for i := range n {
		p := policy("ns", fmt.Sprintf("c%d", i), map[string]string{"app": fmt.Sprintf("a%d", r.IntN(3))}, nil, "Allow:read")
		p.Spec.Seccomp = api.SeccompSpec{}
		for range 1 + r.IntN(4) {
			rule := api.Rule{Syscalls: []string{condCalls[r.IntN(len(condCalls))]}, Action: api.Actions[r.IntN(len(api.Actions))]}
			for _, idx := range r.Perm(3)[:r.IntN(3)] {
				op := api.ArgOperators[r.IntN(len(api.ArgOperators))]
				c := api.ArgCondition{Index: idx, Operator: op, Value: api.ArgValue(fmt.Sprint(argPool[r.IntN(len(argPool))]))}
				if op == api.OpMaskedEqual {
					a, b := argPool[r.IntN(len(argPool))], argPool[r.IntN(len(argPool))]
					m := a | b
					c.Mask = api.ArgValue(fmt.Sprint(m))
					c.Value = api.ArgValue(fmt.Sprint(argPool[r.IntN(len(argPool))] & m))
				}
				rule.Args = append(rule.Args, c)
			}
			p.Spec.Seccomp.Rules = append(p.Spec.Seccomp.Rules, rule)
		}
		if len(api.Validate(p)) == 0 {
			out = append(out, p)
		}
	}
	return out
}

// satisfying returns a random argument tuple for which every condition
// holds, or false when it finds none.
func satisfying(r *rand.Rand, conds []api.Resolved) ([6]uint64, bool) {
	var x [6]uint64
	for i := range x {
		x[i] = argPool[r.IntN(len(argPool))]
	}
	for _, c := range conds {
		v := c.Value
		switch c.Operator {
		case api.OpEqual:
			x[c.Index] = v
		case api.OpNotEqual:
			x[c.Index] = v + 1 + r.Uint64N(3)
		case api.OpLessThan, api.OpLessEqual:
			if v > 0 {
				x[c.Index] = r.Uint64N(v)
			}
		case api.OpGreaterThan, api.OpGreaterEqual:
			if v < ^uint64(0) {
				x[c.Index] = v + 1 + r.Uint64N(^uint64(0)-v)
			}
		case api.OpMaskedEqual:
			x[c.Index] = r.Uint64()&^c.Mask | c.Value
		}
	}
	return x, matchAll(conds, x)
}

// ociDecide evaluates an OCI profile as a runtime would for one call,
// and fails when two entries of different actions match it (libseccomp
// would then pick one by its own rules, not by deny-wins).
func ociDecide(t *testing.T, prof *specs.LinuxSeccomp, name string, x [6]uint64) api.Action {
	var got []specs.LinuxSeccompAction
	for _, e := range prof.Syscalls {
		if !slices.Contains(e.Names, name) {
			continue
		}
		args, err := parseOCIArgs(e.Args)
		if err != nil {
			t.Fatal(err)
		}
		if matchAll(args, x) {
			got = append(got, e.Action)
		}
	}
	got = slices.Compact(got)
	if len(got) > 1 {
		t.Fatalf("%s%v: OCI entries overlap with actions %v", name, x, got)
	}
	act := prof.DefaultAction
	if len(got) == 1 {
		act = got[0]
	}
	a, _ := api.ActionFromSeccomp(string(act))
	return a
}

// bpfDecide runs the in-process filter's BPF program on a seccomp_data
// for the native ABI (x/net/bpf's machine loads big-endian words, so each
// 32-bit word is written as the kernel's load would see it).
func bpfDecide(t *testing.T, vm *bpf.VM, native *arch.Info, name string, x [6]uint64) uint32 {
	nr, ok := native.SyscallNames[name]
	if !ok {
		t.Fatalf("%s: not a %s call", name, native.Name)
	}
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[0:], uint32(nr))
	binary.BigEndian.PutUint32(data[4:], uint32(native.ID))
	for i, v := range x {
		lo, hi := 16+8*i, 16+8*i+4
		if binary.NativeEndian.Uint16([]byte{0, 1}) == 1 { // big-endian host
			lo, hi = hi, lo
		}
		binary.BigEndian.PutUint32(data[lo:], uint32(v))
		binary.BigEndian.PutUint32(data[hi:], uint32(v>>32))
	}
	ret, err := vm.Run(data)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(ret) & 0xffff0000
}

// checkConditional is FuzzMerge's property for argument conditions: a call
// refused by any selecting policy under a condition is never allowed under
// that condition, and the OCI profile and the in-process filter take, for
// random tuples, exactly the action RuleSet.Decide takes.
func checkConditional(t *testing.T, r *rand.Rand, ps []*api.KubeArmorSeccompPolicy, tg Target, rs *RuleSet) {
	prof, err := rs.OCI()
	if err != nil {
		t.Fatal(err)
	}
	native, err := arch.GetInfo(runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	var vm *bpf.VM
	prog, _, err := rs.Program()
	switch {
	case errors.Is(err, ErrTooComplex): // refused, not compiled wrong
	case err != nil && len(prof.Syscalls) > 0:
		t.Fatal(err)
	case err == nil:
		if vm, err = bpf.NewVM(prog); err != nil {
			t.Fatal(err)
		}
	}
	bpfAction := map[api.Action]uint32{api.ActionAllow: uint32(seccomp.ActionAllow), api.ActionAudit: uint32(seccomp.ActionLog),
		api.ActionBlock: uint32(seccomp.ActionErrno), api.ActionKill: uint32(seccomp.ActionKillProcess)}
	same := func(name string, x [6]uint64) api.Action {
		want := rs.Decide(name, x)
		if got := ociDecide(t, prof, name, x); got != want {
			t.Fatalf("%s%#x: OCI profile says %s, the rule set %s\n%+v", name, x, got, want, rs.Lookup(name))
		}
		if vm == nil { // nothing listed: no filter to run
			return want
		}
		if got := bpfDecide(t, vm, native, name, x); got != bpfAction[want]&0xffff0000 {
			t.Fatalf("%s%#x: in-process filter returns %#x, the rule set %s\n%+v", name, x, got, want, rs.Lookup(name))
		}
		return want
	}
	for _, p := range ps {
		if !Selects(p, tg) {
			continue
		}
		for _, rule := range p.Spec.Seccomp.AllRules() {
			if len(rule.Args) == 0 || rule.Action.Canonical().Precedence() < api.ActionBlock.Precedence() {
				continue
			}
			conds := make([]api.Resolved, len(rule.Args))
			for i, a := range rule.Args {
				conds[i] = a.Resolve()
			}
			for range 8 {
				x, ok := satisfying(r, conds)
				if !ok {
					continue
				}
				for _, name := range rule.Syscalls {
					if got := same(name, x); got.Precedence() < rule.Action.Canonical().Precedence() {
						t.Fatalf("%s%#x: %s by %s under %s, but the profile says %s", name, x, rule.Action, p.Key(), describeArgs(conds), got)
					}
				}
			}
		}
	}
	for range 64 {
		var x [6]uint64
		for i := range x {
			x[i] = argPool[r.IntN(len(argPool))]
		}
		same(condCalls[r.IntN(len(condCalls))], x)
	}
}
