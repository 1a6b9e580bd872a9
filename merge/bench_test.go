package merge

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubearmor/kscmp/api"
)

// benchPolicies makes the load: 10,000 policies of ~100 system calls
// each, over 1,000 workloads (app=w0..w999), so that 10 policies select each
// target; one policy in ten also blocks a few calls.
func benchPolicies() ([]*api.KubeArmorSeccompPolicy, []Target) {
	r := rand.New(rand.NewPCG(42, 42))
	table := api.ArchX86_64.Table().SyscallNames
	all := make([]string, 0, len(table))
	for n := range table {
		all = append(all, n)
	}
	slices.Sort(all)
	const nPolicies, nTargets = 10000, 1000
	ps := make([]*api.KubeArmorSeccompPolicy, 0, nPolicies)
	for i := range nPolicies {
		perm := r.Perm(len(all))
		allow := make([]string, 0, 100)
		for _, j := range perm[:100] {
			allow = append(allow, all[j])
		}
		rules := []api.Rule{{Syscalls: allow, Action: api.ActionAllow}}
		if i%10 == 0 {
			var block []string
			for _, j := range perm[100:105] {
				block = append(block, all[j])
			}
			rules = append(rules, api.Rule{Syscalls: block, Action: api.ActionBlock})
		}
		ps = append(ps, &api.KubeArmorSeccompPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: api.APIVersion, Kind: api.Kind},
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "ns"},
			Spec: api.PolicySpec{
				Selector: api.Selector{MatchLabels: map[string]string{"app": fmt.Sprintf("w%d", i%nTargets)}},
				Seccomp:  api.SeccompSpec{Rules: rules},
			},
		})
	}
	targets := make([]Target, nTargets)
	for i := range targets {
		targets[i] = Target{Namespace: "ns", Labels: map[string]string{"app": fmt.Sprintf("w%d", i), "pod-template-hash": "5d8f9"}}
	}
	return ps, targets
}

// BenchmarkMergeCompile1000Targets is the benchmark: index 10,000
// policies, then merge and compile the OCI profile of 1,000 targets. One op
// is the whole job.
func BenchmarkMergeCompile1000Targets(b *testing.B) {
	ps, targets := benchPolicies()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	for b.Loop() {
		set := NewSet(ps)
		for _, t := range targets {
			rs, err := set.Merge(t)
			if err != nil {
				b.Fatal(err)
			}
			if len(rs.Policies) != 10 {
				b.Fatalf("%d policies select %s, want 10", len(rs.Policies), t)
			}
			if _, err := rs.MarshalOCI(); err != nil {
				b.Fatal(err)
			}
		}
	}
	runtime.ReadMemStats(&after)
	perTarget := float64(after.Mallocs-before.Mallocs) / float64(b.N) / float64(len(targets))
	b.ReportMetric(perTarget, "allocs/target")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/float64(len(targets)), "B/target")
}

// BenchmarkMergeCompileOneTarget merges and compiles one target of the same
// load, with the index built once (the agent's steady state).
func BenchmarkMergeCompileOneTarget(b *testing.B) {
	ps, targets := benchPolicies()
	set := NewSet(ps)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rs, err := set.Merge(targets[i%len(targets)])
		if err != nil {
			b.Fatal(err)
		}
		if _, err := rs.MarshalOCI(); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkMergeScan is the same job without the index (Merge over the
// whole list for every target), to show what the index saves.
func BenchmarkMergeScan(b *testing.B) {
	ps, targets := benchPolicies()
	b.ReportAllocs()
	for b.Loop() {
		for _, t := range targets[:100] {
			if _, err := Merge(ps, t); err != nil {
				b.Fatal(err)
			}
		}
	}
}
