package discover

import (
	"context"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/internal/apitest"
)

// TestPodWatcher resolves containers to pods through a real API server: only
// the node's pods are watched, status updates arrive, the Deployment behind a
// ReplicaSet is named.
func TestPodWatcher(t *testing.T) {
	srv := apitest.Start(t)
	srv.CreateNamespace(t, "shop")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const idA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	const idB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	yes := true
	mkPod := func(name, node, id string) *corev1.Pod {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop",
				Labels:          map[string]string{"app": "web", "pod-template-hash": "5d8f9"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f9", UID: "11111111-2222-3333-4444-555555555555", Controller: &yes}}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}, {Name: "sidecar", Image: "busybox"}}},
		}
		p, err := srv.Client.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	setStatus := func(p *corev1.Pod, id string) {
		t.Helper()
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "nginx", ContainerID: "containerd://" + id}}
		if _, err := srv.Client.CoreV1().Pods("shop").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	a := mkPod("web-5d8f9-abcde", "node-a", idA)
	setStatus(a, idA)
	b := mkPod("web-5d8f9-fghij", "node-b", idB)
	setStatus(b, idB)

	w, err := NewPodWatcher(srv.Client, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	id := report.Identity{Kind: report.KindPod, ContainerID: idA}
	if w.Complete(&id) != PodContainer {
		t.Fatal("pod of node-a not found by container id")
	}
	want := report.Identity{Kind: report.KindPod, Namespace: "shop", Pod: a.Name, PodUID: string(a.UID), Container: "nginx",
		Labels: map[string]string{"app": "web", "pod-template-hash": "5d8f9"}, Owner: &report.Owner{Kind: "Deployment", Name: "web"},
		ContainerID: idA, Runtime: "containerd"}
	if !reflect.DeepEqual(id, want) {
		t.Errorf("got  %+v\nwant %+v", id, want)
	}
	// Pods of other nodes are not watched.
	if other := (report.Identity{ContainerID: idB, PodUID: string(b.UID)}); w.Complete(&other) != PodUnknown {
		t.Errorf("a pod of node-b was resolved: %+v", other)
	}
	// A pod created later, found by UID before its status names the
	// container, and by container id once it does.
	c := mkPod("web-5d8f9-klmno", "node-a", "")
	const idC = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	byUID := report.Identity{PodUID: string(c.UID), ContainerID: idC}
	deadline := time.Now().Add(20 * time.Second)
	for w.Complete(&byUID) == PodUnknown {
		if time.Now().After(deadline) {
			t.Fatal("new pod not seen by UID")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if byUID.Pod != c.Name || byUID.Container != "" {
		t.Errorf("by UID before the status: %+v (two containers: the name is unknown yet)", byUID)
	}
	setStatus(c, idC)
	for {
		got := report.Identity{ContainerID: idC}
		if w.Complete(&got) == PodContainer && got.Container == "nginx" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("status update not seen")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPodWatcherSandbox: the pause process of a one-container pod starts
// before the kubelet publishes any container id, so it is first taken for
// the pod's container; once the container's id is published it is the
// pod's sandbox (left out of reports), while the container, and an earlier
// instance of it that the status keeps as its last termination, are named.
func TestPodWatcherSandbox(t *testing.T) {
	srv := apitest.Start(t)
	srv.CreateNamespace(t, "shop")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const sandbox = "5555555555555555555555555555555555555555555555555555555555555555"
	const first = "1111111111111111111111111111111111111111111111111111111111111111"
	const second = "2222222222222222222222222222222222222222222222222222222222222222"
	p, err := srv.Client.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "one", Namespace: "shop"},
		Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "bb", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewPodWatcher(srv.Client, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	resolve := func(id string) (PodMatch, string) {
		got := report.Identity{PodUID: string(p.UID), ContainerID: id}
		m := w.Complete(&got)
		return m, got.Container
	}
	if m, c := resolve(sandbox); m != PodContainer || c != "bb" {
		t.Fatalf("before any id is published: %v %q, want the only container taken", m, c)
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "bb", ContainerID: "containerd://" + second,
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ContainerID: "containerd://" + first}}}}
	if _, err := srv.Client.CoreV1().Pods("shop").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if m, _ := resolve(sandbox); m == PodSandbox {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sandbox was never told apart once the container's id was published")
		}
	}
	for _, id := range []string{second, first} {
		if m, c := resolve(id); m != PodContainer || c != "bb" {
			t.Errorf("container id %.12s: %v %q, want bb", id, m, c)
		}
	}
}
