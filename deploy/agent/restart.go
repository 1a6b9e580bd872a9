package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// RestartAnnotation is set on the pod template of a workload whose merged
// profiles changed: a running container keeps the filter it started with,
// so the workload must be rolled to get the new one.
const RestartAnnotation = "kscmp.kubearmor.com/profiles"

// restartTargets finds the pods that run with a profile that is not what
// the policies give now: a container bound to a kubearmor/ profile whose
// path is no longer its assignment, or whose file was just rewritten, or,
// in an opted-in namespace (optedIn), a container with a profile assigned
// that runs with no seccomp profile at all. It
// returns, per owning workload (kind/namespace/name), a digest of the
// desired profiles of its pod template's containers.
func restartTargets(pods []*corev1.Pod, assigned []Assignment, files map[string][]byte, changed []string, optedIn bool) map[string]string {
	want := map[string]string{} // pod/container → desired path
	for _, a := range assigned {
		want[a.Pod+"/"+a.Container] = a.Path
	}
	out := map[string]string{}
	for _, p := range pods {
		owner := metav1.GetControllerOf(p)
		if owner == nil {
			continue
		}
		stale := false
		var parts []string
		for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
			path := want[p.Name+"/"+c.Name]
			sum := sha256.Sum256(files[path])
			parts = append(parts, c.Name+"="+path+"@"+hex.EncodeToString(sum[:6]))
			running := boundProfile(p, c)
			if optedIn && path != "" && !hasSeccomp(p, c) {
				// Running without its profile: the webhook missed it. The
				// mark changes the digest, so a workload rolled before for
				// these profiles is rolled again, once.
				stale = true
				parts = append(parts, c.Name+":unbound")
				continue
			}
			if running == "" || !strings.HasPrefix(running, ProfileDir+"/") || IsOwnProfile(running) {
				continue // not bound by kscmp (or set by the user, or the agent's own): not ours to roll
			}
			if running != path || slices.Contains(changed, running) {
				stale = true
			}
		}
		if stale {
			sum := sha256.Sum256([]byte(strings.Join(parts, ",")))
			out[owner.Kind+"/"+p.Namespace+"/"+owner.Name] = hex.EncodeToString(sum[:8])
		}
	}
	return out
}

// hasSeccomp: the container runs with some seccomp profile set, its own or
// the pod's.
func hasSeccomp(p *corev1.Pod, c corev1.Container) bool {
	return (c.SecurityContext != nil && c.SecurityContext.SeccompProfile != nil) ||
		(p.Spec.SecurityContext != nil && p.Spec.SecurityContext.SeccompProfile != nil)
}

// boundProfile is the Localhost profile a container runs with, or "".
func boundProfile(p *corev1.Pod, c corev1.Container) string {
	sp := (*corev1.SeccompProfile)(nil)
	if c.SecurityContext != nil && c.SecurityContext.SeccompProfile != nil {
		sp = c.SecurityContext.SeccompProfile
	} else if p.Spec.SecurityContext != nil {
		sp = p.Spec.SecurityContext.SeccompProfile
	}
	if sp == nil || sp.Type != corev1.SeccompProfileTypeLocalhost || sp.LocalhostProfile == nil {
		return ""
	}
	return *sp.LocalhostProfile
}

// restart rolls a workload by setting RestartAnnotation on its pod template
// to digest. The digest is the same on every node for the same policies, so
// several agents patching one Deployment roll it once. A ReplicaSet is
// followed to the Deployment that owns it.
func restart(ctx context.Context, kube kubernetes.Interface, target, digest string) (bool, error) {
	kind, rest, _ := strings.Cut(target, "/")
	ns, name, _ := strings.Cut(rest, "/")
	patch := []byte(fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, RestartAnnotation, digest))
	apps := kube.AppsV1()
	switch kind {
	case "ReplicaSet":
		rs, err := apps.ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		owner := metav1.GetControllerOf(rs)
		if owner == nil || owner.Kind != "Deployment" {
			return false, nil // a bare ReplicaSet does not replace running pods
		}
		d, err := apps.Deployments(ns).Get(ctx, owner.Name, metav1.GetOptions{})
		if err != nil || d.Spec.Template.Annotations[RestartAnnotation] == digest {
			return false, err
		}
		_, err = apps.Deployments(ns).Patch(ctx, owner.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		return err == nil, err
	case "StatefulSet":
		s, err := apps.StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || s.Spec.Template.Annotations[RestartAnnotation] == digest {
			return false, err
		}
		_, err = apps.StatefulSets(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		return err == nil, err
	case "DaemonSet":
		d, err := apps.DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || d.Spec.Template.Annotations[RestartAnnotation] == digest {
			return false, err
		}
		_, err = apps.DaemonSets(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		return err == nil, err
	}
	return false, nil // Jobs and bare pods are not restarted
}
