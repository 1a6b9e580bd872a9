package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/api/violation"
	"github.com/kubearmor/kscmp/discover/violations"
)

// scrape returns the metrics text the handler serves.
func scrapeMetrics(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

func podViolation(pod, container, syscall, action string, n uint64) violation.Violation {
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	return violation.Violation{Identity: report.Identity{Kind: report.KindPod, Namespace: "shop", Pod: pod, PodUID: "uid-" + pod,
		Container: container, Owner: &report.Owner{Kind: "ReplicaSet", Name: "web-5d4"}},
		Syscall: syscall, Number: 83, ABI: "x86_64", Action: action, Count: n, FirstSeen: t0, LastSeen: t0.Add(time.Second),
		Profile: "localhost/kubearmor/shop/web.json"}
}

// TestMetricsCardinalityBounded: past the series bound, new (namespace,
// workload, syscall) sets are counted under "other", the known ones keep
// their series, and nothing is lost.
func TestMetricsCardinalityBounded(t *testing.T) {
	m := NewMetrics(t.TempDir(), 2)
	m.AddViolations("shop", "ReplicaSet/web", "mkdir", violation.ActionBlock, 3)
	m.AddViolations("shop", "ReplicaSet/web", "chmod", violation.ActionAudit, 1)
	m.AddViolations("bank", "Pod/x", "ptrace", violation.ActionBlock, 5) // third set: other
	m.AddViolations("shop", "ReplicaSet/web", "mkdir", violation.ActionBlock, 2)
	m.AddViolations("bank", "Pod/y", "ptrace", violation.ActionBlock, 1) // other again
	m.AddLost(violation.Lost{Audit: 2, Overflow: 1})
	text := scrapeMetrics(t, m)
	for _, want := range []string{
		`kscmp_agent_violations_total{action="Block",namespace="shop",syscall="mkdir",workload="ReplicaSet/web"} 5`,
		`kscmp_agent_violations_total{action="Audit",namespace="shop",syscall="chmod",workload="ReplicaSet/web"} 1`,
		`kscmp_agent_violations_total{action="Block",namespace="other",syscall="other",workload="other"} 6`,
		`kscmp_agent_audit_lost_total{reason="audit"} 2`,
		`kscmp_agent_audit_lost_total{reason="overflow"} 1`,
		`kscmp_agent_profiles_installed 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepKscmp(text))
		}
	}
	if n := strings.Count(text, "kscmp_agent_violations_total{"); n != 3 {
		t.Errorf("%d violation series, want 3 (two + other):\n%s", n, grepKscmp(text))
	}
}

func grepKscmp(text string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "kscmp_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestReconcileMetrics: reconciles are timed and failures counted.
func TestReconcileMetrics(t *testing.T) {
	m := NewMetrics(t.TempDir(), 0)
	m.ObserveReconcile(3*time.Millisecond, nil)
	m.ObserveReconcile(time.Millisecond, context.Canceled)
	var nilM *Metrics
	nilM.ObserveReconcile(time.Second, nil) // off: no panic
	text := scrapeMetrics(t, m)
	for _, want := range []string{"kscmp_agent_reconcile_duration_seconds_count 2", "kscmp_agent_reconcile_errors_total 1"} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepKscmp(text))
		}
	}
}

// TestViolationEventsAggregated: one interval's report becomes one Event
// per pod container, call and action, carrying the count, largest first
// and at most MaxEvents; the rest are counted as dropped, all in the
// metrics and the summary; a process outside pods gets no Event.
func TestViolationEventsAggregated(t *testing.T) {
	kube := fake.NewClientset()
	m := NewMetrics(t.TempDir(), 0)
	w := newViolationWatch(kube, Options{Node: "node-a", Metrics: m, Logger: slog.New(slog.DiscardHandler),
		Violations: &ViolationOptions{MaxEvents: 2}})
	r := violation.New()
	r.Start = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	r.Violations = []violation.Violation{
		podViolation("web-1", "bb", "mkdir", violation.ActionBlock, 12),
		podViolation("web-1", "bb", "chmod", violation.ActionAudit, 1),
		podViolation("web-2", "bb", "mkdir", violation.ActionBlock, 40),
		{Identity: report.Identity{Kind: report.KindProcess, Exe: "/bin/x"}, Syscall: "mkdir", Action: violation.ActionBlock, Count: 7},
	}
	w.handle(context.Background(), r)
	w.handle(context.Background(), r) // a retried interval writes nothing twice
	evs, err := kube.CoreV1().Events("shop").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range evs.Items {
		got[e.InvolvedObject.Name+" "+e.Reason] = e.Message
		if e.Source.Component != EventComponent || e.InvolvedObject.Kind != "Pod" || e.InvolvedObject.FieldPath != "spec.containers{bb}" {
			t.Errorf("event %+v", e)
		}
	}
	want := map[string]string{
		"web-2 SeccompBlock": "kscmp refused mkdir 40 times in container bb (profile localhost/kubearmor/shop/web.json)",
		"web-1 SeccompBlock": "kscmp refused mkdir 12 times in container bb (profile localhost/kubearmor/shop/web.json)",
	}
	if len(got) != len(want) || len(evs.Items) != 2 {
		t.Fatalf("events %v (%d), want %v", got, len(evs.Items), want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("event %s: %q, want %q", k, got[k], v)
		}
	}
	text := scrapeMetrics(t, m)
	for _, w := range []string{"kscmp_agent_violation_events_dropped_total 2",
		`kscmp_agent_violations_total{action="Audit",namespace="shop",syscall="chmod",workload="ReplicaSet/web-5d4"} 2`,
		`kscmp_agent_violations_total{action="Block",namespace="",syscall="mkdir",workload="process"} 14`} {
		if !strings.Contains(text, w) {
			t.Errorf("metrics lack %s:\n%s", w, grepKscmp(text))
		}
	}
	sum := w.summaryOf("shop")
	if len(sum) != 3 || sum[0].Pod != "web-1" || sum[0].Syscall != "chmod" || sum[0].Count != 2 || sum[2].Count != 80 || sum[2].Profile == "" {
		t.Errorf("summary %+v", sum)
	}
}

// TestEventMessage names the call, count, container and profile.
func TestEventMessage(t *testing.T) {
	for _, c := range []struct {
		v    violation.Violation
		want string
	}{
		{podViolation("p", "bb", "mkdir", violation.ActionBlock, 1), "kscmp refused mkdir once in container bb (profile localhost/kubearmor/shop/web.json)"},
		{podViolation("p", "bb", "mkdir", violation.ActionAudit, 3), "kscmp logged (complain mode) mkdir 3 times in container bb (profile localhost/kubearmor/shop/web.json)"},
		{podViolation("p", "bb", "", violation.ActionKill, 2), "kscmp killed the process for system call 83 (x86_64) 2 times in container bb (profile localhost/kubearmor/shop/web.json)"},
	} {
		if got := EventMessage(c.v); got != c.want {
			t.Errorf("EventMessage: %q, want %q", got, c.want)
		}
	}
}

// TestViolationsByPolicy: a container's violations count for every policy
// its profile is made of, summed over containers; a profile the agent did
// not assign belongs to none; each policy keeps its largest lines only.
func TestViolationsByPolicy(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	assigned := []Assignment{
		{Pod: "web-1", Container: "bb", Path: "kubearmor/shop/a.json", Policies: []string{"shop/base", "shop/web"}},
		{Pod: "web-2", Container: "bb", Path: "kubearmor/shop/a.json", Policies: []string{"shop/base", "shop/web"}},
		{Pod: "db-1", Container: "db", Path: "kubearmor/shop/b.json", Policies: []string{"shop/base"}},
	}
	sum := []ViolationCount{
		{Namespace: "shop", Pod: "web-1", Container: "bb", Profile: "localhost/kubearmor/shop/a.json", Syscall: "mkdir", Action: "Block", Count: 2, LastSeen: t0},
		{Namespace: "shop", Pod: "web-2", Container: "bb", Profile: "localhost/kubearmor/shop/a.json", Syscall: "mkdir", Action: "Block", Count: 3, LastSeen: t0.Add(time.Second)},
		{Namespace: "shop", Pod: "db-1", Container: "db", Profile: "localhost/kubearmor/shop/b.json", Syscall: "ptrace", Action: "Audit", Count: 1, LastSeen: t0},
		{Namespace: "shop", Pod: "x", Container: "x", Profile: "runtime/default", Syscall: "mount", Action: "Block", Count: 9},
	}
	for i := range MaxPolicyViolations + 5 {
		sum = append(sum, ViolationCount{Namespace: "shop", Pod: "db-1", Container: "db", Profile: "localhost/kubearmor/shop/b.json",
			Syscall: fmt.Sprintf("call%02d", i), Action: "Audit", Count: 100})
	}
	got := ViolationsByPolicy(sum, assigned)
	web := got["shop/web"]
	if len(web) != 1 || web[0] != (PolicyViolationCount{Syscall: "mkdir", Action: "Block", Count: 5, LastSeen: t0.Add(time.Second)}) {
		t.Errorf("shop/web: %+v", web)
	}
	base := got["shop/base"]
	if len(base) != MaxPolicyViolations || base[0].Syscall != "call00" || base[0].Count != 100 {
		t.Errorf("shop/base: %d lines %+v", len(base), base)
	}
	if len(got) != 2 {
		t.Errorf("policies %v, want shop/web and shop/base only", slices.Collect(maps.Keys(got)))
	}
}

// TestViolationsProbeFallback: a node that cannot load the Exited or the
// exit-errors program (the sentinel errors of their probes) is watched on
// with audit records alone, the failed option off; an audit failure ends
// the watch.
func TestViolationsProbeFallback(t *testing.T) {
	var calls []violations.Options
	monitor := func(_ context.Context, o violations.Options) (*violation.Report, error) {
		calls = append(calls, o)
		switch {
		case o.AttributeExited:
			return nil, fmt.Errorf("%w: load: operation not permitted", violations.ErrExitedUnsupported)
		case o.ExitErrors != nil:
			return nil, fmt.Errorf("%w: attach: operation not permitted", violations.ErrExitErrorsUnsupported)
		}
		return nil, violations.ErrUnsupported
	}
	w := &violationWatch{log: slog.New(slog.DiscardHandler), opts: ViolationOptions{AttributeExited: true, Monitor: monitor,
		ExitErrors: func() ([]violations.Watch, error) { return nil, nil }}}
	w.run(context.Background(), nil)
	if len(calls) != 3 || !calls[0].AttributeExited || calls[1].AttributeExited || calls[1].ExitErrors == nil || calls[2].ExitErrors != nil {
		t.Errorf("monitor calls (AttributeExited, ExitErrors set): %v", func() (out [][2]bool) {
			for _, c := range calls {
				out = append(out, [2]bool{c.AttributeExited, c.ExitErrors != nil})
			}
			return out
		}())
	}
}
