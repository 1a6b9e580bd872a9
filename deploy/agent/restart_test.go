package agent

import (
	"context"
	"os"
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
// changed. There is no controller-manager here: the ReplicaSet and the pod
// are made by the test as the controllers would.
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
	annotation := func() string {
		d, err := apps.Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Annotations[RestartAnnotation]
	}

	setPolicy("kscmp1", "[read]")
	dir := t.TempDir()
	a, err := New(srv.Client, dyn, Options{Node: "node-a", SeccompDir: dir, RestartWorkloads: true})
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	defer func() { stop(); <-done }()
	waitFor(ctx, t, "profile installed", func() bool { return exists(dir, bound) })
	time.Sleep(300 * time.Millisecond)
	if got := annotation(); got != "" {
		t.Fatalf("rolled although the pod runs with what the policies give: %q", got)
	}

	// The policy changes: the file the pod started with is rewritten.
	setPolicy("kscmp1", "[read, flock]")
	var first string
	waitFor(ctx, t, "deployment rolled after the policy change", func() bool { first = annotation(); return first != "" })
	// Another policy joins: the container's profile is a new file.
	setPolicy("kscmp2", "[getpid]")
	waitFor(ctx, t, "deployment rolled for the new profile", func() bool { a := annotation(); return a != "" && a != first })
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}
