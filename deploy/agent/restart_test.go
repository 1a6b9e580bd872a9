package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/internal/apitest"
)

// TestRestartWorkloads: with --restart-workloads, a Deployment whose pod runs
// with a profile the policies no longer give is rolled (its template gets
// the new profiles' digest), once per change, and not at all when nothing
// changed: the Deployment's generation, which every template change moves,
// is counted once the agent has finished with each change (quiet). There is
// no controller-manager here: the ReplicaSet and the pod are made by the
// test as the controllers would.
func TestRestartWorkloads(t *testing.T) {
	srv := apitest.Start(t)
	srv.InstallPolicyCRD(t)
	srv.CreateNamespace(t, "shop")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dyn := dynamic.NewForConfigOrDie(srv.Config)
	apps := srv.Client.AppsV1()
	labels := map[string]string{"app": "web"}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}
	one := int32(1)
	d, err := apps.Deployments("shop").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	rs, err := apps.ReplicaSets("shop").Create(ctx, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f9",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: d.UID, Controller: &yes}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bound := ProfilePath("shop", "kscmp1")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f9-abcde", Labels: labels,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "main", Image: "busybox",
			SecurityContext: &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &bound}}}}}}
	if _, err := srv.Client.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setPolicy := func(name, calls string) {
		u := &unstructured.Unstructured{}
		yaml.Unmarshal([]byte("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: "+name+", namespace: shop}\nspec: {selector: {matchLabels: {app: web}}, seccomp: {syscalls: "+calls+", action: Allow}}"), &u.Object)
		apitest.Upsert(t, dyn.Resource(PolicyResource).Namespace("shop"), u)
	}
	deployment := func() (annotation string, generation int64) {
		d, err := apps.Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Annotations[RestartAnnotation], d.Generation
	}
	annotation := func() string { a, _ := deployment(); return a }

	// A pod without an owner or a bound profile, selected by a policy of
	// its own: a change of that policy is seen through the same work
	// queue key (the namespace) as every other change in shop, and shows
	// when its reconcile has written the pod's profile.
	if _, err := srv.Client.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "marker", Labels: map[string]string{"app": "marker"}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setMarker := func(call string) {
		u := &unstructured.Unstructured{}
		yaml.Unmarshal([]byte("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: marker, namespace: shop}\nspec: {selector: {matchLabels: {app: marker}}, seccomp: {syscalls: [read, "+call+"], action: Allow}}"), &u.Object)
		apitest.Upsert(t, dyn.Resource(PolicyResource).Namespace("shop"), u)
	}
	dir := t.TempDir()
	markerProfile := ProfilePath("shop", "marker")
	// quiet returns once every reconcile of shop that began before it was
	// called has ended, its roll-outs included: the marker policy changes
	// twice, each time after the agent wrote the previous change. The
	// reconcile that writes the second began after the one that wrote the
	// first had ended (one namespace is never reconciled twice at once),
	// and that one began after quiet was called.
	quiet := func() {
		t.Helper()
		for _, call := range []string{"getpid", "getppid"} {
			setMarker(call)
			waitFor(ctx, t, "marker profile with "+call, func() bool {
				data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(markerProfile)))
				return err == nil && strings.Contains(string(data), `"`+call+`"`)
			})
		}
	}

	setPolicy("kscmp1", "[read]")
	a, err := New(srv.Client, dyn, Options{Node: "node-a", SeccompDir: dir, RestartWorkloads: true})
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	defer func() { stop(); <-done }()
	waitFor(ctx, t, "profile installed", func() bool { return exists(dir, bound) })
	quiet()
	if got, gen := deployment(); got != "" || gen != 1 {
		t.Fatalf("rolled although the pod runs with what the policies give: annotation %q, generation %d", got, gen)
	}

	// The policy changes: the file the pod started with is rewritten.
	setPolicy("kscmp1", "[read, flock]")
	var first string
	waitFor(ctx, t, "deployment rolled after the policy change", func() bool { first = annotation(); return first != "" })
	quiet()
	if got, gen := deployment(); got != first || gen != 2 {
		t.Errorf("after one policy change: annotation %q, generation %d; want %q and 2 (rolled once)", got, gen, first)
	}
	// Another policy joins: the container's profile is a new file.
	setPolicy("kscmp2", "[getpid]")
	waitFor(ctx, t, "deployment rolled for the new profile", func() bool { a := annotation(); return a != "" && a != first })
	quiet()
	if got, gen := deployment(); got == first || gen != 3 {
		t.Errorf("after a second change: annotation %q, generation %d; want a new one and 3 (rolled once more)", got, gen)
	}
	merged, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(ProfilePath("shop", "kscmp1+kscmp2"))))
	if err != nil || !strings.Contains(string(merged), `"flock"`) || !strings.Contains(string(merged), `"getpid"`) {
		t.Errorf("the pod's new profile: %v\n%s", err, merged)
	}
	if !exists(dir, bound) {
		t.Errorf("%s, which the running pod uses, was removed", bound)
	}
}
