// Package sim stands in for the kubelets and recorders of a cluster
// recording on an API server that runs no pods (internal/apitest): for
// each recorder Job it creates the pod the Job controller would, moves it
// through Running to Succeeded or Failed as a kubelet would, and serves
// the log a recorder would have written (cluster.LogSource). It is what
// the tests and the collection benchmark feed streams with; the real log
// path is proven on the real cluster.
package sim

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/discover/cluster"
)

// Node is what the simulated node does with its recorder.
type Node struct {
	// Report is what its recorder writes at the end (Report.Run is set
	// to the run's); nil writes none.
	Report *report.Report
	// NeverStarts: the pod stays Pending (an image that cannot be
	// pulled); NoPod: no pod is ever created (admission refused it).
	NeverStarts, NoPod bool
	// Fail ends the pod Failed with this termination message.
	Fail string
	// Cut keeps only this many bytes of the final log (a rotated log).
	Cut int
	// RecordFor is how long the recorder records before it writes its
	// report (0: the Job's --duration).
	RecordFor time.Duration
}

// Kubelets simulates the nodes. Start it with Run; it is a LogSource.
type Kubelets struct {
	Client    kubernetes.Interface
	Namespace string
	Nodes     map[string]*Node
	// Interval is how often it looks at the Jobs and pods (default 50 ms).
	Interval time.Duration

	mu   sync.Mutex
	logs map[string]*bytes.Buffer
	// Stops counts the pods it saw annotated kscmp.io/stop.
	stops map[string]bool
}

// Stopped returns the pods that were annotated kscmp.io/stop.
func (k *Kubelets) Stopped() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for p := range k.stops {
		out = append(out, p)
	}
	return out
}

// Run simulates until ctx ends.
func (k *Kubelets) Run(ctx context.Context) error {
	k.mu.Lock()
	k.logs, k.stops = map[string]*bytes.Buffer{}, map[string]bool{}
	k.mu.Unlock()
	iv := k.Interval
	if iv == 0 {
		iv = 50 * time.Millisecond
	}
	for {
		if err := k.step(ctx); err != nil && ctx.Err() == nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(iv):
		}
	}
}

// step creates the missing pods and moves the existing ones on.
func (k *Kubelets) step(ctx context.Context) error {
	jobs, err := k.Client.BatchV1().Jobs(k.Namespace).List(ctx, metav1.ListOptions{LabelSelector: cluster.LabelApp + "=" + cluster.AppName})
	if err != nil {
		return err
	}
	for i := range jobs.Items {
		j := &jobs.Items[i]
		node := k.Nodes[j.Annotations[cluster.AnnotationNode]]
		if node == nil || node.NoPod {
			continue
		}
		pod, err := k.Client.CoreV1().Pods(k.Namespace).Get(ctx, j.Name+"-sim", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			if err := k.create(ctx, j); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := k.advance(ctx, j, pod, node); err != nil {
			return err
		}
	}
	return nil
}

// create makes the Job's pod, as the Job controller would.
func (k *Kubelets) create(ctx context.Context, j *batchv1.Job) error {
	p := &corev1.Pod{ObjectMeta: *j.Spec.Template.ObjectMeta.DeepCopy(), Spec: *j.Spec.Template.Spec.DeepCopy()}
	p.Name, p.Namespace = j.Name+"-sim", k.Namespace
	p.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(j, batchv1.SchemeGroupVersion.WithKind("Job"))}
	_, err := k.Client.CoreV1().Pods(k.Namespace).Create(ctx, p, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("sim: create pod %s: %w", p.Name, err)
	}
	return nil
}

// advance moves a pod: Pending → Running (progress in its log) → at the
// end of its recording or on kscmp.io/stop, its report and Succeeded (or
// Failed).
func (k *Kubelets) advance(ctx context.Context, j *batchv1.Job, pod *corev1.Pod, node *Node) error {
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return nil
	case corev1.PodRunning:
	default:
		if node.NeverStarts {
			return nil
		}
		pod.Status.Phase = corev1.PodRunning
		pod.Status.StartTime = &metav1.Time{Time: time.Now()}
		k.write(pod.Name, func(w io.Writer) {
			fmt.Fprintln(w, "time=… level=INFO msg=\"recorder loaded\"")
			report.WriteProgress(w, report.Progress{Node: pod.Spec.NodeName, Workloads: workloads(node), Calls: 1})
		})
		_, err := k.Client.CoreV1().Pods(k.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	}
	recordFor := node.RecordFor
	if recordFor == 0 {
		recordFor = time.Duration(*j.Spec.ActiveDeadlineSeconds)*time.Second - 300*time.Second
	}
	_, stop := pod.Annotations[cluster.AnnotationStop]
	if stop {
		k.mu.Lock()
		k.stops[pod.Name] = true
		k.mu.Unlock()
	}
	if !stop && time.Since(pod.Status.StartTime.Time) < recordFor {
		return nil
	}
	k.finish(pod, j.Labels[cluster.LabelRun], node)
	pod.Status.Phase = corev1.PodSucceeded
	code := int32(0)
	if node.Fail != "" {
		pod.Status.Phase, code = corev1.PodFailed, 1
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: cluster.RecorderContainer,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Completed", Message: node.Fail}}}}
	_, err := k.Client.CoreV1().Pods(k.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	return err
}

// finish writes the recorder's report to the pod's log, cut if asked.
func (k *Kubelets) finish(pod *corev1.Pod, run string, node *Node) {
	k.write(pod.Name, func(w io.Writer) {
		if node.Report == nil {
			return
		}
		r := *node.Report
		r.Run, r.Node = run, pod.Spec.NodeName
		report.WriteStream(w, &r)
	})
	if node.Cut > 0 {
		k.mu.Lock()
		k.logs[pod.Name].Truncate(node.Cut)
		k.mu.Unlock()
	}
}

func (k *Kubelets) write(pod string, fn func(io.Writer)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.logs[pod]
	if b == nil {
		b = &bytes.Buffer{}
		k.logs[pod] = b
	}
	fn(b)
}

func workloads(n *Node) int {
	if n.Report == nil {
		return 0
	}
	return len(n.Report.Workloads)
}

// Log implements cluster.LogSource: the pod's log so far, or its last
// tailLines lines.
func (k *Kubelets) Log(_ context.Context, namespace, pod string, tailLines int64) (io.ReadCloser, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.logs[pod]
	if namespace != k.Namespace || b == nil {
		return nil, fmt.Errorf("sim: pods %q not found in namespace %s", pod, namespace)
	}
	data := bytes.Clone(b.Bytes())
	if tailLines > 0 {
		lines := strings.SplitAfter(string(data), "\n")
		if len(lines) > int(tailLines) {
			data = []byte(strings.Join(lines[len(lines)-int(tailLines):], ""))
		}
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}
