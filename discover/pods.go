package discover

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kubearmor/kscmp/api/report"
)

const (
	byPodUID      = "podUID"
	byContainerID = "containerID"
)

// PodWatcher keeps the pods of one node in memory, from an informer that
// watches only that node's pods (a field selector on spec.nodeName: one LIST
// at start, then a WATCH; never a LIST per event), and completes the
// identities of containers from them. It implements PodLookup.
type PodWatcher struct {
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	node     string
}

// NewPodWatcher watches the pods of node through client.
func NewPodWatcher(client kubernetes.Interface, node string) (*PodWatcher, error) {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
		}))
	inf := factory.Core().V1().Pods().Informer()
	err := inf.AddIndexers(cache.Indexers{
		byPodUID: func(obj any) ([]string, error) {
			if p, ok := obj.(*corev1.Pod); ok {
				return []string{string(p.UID)}, nil
			}
			return nil, nil
		},
		byContainerID: func(obj any) ([]string, error) {
			p, ok := obj.(*corev1.Pod)
			if !ok {
				return nil, nil
			}
			var ids []string
			for _, st := range allStatuses(p) {
				if id := bareContainerID(st.ContainerID); id != "" {
					ids = append(ids, id)
				}
			}
			return ids, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("pod watcher: %w", err)
	}
	return &PodWatcher{factory: factory, informer: inf, node: node}, nil
}

// Start runs the informer until ctx is done and waits at most timeout for
// its first list.
func (w *PodWatcher) Start(ctx context.Context, timeout time.Duration) error {
	w.factory.Start(ctx.Done())
	wait, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !cache.WaitForCacheSync(wait.Done(), w.informer.HasSynced) {
		return fmt.Errorf("pod watcher: pods of node %s not listed within %s", w.node, timeout)
	}
	return nil
}

// Complete fills id from the pod with id.PodUID (or the pod whose status
// names id.ContainerID) and says what the id is in that pod. The container's
// name comes from the pod status that carries id.ContainerID (now, or in its
// last termination). The kubelet publishes that only after the container
// started, so until then the pod's only container is taken; once every
// container's id is published and none is this one, the id is the pod's
// sandbox (the pause process the runtime starts first, which runs none of
// the pod's code), and PodSandbox says so.
func (w *PodWatcher) Complete(id *report.Identity) PodMatch {
	var pod *corev1.Pod
	if id.ContainerID != "" {
		if objs, _ := w.informer.GetIndexer().ByIndex(byContainerID, id.ContainerID); len(objs) > 0 {
			pod = objs[0].(*corev1.Pod)
		}
	}
	if pod == nil && id.PodUID != "" {
		if objs, _ := w.informer.GetIndexer().ByIndex(byPodUID, id.PodUID); len(objs) > 0 {
			pod = objs[0].(*corev1.Pod)
		}
	}
	if pod == nil {
		return PodUnknown
	}
	id.Kind = report.KindPod
	id.Namespace, id.Pod, id.PodUID = pod.Namespace, pod.Name, string(pod.UID)
	id.Labels = maps.Clone(pod.Labels)
	id.Owner = ownerOf(pod)
	id.Container = ""
	for _, st := range allStatuses(pod) {
		last := ""
		if t := st.LastTerminationState.Terminated; t != nil {
			last = bareContainerID(t.ContainerID)
		}
		if id.ContainerID != "" && (bareContainerID(st.ContainerID) == id.ContainerID || last == id.ContainerID) {
			id.Container = st.Name
			if rt, _, ok := strings.Cut(st.ContainerID, "://"); ok && id.Runtime == "" {
				id.Runtime = rt
			}
		}
	}
	if id.Container != "" {
		return PodContainer
	}
	published := true
	for _, c := range pod.Spec.Containers {
		published = published && statusID(pod, c.Name) != ""
	}
	if published && id.ContainerID != "" {
		return PodSandbox
	}
	if len(pod.Spec.Containers) == 1 && len(pod.Spec.InitContainers) == 0 {
		id.Container = pod.Spec.Containers[0].Name
	}
	return PodContainer
}

// Profile returns the seccomp profile the pod of id (as Complete filled it)
// gives the container id.Container: "localhost/<file>" for a Localhost
// profile (as the kubelet's annotation spells it), "runtime/default",
// "unconfined", or "" when the pod or container is not known.
func (w *PodWatcher) Profile(id report.Identity) string {
	if id.PodUID == "" {
		return ""
	}
	objs, _ := w.informer.GetIndexer().ByIndex(byPodUID, id.PodUID)
	if len(objs) == 0 {
		return ""
	}
	pod := objs[0].(*corev1.Pod)
	var sp *corev1.SeccompProfile
	if pod.Spec.SecurityContext != nil {
		sp = pod.Spec.SecurityContext.SeccompProfile
	}
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if c.Name == id.Container && c.SecurityContext != nil && c.SecurityContext.SeccompProfile != nil {
			sp = c.SecurityContext.SeccompProfile
		}
	}
	switch {
	case sp == nil:
		return ""
	case sp.Type == corev1.SeccompProfileTypeLocalhost && sp.LocalhostProfile != nil:
		return "localhost/" + *sp.LocalhostProfile
	case sp.Type == corev1.SeccompProfileTypeRuntimeDefault:
		return "runtime/default"
	}
	return strings.ToLower(string(sp.Type))
}

// statusID is the published container id of the pod's container name, or "".
func statusID(pod *corev1.Pod, name string) string {
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name == name {
			return st.ContainerID
		}
	}
	return ""
}

// ownerOf returns the pod's controller; a ReplicaSet that a Deployment made
// (named <deployment>-<pod-template-hash>) is reported as that Deployment.
func ownerOf(pod *corev1.Pod) *report.Owner {
	for _, ref := range pod.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		if ref.Kind == "ReplicaSet" {
			if hash := pod.Labels["pod-template-hash"]; hash != "" {
				if name, ok := strings.CutSuffix(ref.Name, "-"+hash); ok {
					return &report.Owner{Kind: "Deployment", Name: name}
				}
			}
		}
		return &report.Owner{Kind: ref.Kind, Name: ref.Name}
	}
	return nil
}

func allStatuses(p *corev1.Pod) []corev1.ContainerStatus {
	out := append([]corev1.ContainerStatus{}, p.Status.ContainerStatuses...)
	out = append(out, p.Status.InitContainerStatuses...)
	return append(out, p.Status.EphemeralContainerStatuses...)
}

// bareContainerID strips the "<runtime>://" prefix of a container status id.
func bareContainerID(s string) string {
	if _, id, ok := strings.Cut(s, "://"); ok {
		return id
	}
	return s
}
