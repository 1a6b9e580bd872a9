package agent

import (
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestTrimPod: the pod informer's transform keeps what Desired, InUse,
// restartTargets and unprotected read (labels, owners, container names,
// security contexts, the phase) and drops the rest that costs memory.
func TestTrimPod(t *testing.T) {
	prof := "kubearmor/shop/web.json"
	sc := &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &prof}}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Labels: map[string]string{"app": "web"},
			Annotations:     map[string]string{lastApplied: "{...}", "keep": "yes"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-1"}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: corev1.PodSpec{NodeName: "node-a", SecurityContext: &corev1.PodSecurityContext{},
			Containers: []corev1.Container{{Name: "main", Image: "busybox", SecurityContext: sc,
				Env: []corev1.EnvVar{{Name: "A", Value: "b"}}, Command: []string{"sleep"}}},
			Volumes: []corev1.Volume{{Name: "v"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "main"}}},
	}
	out, err := TrimPod(p)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Pod)
	c := got.Spec.Containers[0]
	if got.Labels["app"] != "web" || len(got.OwnerReferences) != 1 || c.Name != "main" || c.SecurityContext != sc ||
		got.Status.Phase != corev1.PodRunning || got.Spec.SecurityContext == nil || got.Annotations["keep"] != "yes" || got.Spec.NodeName != "node-a" {
		t.Errorf("TrimPod dropped something the agent reads: %+v", got)
	}
	if got.ManagedFields != nil || c.Env != nil || c.Command != nil || got.Spec.Volumes != nil || got.Status.ContainerStatuses != nil || got.Annotations[lastApplied] != "" {
		t.Errorf("TrimPod kept what the agent never reads: %+v", got)
	}
}

// TestPolicyCacheTransform: the policy informer's copy loses its spec and
// managedFields, and the parse it made stays found by generation, also
// after a status-only change (another resourceVersion, same generation).
func TestPolicyCacheTransform(t *testing.T) {
	c := NewPolicyCache(nil, nil)
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorSeccompPolicy",
		"metadata": map[string]any{"name": "web", "namespace": "shop", "generation": int64(1), "uid": "u1", "resourceVersion": "5",
			"managedFields": []any{map[string]any{"manager": "kubectl"}}},
		"spec": map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
			"seccomp": map[string]any{"syscalls": []any{"read"}, "action": "Allow"}}}}
	out, err := c.transform(u)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*unstructured.Unstructured)
	if _, ok := got.Object["spec"]; ok || got.GetManagedFields() != nil {
		t.Fatalf("spec or managedFields kept: %v", got.Object)
	}
	got.SetResourceVersion("6") // the aggregator wrote the status
	p := c.parse(got)
	if p == nil || len(p.Spec.Seccomp.Syscalls) != 1 || p.Spec.Seccomp.Syscalls[0] != "read" {
		t.Fatalf("the parse was not found again: %+v", p)
	}
}

// TestPolicyCacheArgs: a policy with argument conditions as the API server
// sends it (a numeric value is an int64, a symbolic one a string) is
// parsed, not refused; unstructured conversion refused every numeric one.
func TestPolicyCacheArgs(t *testing.T) {
	c := NewPolicyCache(nil, nil)
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorSeccompPolicy",
		"metadata": map[string]any{"name": "web", "namespace": "shop", "generation": int64(1), "uid": "u1", "resourceVersion": "5"},
		"spec": map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
			"seccomp": map[string]any{"rules": []any{
				map[string]any{"syscalls": []any{"read"}, "action": "Allow"},
				map[string]any{"syscalls": []any{"prctl"}, "action": "Allow",
					"args": []any{map[string]any{"index": int64(0), "operator": "Equal", "value": int64(15)}}},
				map[string]any{"syscalls": []any{"clone"}, "action": "Allow",
					"args": []any{map[string]any{"index": int64(0), "operator": "MaskedEqual", "mask": "CLONE_NEWUSER|CLONE_NEWNET", "value": int64(0)}}},
			}}}}}
	p := c.parse(u)
	if p == nil {
		t.Fatalf("refused: %v", c.invalid)
	}
	r := p.Spec.Seccomp.Rules
	if len(r) != 3 || r[1].Args[0].Value != "15" || r[2].Args[0].Mask != "CLONE_NEWUSER|CLONE_NEWNET" || r[2].Args[0].Value != "0" {
		t.Fatalf("conditions parsed as %+v", r)
	}
}

// TestPolicyCacheChanges: a status-only update (new resourceVersion, same
// generation) is no change of the policies; a new generation, a policy made
// again (another UID) and an object without a generation are. The webhook
// kept its namespace index per Changes, and the aggregator's status writes
// threw it away once per write: a burst of 500 admissions with 10,000
// policies took 40 s (BenchmarkWebhook).
func TestPolicyCacheChanges(t *testing.T) {
	c := NewPolicyCache(nil, nil)
	mk := func(gen int64, uid, rv string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{
			"name": "web", "namespace": "shop", "generation": gen, "uid": uid, "resourceVersion": rv}}}
	}
	for _, tc := range []struct {
		name     string
		old, obj *unstructured.Unstructured
		change   bool
	}{
		{"status only", mk(1, "u1", "5"), mk(1, "u1", "6"), false},
		{"new generation", mk(1, "u1", "5"), mk(2, "u1", "6"), true},
		{"made again", mk(1, "u1", "5"), mk(1, "u2", "6"), true},
		{"no generation", mk(0, "u1", "5"), mk(0, "u1", "6"), true},
	} {
		before := c.Changes()
		c.updated(tc.old, tc.obj)
		if got := c.Changes() != before; got != tc.change {
			t.Errorf("%s: changed %v, want %v", tc.name, got, tc.change)
		}
	}
}

// TestPolicyCacheCompact: two policies' parses share each system call
// name's bytes, and keep no status (nothing reads it from the parse).
func TestPolicyCacheCompact(t *testing.T) {
	c := NewPolicyCache(nil, nil)
	mk := func(name string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorSeccompPolicy",
			"metadata": map[string]any{"name": name, "namespace": "shop", "generation": int64(1), "uid": name, "resourceVersion": "5"},
			"spec": map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
				"seccomp": map[string]any{"syscalls": []any{"read", "write"}, "action": "Allow"}},
			"status": map[string]any{"observedGeneration": int64(1), "selectedNodes": int64(1)}}}
	}
	a, b := c.parse(mk("a")), c.parse(mk("b"))
	if a == nil || b == nil {
		t.Fatalf("refused: %v", c.Refused())
	}
	for i := range a.Spec.Seccomp.Syscalls {
		if x, y := a.Spec.Seccomp.Syscalls[i], b.Spec.Seccomp.Syscalls[i]; x != y || unsafe.StringData(x) != unsafe.StringData(y) {
			t.Errorf("syscall %d: %q and %q are two copies", i, x, y)
		}
	}
	if a.Status.ObservedGeneration != 0 || a.Status.SelectedNodes != 0 {
		t.Errorf("status kept in the parse: %+v", a.Status)
	}
}

// TestIdentity: a policy's key and parse version read from its metadata
// map are what the unstructured accessors give.
func TestIdentity(t *testing.T) {
	withGen := &unstructured.Unstructured{}
	withGen.SetNamespace("shop")
	withGen.SetName("web")
	withGen.SetGeneration(4)
	withGen.SetUID("u-1")
	withGen.SetResourceVersion("77")
	noGen := &unstructured.Unstructured{}
	noGen.SetName("cluster")
	noGen.SetResourceVersion("78")
	for _, c := range []struct {
		u            *unstructured.Unstructured
		key, version string
	}{
		{withGen, "shop/web", "gen:4:u-1"},
		{noGen, "/cluster", "rv:78"},
		{&unstructured.Unstructured{Object: map[string]any{}}, "/", "rv:"},
	} {
		if k, v := identity(c.u); k != c.key || v != c.version {
			t.Errorf("identity = %q, %q; want %q, %q", k, v, c.key, c.version)
		}
	}
}
