package api

import (
	"fmt"
	"strings"
)

// The flat form, in which the policy was first proposed, puts the fields at
// the top level:
//
//	kind: KubeArmorSeccompPolicy
//	name: ksp-wordpress-block-process
//	namespace: wordpress-mysql
//	severity: 3
//	app: wordpress            # matchLabels: {app: wordpress}
//	arch: [x86_64, x86, x32]
//	syscalls: [accept4, epoll_wait]
//	action: Allow
//	defaultAction: Audit      # complain mode; Block when absent
//
// labels (a map), containers and rules are accepted too.
var flatKeys = map[string]bool{
	"apiVersion": true, "kind": true, "name": true, "namespace": true, "severity": true,
	"app": true, "labels": true, "containers": true, "arch": true, "syscalls": true,
	"action": true, "rules": true, "defaultAction": true,
}

// isFlat reports whether a decoded document is in the flat form.
func isFlat(raw map[string]any) bool {
	_, spec := raw["spec"]
	_, md := raw["metadata"]
	if spec || md {
		return false
	}
	_, name := raw["name"]
	_, sys := raw["syscalls"]
	_, rules := raw["rules"]
	return name || sys || rules
}

// flatToCRD rewrites a flat document into the CRD form.
func flatToCRD(raw map[string]any) (map[string]any, []fieldProblem) {
	var probs []fieldProblem
	for _, k := range sortedAnyKeys(raw) {
		if !flatKeys[k] {
			probs = append(probs, fieldProblem{k, "", "unknown field of the flat policy form"})
		}
	}
	labels := map[string]any{}
	if l, ok := raw["labels"]; ok {
		m, ok := l.(map[string]any)
		if !ok {
			probs = append(probs, fieldProblem{"spec.selector.matchLabels", "", "wrong type: want a mapping"})
		}
		for k, v := range m {
			labels[k] = v
		}
	}
	if app, ok := raw["app"]; ok {
		if prev, dup := labels["app"]; dup && prev != app {
			probs = append(probs, fieldProblem{"spec.selector.matchLabels.app", fmt.Sprint(app), fmt.Sprintf("conflicts with labels.app %q", fmt.Sprint(prev))})
		}
		labels["app"] = app
	}
	out := map[string]any{}
	copyKey := func(dst map[string]any, dk, sk string) {
		if v, ok := raw[sk]; ok {
			dst[dk] = v
		}
	}
	copyKey(out, "apiVersion", "apiVersion")
	copyKey(out, "kind", "kind")
	md := map[string]any{}
	copyKey(md, "name", "name")
	copyKey(md, "namespace", "namespace")
	out["metadata"] = md
	spec := map[string]any{}
	copyKey(spec, "severity", "severity")
	copyKey(spec, "containers", "containers")
	if len(labels) > 0 {
		spec["selector"] = map[string]any{"matchLabels": labels}
	}
	sc := map[string]any{}
	for _, k := range []string{"arch", "syscalls", "action", "rules", "defaultAction"} {
		copyKey(sc, k, k)
	}
	spec["seccomp"] = sc
	out["spec"] = spec
	return out, probs
}

// flatPath turns a CRD-form field path into the flat form's.
func flatPath(p string) string {
	for _, r := range []struct{ from, to string }{
		{"metadata.name", "name"},
		{"metadata.namespace", "namespace"},
		{"spec.severity", "severity"},
		{"spec.containers", "containers"},
		{"spec.selector.matchLabels.app", "app"},
		{"spec.selector.matchLabels", "labels"},
		{"spec.selector", "app"},
		{"spec.seccomp.", ""},
	} {
		if rest, ok := strings.CutPrefix(p, r.from); ok {
			if r.to == "" || rest == "" || rest[0] == '.' || rest[0] == '[' {
				return r.to + rest
			}
		}
	}
	return p
}
