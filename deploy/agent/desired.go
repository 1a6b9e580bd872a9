// Package agent is the per-node side of kscmp in Kubernetes: it computes,
// from the current policies and the pods of its node, the profiles the node
// needs (Desired), and makes the kubelet's seccomp directory hold exactly
// those (Sync). Both are level-triggered: they recompute from the current
// state, never from an event, so a restart or a missed event is harmless.
package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/merge"
)

// ProfileDir is the directory, under the kubelet's seccomp directory, that
// kscmp owns.
const ProfileDir = "kubearmor"

// ProfileName names the profile of a container from the policies that
// select it (their keys, in any order): the same set of policies always
// gives the same name, so a pod created later, and the webhook that binds it,
// find the file. One policy gives its name; several give their names joined
// with "+" while that stays short and readable, else a hash.
func ProfileName(policyKeys []string) string {
	keys := slices.Clone(policyKeys)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	names := make([]string, len(keys))
	for i, k := range keys {
		_, names[i], _ = strings.Cut(k, "/")
	}
	if joined := strings.Join(names, "+"); len(joined) <= 100 {
		return joined
	}
	sum := sha256.Sum256([]byte(strings.Join(keys, "\n")))
	return "merged-" + hex.EncodeToString(sum[:8])
}

// ProfilePath is the path of a profile relative to the kubelet's seccomp
// directory, as securityContext.seccompProfile.localhostProfile takes it:
// kubearmor/<namespace>/<name>.json.
func ProfilePath(namespace, name string) string {
	return ProfileDir + "/" + namespace + "/" + name + ".json"
}

// Assignment is the profile one container of a pod gets.
type Assignment struct {
	Pod, Container string
	Path           string // ProfilePath of its profile
}

// Desired computes, for every container of the pods, the merged profile of
// the policies that select it. It returns the files the node needs (keyed
// by ProfilePath) and which container gets which. Containers no policy
// selects get nothing.
func Desired(policies *merge.Set, pods []*corev1.Pod, family api.Family, runtime merge.Runtime) (map[string][]byte, []Assignment, error) {
	files := map[string][]byte{}
	var assigned []Assignment
	for _, pod := range pods {
		var containers []string
		for _, c := range pod.Spec.InitContainers {
			containers = append(containers, c.Name)
		}
		for _, c := range pod.Spec.Containers {
			containers = append(containers, c.Name)
		}
		for _, c := range containers {
			t := merge.Target{Namespace: pod.Namespace, Labels: pod.Labels, Container: c, Family: family, Runtime: runtime}
			rs, err := policies.Merge(t)
			if err != nil {
				return nil, nil, fmt.Errorf("pod %s/%s container %s: %w", pod.Namespace, pod.Name, c, err)
			}
			if rs.Empty() {
				continue
			}
			path := ProfilePath(pod.Namespace, ProfileName(rs.Policies))
			if _, done := files[path]; !done {
				data, err := rs.MarshalOCI()
				if err != nil {
					return nil, nil, err
				}
				files[path] = data
			}
			assigned = append(assigned, Assignment{Pod: pod.Name, Container: c, Path: path})
		}
	}
	return files, assigned, nil
}

// InUse returns the kscmp profiles the pods were started with
// (securityContext.seccompProfile of type Localhost under ProfileDir): a
// running container keeps its filter, and its file must stay while it runs.
func InUse(pods []*corev1.Pod) map[string]bool {
	used := map[string]bool{}
	add := func(sp *corev1.SeccompProfile) {
		if sp != nil && sp.Type == corev1.SeccompProfileTypeLocalhost && sp.LocalhostProfile != nil &&
			strings.HasPrefix(*sp.LocalhostProfile, ProfileDir+"/") {
			used[*sp.LocalhostProfile] = true
		}
	}
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if p.Spec.SecurityContext != nil {
			add(p.Spec.SecurityContext.SeccompProfile)
		}
		for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
			if c.SecurityContext != nil {
				add(c.SecurityContext.SeccompProfile)
			}
		}
	}
	return used
}
