package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/kubearmor/kscmp/api"
)

// Plan is what a run records: its name and its nodes, sorted.
type Plan struct {
	Run   string
	Nodes []string
}

// pageSize is the size of a list page: at 5,000 nodes and many pods a
// single list would be one response of tens of megabytes.
const pageSize = 500

// MakePlan lists the selected pods and returns their nodes; with no
// namespace and no selector, every Ready node. Options.Nodes restricts
// the nodes (a name that is not a node is an error). It refuses while
// another run is active, unless Options.Force.
func MakePlan(ctx context.Context, client kubernetes.Interface, o *Options, run string) (*Plan, error) {
	if err := ValidRun(run); err != nil {
		return nil, err
	}
	if !o.Force {
		active, err := activeRuns(ctx, client, o.RecorderNamespace)
		if err != nil {
			return nil, err
		}
		if len(active) > 0 {
			return nil, fmt.Errorf("namespace %s: run %s has recorders still running (collect it with --collect %s, wait for it, or --force): %w",
				o.RecorderNamespace, strings.Join(active, ", "), active[0], ErrRunActive)
		}
	}
	ready, all, err := nodes(ctx, client)
	if err != nil {
		return nil, err
	}
	want := ready
	if o.Namespace != "" || o.Selector != "" {
		if want, err = podNodes(ctx, client, o.Namespace, o.Selector); err != nil {
			return nil, err
		}
	}
	if len(o.Nodes) > 0 {
		for _, n := range o.Nodes {
			if !all[n] {
				return nil, fmt.Errorf("node %q: no such node: %w", n, ErrInvalid)
			}
		}
		want = filter(want, o.Nodes)
	}
	if len(want) == 0 {
		return nil, fmt.Errorf("namespace %q, selector %q, nodes %v: no running pod selected on any Ready node: %w", o.Namespace, o.Selector, o.Nodes, ErrNoNodes)
	}
	return &Plan{Run: run, Nodes: want}, nil
}

// filter keeps the names of have that are in only.
func filter(have, only []string) []string {
	var out []string
	for _, n := range have {
		if slices.Contains(only, n) {
			out = append(out, n)
		}
	}
	return out
}

// nodes lists the Ready nodes (sorted) and the set of all nodes.
func nodes(ctx context.Context, client kubernetes.Interface) ([]string, map[string]bool, error) {
	var ready []string
	all := map[string]bool{}
	opts := metav1.ListOptions{Limit: pageSize}
	for {
		l, err := client.CoreV1().Nodes().List(ctx, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("list nodes: %w", err)
		}
		for _, n := range l.Items {
			all[n.Name] = true
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready = append(ready, n.Name)
				}
			}
		}
		if opts.Continue = l.Continue; opts.Continue == "" {
			break
		}
	}
	slices.Sort(ready)
	return ready, all, nil
}

// podNodes returns the nodes (sorted) running a pod of namespace ("": all)
// that matches selector; pods that ended or are not scheduled are left out.
func podNodes(ctx context.Context, client kubernetes.Interface, namespace, selector string) ([]string, error) {
	sel, err := api.ParseLabels(selector)
	if err != nil {
		return nil, fmt.Errorf("selector %q: %v: %w", selector, err, ErrInvalid)
	}
	opts := metav1.ListOptions{Limit: pageSize, LabelSelector: labels.SelectorFromSet(sel).String()}
	set := map[string]bool{}
	for {
		l, err := client.CoreV1().Pods(namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list pods in namespace %q with selector %q: %w", namespace, selector, err)
		}
		for _, p := range l.Items {
			if p.Spec.NodeName != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				set[p.Spec.NodeName] = true
			}
		}
		if opts.Continue = l.Continue; opts.Continue == "" {
			break
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// activeRuns names the runs (sorted) that have a Job not finished yet.
func activeRuns(ctx context.Context, client kubernetes.Interface, ns string) ([]string, error) {
	runs, err := ListRuns(ctx, client, ns)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range runs {
		if r.Active > 0 {
			out = append(out, r.Name)
		}
	}
	return out, nil
}

// finished reports whether a Job has ended (Complete or Failed).
func finished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
