package agent

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// lastApplied is kubectl apply's copy of the whole object: as big as the
// object again, and never read here.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// TrimPod is the pod informer's transform: it drops what the agent never
// reads (managedFields, kubectl's last-applied copy, the containers'
// environment, probes and statuses), before the pod enters the cache. With
// hundreds of pods per node most of a pod's bytes are these. Kept: labels,
// owners, container names and security contexts, the phase.
func TrimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	p.ManagedFields = nil
	delete(p.Annotations, lastApplied)
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			c := &cs[i]
			c.Env, c.EnvFrom, c.Command, c.Args = nil, nil, nil, nil
			c.LivenessProbe, c.ReadinessProbe, c.StartupProbe = nil, nil, nil
			c.VolumeMounts, c.Ports, c.Resources = nil, nil, corev1.ResourceRequirements{}
		}
	}
	p.Spec.Volumes = nil
	p.Spec.EphemeralContainers = nil
	p.Status = corev1.PodStatus{Phase: p.Status.Phase}
	return p, nil
}

// TrimObject is the transform of the unstructured informers (policies,
// node statuses): it drops managedFields and kubectl's last-applied copy,
// which nothing here reads and which can be larger than the spec.
func TrimObject(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	u.SetManagedFields(nil)
	if a := u.GetAnnotations(); a != nil {
		if _, ok := a[lastApplied]; ok {
			delete(a, lastApplied)
			u.SetAnnotations(a)
		}
	}
	return u, nil
}
