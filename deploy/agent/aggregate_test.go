package agent

import (
	"fmt"
	"testing"

	"github.com/kubearmor/kscmp/api"
)

// TestSummarizeBounded: the status of a policy on many nodes holds counts
// and at most api.MaxFailures names, whatever the number of nodes; an entry
// of an older generation is selected but not installed.
func TestSummarizeBounded(t *testing.T) {
	entries := map[string]api.NodePolicy{}
	for i := range 1000 {
		e := api.NodePolicy{Policy: "ns/p", Generation: 3}
		switch {
		case i < 25:
			e.Error = fmt.Sprintf("disk full on %d", i)
		case i < 40:
			e.Generation = 2
		}
		entries[fmt.Sprintf("node-%04d", i)] = e
	}
	st := Summarize(entries, 3, "")
	if st.Nodes != 960 || st.SelectedNodes != 1000 || st.FailedNodes != 25 {
		t.Fatalf("counts: installed %d, selected %d, failed %d; want 960, 1000, 25", st.Nodes, st.SelectedNodes, st.FailedNodes)
	}
	if len(st.Failures) != api.MaxFailures || st.Failures[0].Node != "node-0000" || st.Failures[0].Message != "disk full on 0" {
		t.Fatalf("failures: %+v", st.Failures)
	}
	if len(st.InstalledNodes) != 0 {
		t.Fatalf("the deprecated list must stay empty above %d nodes, got %d names", api.MaxFailures, len(st.InstalledNodes))
	}
	if c := findCondition(st.Conditions, "Installed"); c == nil || c.Status != "False" || c.Reason != ReasonInstallFailed {
		t.Fatalf("Installed condition: %+v", c)
	}
	small := Summarize(map[string]api.NodePolicy{"b": {Generation: 1}, "a": {Generation: 1}}, 1, "bad name")
	if len(small.InstalledNodes) != 2 || small.InstalledNodes[0] != "a" || findCondition(small.Conditions, "Installed").Status != "True" ||
		findCondition(small.Conditions, "Accepted").Status != "False" {
		t.Fatalf("small cluster: %+v", small)
	}
}

// TestRollingOut: only a valid policy's rollout in progress is held back
// (AggregatorOptions.Hold); done, failed, not selected or refused is
// written at once.
func TestRollingOut(t *testing.T) {
	entries := map[string]api.NodePolicy{"a": {Generation: 2}, "b": {Generation: 1}}
	for _, c := range []struct {
		name string
		st   api.PolicyStatus
		want bool
	}{
		{"pending", Summarize(entries, 2, ""), true},
		{"all installed", Summarize(map[string]api.NodePolicy{"a": {Generation: 2}}, 2, ""), false},
		{"failed", Summarize(map[string]api.NodePolicy{"a": {Generation: 2, Error: "disk full"}, "b": {Generation: 1}}, 2, ""), false},
		{"not selected", Summarize(nil, 2, ""), false},
		{"refused", Summarize(entries, 2, "unknown system call"), false},
	} {
		if got := rollingOut(c.st); got != c.want {
			t.Errorf("%s: rollingOut = %v, want %v", c.name, got, c.want)
		}
	}
}
