package discover

import (
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// StopAnnotation on the node recorder's own pod asks it to end early and
// still write its report (any value): `kscmp discover --cluster` sets it on
// Ctrl-C, through the API server, since the CLI cannot signal a process on a
// node.
const StopAnnotation = "kscmp.io/stop"

// AnnotationSet returns a channel that is closed once the pod
// namespace/name of this watcher's node carries the annotation key. It
// rides on the watcher's informer (the pod is one of this node's pods):
// no second watch on the API server. Call it before Start, or after: the
// informer replays the pods it has to a late handler.
func (w *PodWatcher) AnnotationSet(namespace, name, key string) (<-chan struct{}, error) {
	set := make(chan struct{})
	var once sync.Once
	check := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Namespace != namespace || p.Name != name {
			return
		}
		if _, ok := p.Annotations[key]; ok {
			once.Do(func() { close(set) })
		}
	}
	_, err := w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    check,
		UpdateFunc: func(_, obj any) { check(obj) },
	})
	if err != nil {
		return nil, fmt.Errorf("pod watcher: annotation %s of pod %s/%s: %w", key, namespace, name, err)
	}
	return set, nil
}
