package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
)

// Reasons of the agent's Events on policies.
const (
	ReasonInstalled     = "Installed"     // a profile made with the policy is on the node
	ReasonUninstalled   = "Uninstalled"   // no profile on the node is made with it any more
	ReasonRefused       = "Refused"       // the policy is invalid and not used
	ReasonInstallFailed = "InstallFailed" // writing the node's profiles failed
	ReasonDeleted       = "Deleted"       // the policy was deleted; the node's profiles were recomputed
)

// reporter writes the policies' status (on how many nodes, which, errors)
// and Events. Each agent adds or removes only its own node, with
// optimistic concurrency (retried on conflict). It is not safe for
// concurrent use: the agent's one status worker owns it, so its maps need
// no lock.
type reporter struct {
	dyn      dynamic.Interface
	node     string
	recorder record.EventRecorder
	// reported: policy key → installed on this node, as last written.
	reported map[string]bool
	refused  map[string]string // policy key → why it was refused, as last reported
}

func newReporter(kube kubernetes.Interface, dyn dynamic.Interface, node string) (*reporter, func()) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	rec := b.NewRecorder(runtime.NewScheme(), corev1.EventSource{Component: "kscmp-agent", Host: node})
	return &reporter{dyn: dyn, node: node, recorder: rec, reported: map[string]bool{}, refused: map[string]string{}}, b.Shutdown
}

// report brings the status of the namespace's policies (all namespaces for
// "") up to date with what this node has installed, and raises Events for
// changes.
func (r *reporter) report(ctx context.Context, namespace string, objs []*unstructured.Unstructured, installed map[string]bool, refused map[string]string, syncErr error) {
	present := map[string]bool{}
	for _, u := range objs {
		present[u.GetNamespace()+"/"+u.GetName()] = true
	}
	// A deleted policy is forgotten: one made again under its name starts
	// with an empty status.
	for k, was := range r.reported {
		if !present[k] && (namespace == "" || strings.HasPrefix(k, namespace+"/")) {
			delete(r.reported, k)
			if was {
				ns, name, _ := strings.Cut(k, "/")
				gone := &unstructured.Unstructured{}
				gone.SetAPIVersion(PolicyResource.GroupVersion().String())
				gone.SetKind("KubeArmorSeccompPolicy")
				gone.SetNamespace(ns)
				gone.SetName(name)
				r.recorder.Eventf(gone, corev1.EventTypeNormal, ReasonDeleted, "deleted: the profiles of node %s were recomputed without it", r.node)
			}
		}
	}
	for k := range r.refused {
		if !present[k] && (namespace == "" || strings.HasPrefix(k, namespace+"/")) {
			delete(r.refused, k)
		}
	}
	for _, u := range objs {
		key := u.GetNamespace() + "/" + u.GetName()
		if why, bad := refused[key]; bad {
			if r.refused[key] != why {
				r.refused[key] = why
				r.recorder.Event(u, corev1.EventTypeWarning, ReasonRefused, truncate(why))
				r.setCondition(ctx, u, metav1.Condition{Type: "Accepted", Status: metav1.ConditionFalse, Reason: ReasonRefused, Message: truncate(why)})
			}
			continue
		}
		if _, was := r.refused[key]; was {
			delete(r.refused, key)
			r.setCondition(ctx, u, metav1.Condition{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Valid", Message: "the policy is valid"})
		}
		if syncErr != nil {
			r.recorder.Event(u, corev1.EventTypeWarning, ReasonInstallFailed, truncate(fmt.Sprintf("node %s: %v", r.node, syncErr)))
			continue
		}
		now, before := installed[key], r.reported[key]
		if prev, ok := r.reported[key]; ok && prev == now {
			continue
		}
		if err := r.setInstalled(ctx, u, now); err != nil {
			continue // retried at the next reconcile
		}
		r.reported[key] = now
		switch {
		case now && !before:
			r.recorder.Eventf(u, corev1.EventTypeNormal, ReasonInstalled, "installed on node %s", r.node)
		case !now && before:
			r.recorder.Eventf(u, corev1.EventTypeNormal, ReasonUninstalled, "no profile on node %s uses it any more", r.node)
		}
	}
}

func (r *reporter) setInstalled(ctx context.Context, u *unstructured.Unstructured, on bool) error {
	ri := r.dyn.Resource(PolicyResource).Namespace(u.GetNamespace())
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
		if err != nil {
			return err
		}
		nodes, _, _ := unstructured.NestedStringSlice(cur.Object, "status", "installedNodes")
		has := slices.Contains(nodes, r.node)
		switch {
		case on && !has:
			nodes = append(nodes, r.node)
		case !on && has:
			nodes = slices.DeleteFunc(nodes, func(n string) bool { return n == r.node })
		default:
			return nil
		}
		slices.Sort(nodes)
		anyNodes := make([]any, len(nodes))
		for i, n := range nodes {
			anyNodes[i] = n
		}
		unstructured.SetNestedSlice(cur.Object, anyNodes, "status", "installedNodes")
		unstructured.SetNestedField(cur.Object, int64(len(nodes)), "status", "nodes")
		unstructured.SetNestedField(cur.Object, cur.GetGeneration(), "status", "observedGeneration")
		_, err = ri.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

func (r *reporter) setCondition(ctx context.Context, u *unstructured.Unstructured, c metav1.Condition) {
	ri := r.dyn.Resource(PolicyResource).Namespace(u.GetNamespace())
	retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
		if err != nil {
			return nil
		}
		conds, _, _ := unstructured.NestedSlice(cur.Object, "status", "conditions")
		c.LastTransitionTime = metav1.NewTime(time.Now().UTC().Truncate(time.Second))
		c.ObservedGeneration = cur.GetGeneration()
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&c)
		if err != nil {
			return nil
		}
		conds = slices.DeleteFunc(conds, func(x any) bool {
			xm, _ := x.(map[string]any)
			return xm["type"] == c.Type
		})
		conds = append(conds, m)
		unstructured.SetNestedSlice(cur.Object, conds, "status", "conditions")
		_, err = ri.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
}

func truncate(s string) string {
	if len(s) > 1000 {
		return s[:997] + "..."
	}
	return s
}
