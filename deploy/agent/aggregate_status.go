package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubearmor/kscmp/api"
)

// Summarize is a policy's status from its entries on the nodes (node →
// entry) at generation gen: installed = entries of gen without an error,
// selected = all entries, failed = entries with an error (up to
// api.MaxFailures of them named, by node). refused is why the policy is
// invalid, "" when it is valid. Conditions have no transition time yet.
func Summarize(entries map[string]api.NodePolicy, gen int64, refused string) api.PolicyStatus {
	st := api.PolicyStatus{ObservedGeneration: gen, SelectedNodes: int32(len(entries)),
		InstalledNodes: []string{}, Failures: []api.NodeFailure{}}
	var installed []string
	for _, node := range slices.Sorted(maps.Keys(entries)) {
		e := entries[node]
		switch {
		case e.Error != "":
			st.FailedNodes++
			if len(st.Failures) < api.MaxFailures {
				st.Failures = append(st.Failures, api.NodeFailure{Node: node, Message: e.Error})
			}
		case e.Generation == gen:
			installed = append(installed, node)
		}
	}
	st.Nodes = int32(len(installed))
	if len(installed) <= api.MaxFailures {
		st.InstalledNodes = append(st.InstalledNodes, installed...)
	}
	st.Violations = sumViolations(entries)
	accepted := metav1.Condition{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Valid", Message: "the policy is valid"}
	if refused != "" {
		accepted = metav1.Condition{Type: "Accepted", Status: metav1.ConditionFalse, Reason: ReasonRefused, Message: truncate(refused)}
	}
	inst := metav1.Condition{Type: "Installed", Status: metav1.ConditionFalse}
	switch {
	case st.SelectedNodes == 0:
		inst.Reason, inst.Message = "NotSelected", "no node runs a container it selects"
	case st.FailedNodes > 0:
		inst.Reason, inst.Message = ReasonInstallFailed, fmt.Sprintf("failed on %d of %d nodes", st.FailedNodes, st.SelectedNodes)
	case st.Nodes < st.SelectedNodes:
		inst.Reason, inst.Message = "Pending", fmt.Sprintf("installed on %d of %d nodes", st.Nodes, st.SelectedNodes)
	default:
		inst.Status, inst.Reason, inst.Message = metav1.ConditionTrue, ReasonInstalled, fmt.Sprintf("installed on %d of %d nodes", st.Nodes, st.SelectedNodes)
	}
	for _, c := range []metav1.Condition{accepted, inst} {
		c.ObservedGeneration = gen
		st.Conditions = append(st.Conditions, c)
	}
	return st
}

// sumViolations sums the nodes' violation lines of one policy per call
// and action: counts added, the latest lastSeen, the nodes counted; the
// api.MaxViolations largest counts, then by call and action. A node's
// lines are its largest only, so a call spread thin over many nodes may be
// missing: the list says what is most refused, not everything.
func sumViolations(entries map[string]api.NodePolicy) []api.PolicyViolation {
	sums := map[[2]string]*api.PolicyViolation{}
	for _, e := range entries {
		for _, v := range e.Violations {
			k := [2]string{v.Syscall, v.Action}
			s := sums[k]
			if s == nil {
				s = &api.PolicyViolation{Syscall: v.Syscall, Action: v.Action}
				sums[k] = s
			}
			if s.Count > math.MaxInt64-v.Count {
				s.Count = math.MaxInt64
			} else {
				s.Count += v.Count
			}
			s.Nodes++
			if t := v.LastSeen.UTC().Truncate(time.Second); t.After(s.LastSeen.Time) {
				s.LastSeen = metav1.NewTime(t)
			}
		}
	}
	out := make([]api.PolicyViolation, 0, len(sums))
	for _, s := range sums {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b api.PolicyViolation) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Syscall, b.Syscall), cmp.Compare(a.Action, b.Action))
	})
	return out[:min(len(out), api.MaxViolations)]
}

// write brings one policy's status up to date, or raises its Deleted Event
// once a deleted policy is gone from every node.
func (g *Aggregator) write(ctx context.Context, key string) error {
	g.mu.Lock()
	entries := maps.Clone(g.byPolicy[key])
	g.mu.Unlock()
	obj, exists, err := g.policies.informer.GetIndexer().GetByKey(key)
	u, _ := obj.(*unstructured.Unstructured)
	if err != nil || !exists || u == nil {
		g.mu.Lock()
		defer g.mu.Unlock()
		delete(g.written, key)
		delete(g.seen, key)
		if n := g.had[key]; n > 0 && len(entries) == 0 {
			delete(g.had, key)
			ns, name, _ := strings.Cut(key, "/")
			gone := &unstructured.Unstructured{}
			gone.SetAPIVersion(api.APIVersion)
			gone.SetKind(api.Kind)
			gone.SetNamespace(ns)
			gone.SetName(name)
			g.recorder.Eventf(gone, corev1.EventTypeNormal, ReasonDeleted, "deleted: the profiles of its %d nodes were recomputed without it", n)
		}
		return nil
	}
	g.policies.parse(u)
	want := Summarize(entries, u.GetGeneration(), g.policies.Refused()[key])
	var cur api.PolicyStatus
	if m, ok := u.Object["status"].(map[string]any); ok {
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(m, &cur)
	}
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	for i := range want.Conditions {
		c := &want.Conditions[i]
		c.LastTransitionTime = now
		if old := findCondition(cur.Conditions, c.Type); old != nil && old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		}
	}
	if equality.Semantic.DeepEqual(want, cur) {
		return nil
	}
	if want.ObservedGeneration != cur.ObservedGeneration && rollingOut(want) {
		g.mu.Lock()
		s := g.seen[key]
		g.mu.Unlock()
		if s.generation == want.ObservedGeneration && time.Since(s.at) < g.opts.Hold {
			return errDeferred
		}
	}
	if pendingAgain(cur, want) || violationsAgain(cur, want) {
		wait := progressInterval
		if !pendingAgain(cur, want) {
			wait = g.opts.ViolationInterval
		}
		g.mu.Lock()
		last := g.written[key]
		g.mu.Unlock()
		if time.Since(last) < wait {
			return errDeferred
		}
	}
	if err := g.apply(ctx, u, want); err != nil {
		return err
	}
	g.mu.Lock()
	g.written[key] = time.Now()
	g.mu.Unlock()
	g.events(u, cur, want)
	return nil
}

// apply writes the status with server-side apply. Every field is given,
// zeros and empty lists included, so this manager owns them all: the old
// per-node lists that agents wrote with updates are replaced, not left
// behind.
func (g *Aggregator) apply(ctx context.Context, u *unstructured.Unstructured, st api.PolicyStatus) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
	if err != nil {
		return err
	}
	m["nodes"], m["selectedNodes"], m["failedNodes"] = int64(st.Nodes), int64(st.SelectedNodes), int64(st.FailedNodes)
	for _, f := range []string{"installedNodes", "failures", "violations"} {
		if _, ok := m[f]; !ok {
			m[f] = []any{}
		}
	}
	out := &unstructured.Unstructured{Object: map[string]any{"status": m}}
	out.SetAPIVersion(api.APIVersion)
	out.SetKind(api.Kind)
	out.SetNamespace(u.GetNamespace())
	out.SetName(u.GetName())
	_, err = g.dyn.Resource(PolicyResource).Namespace(u.GetNamespace()).ApplyStatus(ctx, u.GetName(), out,
		metav1.ApplyOptions{FieldManager: AggregatorFieldManager, Force: true})
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile; its informer event marks it again
	}
	if err != nil {
		return fmt.Errorf("apply status of %s %s/%s: %w", api.Kind, u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

// events raises one Event per transition of a policy (not per node):
// refused, installed everywhere it is selected, failing, uninstalled.
func (g *Aggregator) events(u *unstructured.Unstructured, cur, want api.PolicyStatus) {
	was := func(t string) *metav1.Condition { return findCondition(cur.Conditions, t) }
	acc, inst := findCondition(want.Conditions, "Accepted"), findCondition(want.Conditions, "Installed")
	if acc.Status == metav1.ConditionFalse {
		if old := was("Accepted"); old == nil || old.Status != acc.Status || old.Message != acc.Message {
			g.recorder.Event(u, corev1.EventTypeWarning, ReasonRefused, acc.Message)
		}
	}
	old := was("Installed")
	changed := old == nil || old.Reason != inst.Reason || old.ObservedGeneration != inst.ObservedGeneration
	switch {
	case !changed:
	case inst.Reason == ReasonInstalled:
		g.recorder.Event(u, corev1.EventTypeNormal, ReasonInstalled, inst.Message)
	case inst.Reason == ReasonInstallFailed:
		msg := inst.Message
		if len(want.Failures) > 0 {
			msg += "; " + want.Failures[0].Message
		}
		g.recorder.Event(u, corev1.EventTypeWarning, ReasonInstallFailed, truncate(msg))
	case inst.Reason == "NotSelected" && cur.SelectedNodes > 0:
		g.recorder.Event(u, corev1.EventTypeNormal, ReasonUninstalled, "no profile on any node uses it any more")
	}
}

// progressInterval is how often a rollout in progress (Installed=False,
// Pending, of one generation) updates its counts: a policy change is then
// two or three status versions (pending, done) whatever the time the nodes
// take, and every agent's watch receives each version.
const progressInterval = 10 * time.Second

// errDeferred: the status write waits for progressInterval.
var errDeferred = errors.New("deferred")

// rollingOut: the status is of a valid policy whose rollout is in
// progress (Installed=False, Pending): nothing failed, and not every node
// has it yet.
func rollingOut(st api.PolicyStatus) bool {
	acc, inst := findCondition(st.Conditions, "Accepted"), findCondition(st.Conditions, "Installed")
	return acc != nil && acc.Status == metav1.ConditionTrue && inst != nil && inst.Reason == "Pending"
}

// seenGeneration is when the aggregator first saw a policy's generation.
type seenGeneration struct {
	uid        types.UID
	generation int64
	at         time.Time
}

// pendingAgain: both statuses are a rollout in progress of the same
// generation, differing only in how far it got.
func pendingAgain(cur, want api.PolicyStatus) bool {
	c, w := findCondition(cur.Conditions, "Installed"), findCondition(want.Conditions, "Installed")
	return c != nil && w != nil && c.Reason == "Pending" && w.Reason == "Pending" &&
		cur.ObservedGeneration == want.ObservedGeneration && cur.FailedNodes == want.FailedNodes &&
		cur.SelectedNodes == want.SelectedNodes
}

// violationsAgain: the statuses differ only in their violations, and the
// current one already has some: a count that grew waits for the
// aggregator's ViolationInterval (the first violations are written at
// once). Each node's agent updates its counts once per its interval; with
// many nodes, the policy's status would otherwise follow every one.
func violationsAgain(cur, want api.PolicyStatus) bool {
	if len(cur.Violations) == 0 || equality.Semantic.DeepEqual(cur.Violations, want.Violations) {
		return false
	}
	c, w := cur, want
	c.Violations, w.Violations = nil, nil
	return equality.Semantic.DeepEqual(c, w)
}

func findCondition(cs []metav1.Condition, t string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}
