package agent

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/internal/apitest"
)

// TestUnprotectedPods: a pod of an opted-in namespace that policies select
// but that runs with no seccomp profile (the webhook was down when it was
// created) gets one Unprotected Event, counts in Unprotected, and with
// RestartWorkloads its Deployment is rolled; the same pod in a namespace
// that did not opt in, and a pod whose user chose RuntimeDefault, are left
// alone; once the pod is replaced by a bound one the count is 0.
func TestUnprotectedPods(t *testing.T) {
	srv := apitest.Start(t)
	srv.InstallPolicyCRD(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv.CreateNamespace(t, "guarded")
	srv.CreateNamespace(t, "open")
	if _, err := srv.Client.CoreV1().Namespaces().Patch(ctx, "guarded", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"`+EnforceLabel+`":"true"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(srv.Config)
	labels := map[string]string{"app": "web"}
	one, yes := int32(1), true
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}
	d, err := srv.Client.AppsV1().Deployments("guarded").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := srv.Client.AppsV1().ReplicaSets("guarded").Create(ctx, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f9",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: d.UID, Controller: &yes}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	owned := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}}
	mkPod := func(ns, name string, owners []metav1.OwnerReference, sc *corev1.SecurityContext) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, OwnerReferences: owners},
			Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "main", Image: "busybox", SecurityContext: sc}}}}
		if _, err := srv.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkPod("guarded", "web-5d8f9-aaaaa", owned, nil)
	mkPod("guarded", "chosen", nil, &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}})
	mkPod("open", "web", nil, nil)
	for _, ns := range []string{"guarded", "open"} {
		u := &unstructured.Unstructured{}
		yaml.Unmarshal([]byte("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: web, namespace: "+ns+"}\nspec: {selector: {matchLabels: {app: web}}, seccomp: {syscalls: [read], action: Allow}}"), &u.Object)
		apitest.Upsert(t, dyn.Resource(PolicyResource).Namespace(ns), u)
	}
	dir := t.TempDir()
	a, err := New(srv.Client, dyn, Options{Node: "node-a", SeccompDir: dir, RestartWorkloads: true})
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	defer func() { stop(); <-done }()

	events := func(ns, pod string) int {
		evs, err := srv.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == pod && e.Reason == ReasonUnprotected {
				n++
			}
		}
		return n
	}
	waitFor(ctx, t, "Unprotected event on the opted-in pod", func() bool { return events("guarded", "web-5d8f9-aaaaa") == 1 })
	waitFor(ctx, t, "its Deployment rolled", func() bool {
		d, err := srv.Client.AppsV1().Deployments("guarded").Get(ctx, "web", metav1.GetOptions{})
		return err == nil && d.Spec.Template.Annotations[RestartAnnotation] != ""
	})
	if n := a.Unprotected(); n != 1 {
		t.Errorf("Unprotected() = %d, want 1 (the opted-in pod alone)", n)
	}
	// Both profiles are installed, so both namespaces were reconciled.
	waitFor(ctx, t, "profiles of both namespaces", func() bool {
		return exists(dir, ProfilePath("guarded", "web")) && exists(dir, ProfilePath("open", "web"))
	})
	if n := events("open", "web") + events("guarded", "chosen"); n != 0 {
		t.Errorf("%d Unprotected events on pods that are not kscmp's to bind", n)
	}
	// The controller replaces the pod with one the webhook bound.
	if err := srv.Client.CoreV1().Pods("guarded").Delete(ctx, "web-5d8f9-aaaaa", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	bound := ProfilePath("guarded", "web")
	mkPod("guarded", "web-5d8f9-bbbbb", owned, &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &bound}})
	waitFor(ctx, t, "no pod without its profile", func() bool { return a.Unprotected() == 0 })
}
