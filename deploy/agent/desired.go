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
	"sync"

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
	Path           string   // ProfilePath of its profile
	Policies       []string // the keys of the policies it is made of, sorted
}

// Memo remembers merged profiles by the resource versions of the policies
// they were merged from, so that a reconcile after one policy changed merges
// only the profiles that policy is part of. The zero value is ready; a nil
// *Memo disables it. It is safe for concurrent use.
type Memo struct {
	mu sync.Mutex           // guards m
	m  map[string]memoEntry // profile path → last merge
}

type memoEntry struct {
	versions string // the selected policies' resourceVersions, in key order
	data     []byte
}

func (m *Memo) get(path, versions string) ([]byte, bool) {
	if m == nil {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[path]
	return e.data, ok && e.versions == versions
}

func (m *Memo) put(path, versions string, data []byte) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]memoEntry{}
	}
	m.m[path] = memoEntry{versions, data}
}

// forget drops the entries under prefix that keep does not hold.
func (m *Memo) forget(prefix string, keep map[string][]byte) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := range m.m {
		if strings.HasPrefix(p, prefix) && keep[p] == nil {
			delete(m.m, p)
		}
	}
}

// Desired computes, for every container of the pods, the merged profile of
// the policies that select it. It returns the files the node needs (keyed
// by ProfilePath) and which container gets which. Containers no policy
// selects get nothing. memo (may be nil) saves merging profiles whose
// policies did not change.
func Desired(policies *merge.Set, pods []*corev1.Pod, family api.Family, runtime merge.Runtime, memo *Memo) (map[string][]byte, []Assignment, error) {
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
			// The profile is a function of the set of selecting policies
			// alone (family and runtime are the node's): merge each set once.
			selected := policies.Select(t)
			if len(selected) == 0 {
				continue
			}
			keys := make([]string, len(selected))
			for i, p := range selected {
				keys[i] = p.Key()
			}
			path := ProfilePath(pod.Namespace, ProfileName(keys))
			if _, done := files[path]; !done {
				sorted := slices.Clone(selected)
				slices.SortFunc(sorted, func(a, b *api.KubeArmorSeccompPolicy) int { return strings.Compare(a.Key(), b.Key()) })
				var versions strings.Builder
				for _, p := range sorted {
					versions.WriteString(p.Key() + "@" + p.ResourceVersion + " ")
				}
				data, ok := memo.get(path, versions.String())
				if !ok {
					rs, err := merge.Merge(selected, t)
					if err != nil {
						return nil, nil, fmt.Errorf("pod %s/%s container %s: %w", pod.Namespace, pod.Name, c, err)
					}
					if data, err = rs.MarshalOCI(); err != nil {
						return nil, nil, err
					}
					memo.put(path, versions.String(), data)
				}
				files[path] = data
			}
			slices.Sort(keys)
			assigned = append(assigned, Assignment{Pod: pod.Name, Container: c, Path: path, Policies: keys})
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
