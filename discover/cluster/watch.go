package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/kubearmor/kscmp/api/report"
)

// The phases of a node while a run watches it (Status); the report's
// states (report.Node*) are what they become when it ends.
const (
	PhasePending   = "pending"   // no recorder pod yet
	PhaseScheduled = "scheduled" // pod created, not running
	PhaseRecording = "recording" // pod running
	PhaseDone      = "done"      // pod succeeded
	PhaseFailed    = "failed"    // pod failed
)

// NodeStatus is one node's progress.
type NodeStatus struct {
	Node, Pod, Phase string
	// Progress is the recorder's last progress line, when read.
	Progress *report.Progress
	// Error is why the pod failed (its termination message or reason).
	Error string
}

// Status is a run's progress, for people.
type Status struct {
	Run   string
	Nodes []NodeStatus
	// Phases counts the nodes per phase (and, while collecting, per
	// report state).
	Phases map[string]int
	// Workloads and Calls sum the recorders' last progress (while
	// recording) or the union's counts (while collecting).
	Workloads, Calls int
	// Left is the recording time left; Stopping says a stop was asked.
	Left     time.Duration
	Stopping bool
}

// tracker holds the run's nodes' states, shared by the watch loop, the
// progress reader and the collectors.
type tracker struct {
	mu    sync.Mutex
	run   string
	nodes map[string]*NodeStatus
	order []string
}

func newTracker(plan *Plan) *tracker {
	t := &tracker{run: plan.Run, nodes: map[string]*NodeStatus{}, order: slices.Clone(plan.Nodes)}
	for _, n := range plan.Nodes {
		t.nodes[n] = &NodeStatus{Node: n, Phase: PhasePending}
	}
	return t
}

// update sets each node's pod and phase from the pods (several pods of one
// node: the newest wins). It reports whether any phase changed.
func (t *tracker) update(pods []*corev1.Pod) bool {
	slices.SortFunc(pods, func(a, b *corev1.Pod) int {
		return a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time)
	})
	t.mu.Lock()
	defer t.mu.Unlock()
	changed := false
	for _, p := range pods {
		n := t.nodes[nodeOf(p)]
		if n == nil {
			continue
		}
		phase, msg := podPhase(p)
		changed = changed || n.Phase != phase || n.Pod != p.Name
		n.Pod, n.Phase, n.Error = p.Name, phase, msg
	}
	return changed
}

// nodeOf is the node a recorder pod records.
func nodeOf(p *corev1.Pod) string {
	if n := p.Annotations[AnnotationNode]; n != "" {
		return n
	}
	return p.Spec.NodeName
}

// podPhase maps a pod's status to a phase, with the reason of a failure.
func podPhase(p *corev1.Pod) (string, string) {
	switch p.Status.Phase {
	case corev1.PodRunning:
		return PhaseRecording, ""
	case corev1.PodSucceeded:
		return PhaseDone, ""
	case corev1.PodFailed:
		msg := strings.TrimSpace(p.Status.Reason + " " + p.Status.Message)
		for _, cs := range p.Status.ContainerStatuses {
			if tm := cs.State.Terminated; tm != nil && tm.ExitCode != 0 {
				msg = strings.TrimSpace(fmt.Sprintf("%s: exit code %d %s: %s", cs.Name, tm.ExitCode, tm.Reason, strings.TrimSpace(tm.Message)))
			}
		}
		if msg == "" {
			msg = "pod failed"
		}
		return PhaseFailed, msg
	}
	return PhaseScheduled, ""
}

// status returns a copy of the nodes' states.
func (t *tracker) status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Status{Run: t.run, Phases: map[string]int{}}
	for _, name := range t.order {
		n := *t.nodes[name]
		s.Nodes = append(s.Nodes, n)
		s.Phases[n.Phase]++
		if n.Progress != nil {
			s.Workloads += n.Progress.Workloads
			s.Calls += n.Progress.Calls
		}
	}
	return s
}

// in returns the nodes whose phase is one of phases.
func (t *tracker) in(phases ...string) []NodeStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []NodeStatus
	for _, name := range t.order {
		if n := t.nodes[name]; slices.Contains(phases, n.Phase) {
			out = append(out, *n)
		}
	}
	return out
}

func (t *tracker) setProgress(node string, p *report.Progress) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nodes[node].Progress = p
}

// podWatch is a watch (one LIST, then WATCH) of the run's pods in the
// recorder namespace: the API server sends changes, kscmp does not poll.
type podWatch struct {
	stop   chan struct{}
	lister listersv1.PodNamespaceLister
	sel    labels.Selector
}

func startPodWatch(ctx context.Context, client kubernetes.Interface, ns, run string) (*podWatch, error) {
	sel := labels.SelectorFromSet(labels.Set{LabelApp: AppName, LabelRun: run})
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel.String() }))
	inf := f.Core().V1().Pods()
	w := &podWatch{stop: make(chan struct{}), lister: inf.Lister().Pods(ns), sel: sel}
	inf.Informer()
	f.Start(w.stop)
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		close(w.stop)
		return nil, fmt.Errorf("watch recorder pods in namespace %s (selector %s): %w", ns, sel, context.Cause(ctx))
	}
	return w, nil
}

func (w *podWatch) pods() []*corev1.Pod {
	pods, _ := w.lister.List(w.sel)
	return pods
}

func (w *podWatch) close() { close(w.stop) }
