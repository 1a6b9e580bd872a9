package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/kubearmor/kscmp/api"
)

// Reasons of the Events on policies (raised by the aggregator) and on node
// statuses (raised by a node's agent).
const (
	ReasonInstalled     = "Installed"     // the policy's current generation is installed on every node it selects a container on
	ReasonUninstalled   = "Uninstalled"   // no profile on any node is made with it any more
	ReasonRefused       = "Refused"       // the policy is invalid and not used
	ReasonInstallFailed = "InstallFailed" // writing a node's profiles failed
	ReasonDeleted       = "Deleted"       // the policy was deleted; the nodes' profiles were recomputed
)

// NodeStatusResource is the agents' per-node status resource.
var NodeStatusResource = schema.GroupVersionResource{Group: api.Group, Version: api.Version, Resource: api.NodeStatusPlural}

// AgentFieldManager is the server-side apply field manager of the agents.
const AgentFieldManager = "kscmp-agent"

// reporter keeps this node's KubeArmorSeccompNodeStatus equal to what the
// node has installed: one object per node, written by this agent alone
// with server-side apply, and only when its content changed. That is at
// most one API write per reconcile, whatever the number of nodes, and no
// other agent watches it (the aggregator does). It is not safe for
// concurrent use: the agent's one status worker owns it.
type reporter struct {
	dyn      dynamic.Interface
	node     string
	recorder record.EventRecorder
	state    map[string]api.NodePolicy // policy key → this node's entry
	written  string                    // the last object applied (JSON), "" before the first
	failed   map[string]string         // namespace → sync error last raised as an Event

	// profiles maps each profile path some container here is assigned to
	// the policies it is made of, from the reconciles; violations is the
	// node's violation summary as of the violation watch's last interval.
	// The two make the entries' violations, so that their counts change
	// at most once per violation interval whatever the reconciles do.
	profiles   map[string][]string
	violations []ViolationCount
}

func newReporter(kube kubernetes.Interface, dyn dynamic.Interface, node string) (*reporter, func()) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	rec := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kscmp-agent", Host: node}) // pods: typed; node statuses: unstructured
	return &reporter{dyn: dyn, node: node, recorder: rec, state: map[string]api.NodePolicy{}, failed: map[string]string{},
		profiles: map[string][]string{}}, b.Shutdown
}

// update replaces the entries of the namespace's policies (all namespaces
// for "") with what this node has installed now: gens holds the generation
// each installed policy was merged at (mergedGenerations). It talks to
// nobody: flush writes.
func (r *reporter) update(namespace string, gens map[string]int64, assigned []Assignment, syncErr error) {
	inScope := func(k string) bool { return namespace == "" || strings.HasPrefix(k, namespace+"/") }
	maps.DeleteFunc(r.state, func(k string, _ api.NodePolicy) bool { return inScope(k) })
	maps.DeleteFunc(r.profiles, func(path string, _ []string) bool {
		return namespace == "" || strings.HasPrefix(path, ProfileDir+"/"+namespace+"/")
	})
	for _, as := range assigned {
		r.profiles[as.Path] = as.Policies
	}
	installed := installedPolicies(assigned)
	msg := ""
	if syncErr != nil {
		msg = truncate(fmt.Sprintf("node %s: %v", r.node, syncErr))
	}
	for k := range installed {
		if g, ok := gens[k]; ok && inScope(k) {
			r.state[k] = api.NodePolicy{Policy: k, Generation: g, Error: msg}
		}
	}
	// One Event per failure, on this node's status object (not one per
	// policy): the policies' status names the failing nodes.
	if r.failed[namespace] != msg {
		r.failed[namespace] = msg
		if msg != "" {
			r.recorder.Event(r.object(), corev1.EventTypeWarning, ReasonInstallFailed, msg)
		}
	}
}

// object is this node's status object as the Event recorder needs it.
func (r *reporter) object() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(api.APIVersion)
	u.SetKind(api.NodeStatusKind)
	u.SetName(r.node)
	return u
}

// setViolations takes the node's violation summary of the interval that
// just ended (ViolationSummary): the next flush attributes it to the
// policies.
func (r *reporter) setViolations(summary []ViolationCount) {
	r.violations = summary
}

// policyViolations attributes the violation summary to the policies
// through the current assignments (ViolationsByPolicy).
func (r *reporter) policyViolations() map[string][]PolicyViolationCount {
	if len(r.violations) == 0 {
		return nil
	}
	assigned := make([]Assignment, 0, len(r.profiles))
	for path, ps := range r.profiles {
		assigned = append(assigned, Assignment{Path: path, Policies: ps})
	}
	return ViolationsByPolicy(r.violations, assigned)
}

// flush applies this node's status object when it differs from what was
// last applied. The whole state goes in every apply: entries left out are
// removed by server-side apply, since this field manager owned them.
func (r *reporter) flush(ctx context.Context) error {
	keys := slices.Sorted(maps.Keys(r.state))
	policies := make([]any, 0, len(keys))
	ok := int64(0)
	viol := r.policyViolations()
	for _, k := range keys {
		e := r.state[k]
		m := map[string]any{"policy": e.Policy, "generation": e.Generation}
		if e.Error != "" {
			m["error"] = e.Error
		} else {
			ok++
		}
		if vs := viol[k]; len(vs) > 0 {
			lines := make([]any, 0, len(vs))
			for _, v := range vs {
				l := map[string]any{"syscall": v.Syscall, "action": v.Action, "count": int64(min(v.Count, math.MaxInt64))}
				if !v.LastSeen.IsZero() {
					l["lastSeen"] = v.LastSeen.UTC().Truncate(time.Second).Format(time.RFC3339)
				}
				lines = append(lines, l)
			}
			m["violations"] = lines
		}
		policies = append(policies, m)
	}
	u := r.object()
	u.Object["installed"] = ok
	u.Object["policies"] = policies
	data, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	if string(data) == r.written {
		return nil
	}
	if _, err := r.dyn.Resource(NodeStatusResource).Apply(ctx, r.node, u, metav1.ApplyOptions{FieldManager: AgentFieldManager, Force: true}); err != nil {
		return fmt.Errorf("apply %s %s: %w", api.NodeStatusKind, r.node, err)
	}
	r.written = string(data)
	return nil
}

func truncate(s string) string {
	if len(s) > 1000 {
		return s[:997] + "..."
	}
	return s
}
