package agent

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// EnforceLabel is the namespace label (value "true") that opts a namespace
// into the webhook's binding (its namespaceSelector in the manifests).
const EnforceLabel = "kscmp.kubearmor.com/enforce"

// ReasonUnprotected is the Event reason on a pod of an opted-in namespace
// that policies select but that runs without any seccomp profile.
const ReasonUnprotected = "Unprotected"

// unprotected returns, per pod of an opted-in namespace, the containers
// that policies give a profile (assigned) but that run with no seccomp
// profile at all, neither their own nor the pod's: the webhook did not
// bind them, most likely because it was down when the pod was created
// (failurePolicy: Ignore lets such pods through). A container with a
// profile the user chose (RuntimeDefault, another Localhost file) is left
// out: the webhook leaves those alone on purpose.
func unprotected(pods []*corev1.Pod, assigned []Assignment) map[*corev1.Pod][]string {
	want := map[string]string{} // pod/container → desired path
	for _, a := range assigned {
		want[a.Pod+"/"+a.Container] = a.Path
	}
	out := map[*corev1.Pod][]string{}
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if p.Spec.SecurityContext != nil && p.Spec.SecurityContext.SeccompProfile != nil {
			continue
		}
		for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
			if want[p.Name+"/"+c.Name] != "" && (c.SecurityContext == nil || c.SecurityContext.SeccompProfile == nil) {
				out[p] = append(out[p], c.Name)
			}
		}
	}
	return out
}

// reportUnprotected raises one Event per pod (by UID) of the namespace that
// runs without its profile, forgets pods that are gone or now bound, and
// keeps the namespace's count for Unprotected.
func (a *Agent) reportUnprotected(namespace string, pods []*corev1.Pod, assigned []Assignment) {
	found := map[types.UID]bool{}
	var fresh []*corev1.Pod
	ups := unprotected(pods, assigned)
	want := map[string]string{}
	for _, as := range assigned {
		want[as.Pod+"/"+as.Container] = as.Path
	}
	a.umu.Lock()
	for p := range ups {
		found[p.UID] = true
		if !a.unprotectedSeen[p.UID] {
			a.unprotectedSeen[p.UID] = true
			fresh = append(fresh, p)
		}
	}
	for _, p := range pods {
		if !found[p.UID] {
			delete(a.unprotectedSeen, p.UID)
		}
	}
	a.unprotectedCount[namespace] = len(ups)
	a.umu.Unlock()
	for _, p := range fresh {
		var parts []string
		for _, c := range ups[p] {
			parts = append(parts, fmt.Sprintf("%s (%s)", c, want[p.Name+"/"+c]))
		}
		msg := fmt.Sprintf("runs without the seccomp profiles its policies give: %s; the webhook did not bind it (down when the pod was created?)", strings.Join(parts, ", "))
		if a.opts.RestartWorkloads {
			msg += "; its workload is rolled"
		}
		a.rep.recorder.Event(p, corev1.EventTypeWarning, ReasonUnprotected, truncate(msg))
		a.opts.Logger.Warn("agent: pod without its profile", "pod", p.Namespace+"/"+p.Name, "containers", ups[p])
	}
}

// Unprotected is the number of pods on this node, in opted-in namespaces,
// that run without the profile their policies give (as of each namespace's
// last reconcile): a gauge for monitoring.
func (a *Agent) Unprotected() int {
	a.umu.Lock()
	defer a.umu.Unlock()
	n := 0
	for _, c := range a.unprotectedCount {
		n += c
	}
	return n
}
