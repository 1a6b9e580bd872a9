package discover

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/internal/apitest"
	"github.com/kubearmor/kscmp/internal/ocitest"
)

// syncBuffer is a recorder pod's standard output, read while it is written.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// containerID is a random id in the kubelet's form (64 hex digits).
func containerID(t *testing.T) string {
	t.Helper()
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// createPod makes a running pod of node in the API server whose one
// container has the container id id ("" for none yet).
func createPod(t *testing.T, srv *apitest.Server, ns, name, node, id string) {
	t.Helper()
	ctx := context.Background()
	p, err := srv.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if id == "" {
		return
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", ContainerID: "containerd://" + id}}
	if _, err := srv.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestNodeRecorderAttribution is issue #15's shared-kernel check: pods of
// node A and of node B run as real runc containers on one kernel, next to a
// host process; node A's recorder reports A's container only (not B's, not
// the host's, not its own pod), ends when its pod gets kscmp.io/stop, and
// writes progress lines and one complete stream block carrying the run and
// node names.
func TestNodeRecorderAttribution(t *testing.T) {
	requireKernel(t)
	runc := ocitest.Require(t, "runc")
	srv := apitest.Start(t)
	srv.CreateNamespace(t, "shop")
	srv.CreateNamespace(t, "kscmp-system")
	idA, idB, idSelf := containerID(t), containerID(t), containerID(t)
	createPod(t, srv, "shop", "web-a", "node-a", idA)
	createPod(t, srv, "shop", "web-b", "node-b", idB)
	createPod(t, srv, "kscmp-system", "rec-a", "node-a", idSelf)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- RecordNode(ctx, NodeRecorder{Run: "r1", Node: "node-a", Pod: "rec-a", PodNamespace: "kscmp-system",
			Client: srv.Client, Out: out, Options: Options{Interval: 100 * time.Millisecond}})
	}()
	waitFor(t, done, "a progress line", func() bool { return strings.Contains(out.String(), "kscmp-progress ") })

	for _, c := range []struct{ id, rootfsOf string }{{idA, "a"}, {idB, "b"}, {idSelf, "self"}} {
		res, err := ocitest.Run(ctx, t, ocitest.Container{Runtime: runc, ID: c.id, Rootfs: ocitest.BusyboxRootfs(t),
			Args: []string{"sh", "-c", "ls / >/dev/null && echo " + c.rootfsOf}})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("container %s: %v %+v", c.rootfsOf, err, res)
		}
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "host"), []byte("a host process's write\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	patch := []byte(`{"metadata":{"annotations":{"` + StopAnnotation + `":"ctrl-c"}}}`)
	if _, err := srv.Client.CoreV1().Pods("kscmp-system").Patch(ctx, "rec-a", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the recorder did not end on its pod's stop annotation")
	}

	res, err := report.ReadStream(strings.NewReader(out.String()), "node-a", 0)
	if err != nil {
		t.Fatal(err)
	}
	rep := res.Report
	if rep.Run != "r1" || rep.Node != "node-a" || res.Progress == nil || res.Progress.Node != "node-a" {
		t.Errorf("run %q node %q progress %+v: want r1, node-a and a progress line of node-a", rep.Run, rep.Node, res.Progress)
	}
	var names []string
	for _, w := range rep.Workloads {
		names = append(names, w.Identity.String())
		if w.Identity.Kind != report.KindPod || w.Identity.Namespace != "shop" || w.Identity.Pod != "web-a" || w.Identity.ContainerID != idA {
			t.Errorf("workload %s (%+v) is not node A's pod shop/web-a", w.Identity.String(), w.Identity)
		}
	}
	if len(rep.Workloads) != 1 {
		t.Errorf("want node A's one container, got %d workloads: %v", len(rep.Workloads), names)
	}
}

// waitFor waits until cond holds, failing when the recorder ends first.
func waitFor(t *testing.T, done chan error, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("the recorder ended before %s: %v", what, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 30s", what)
		}
	}
}

// TestNodeRecorderTerminationMessage: a recorder that cannot run says why in
// the termination log (the kubelet's file, which exists), and the error
// names the missing field; no termination log is created where there is
// none.
func TestNodeRecorderTerminationMessage(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "termination-log")
	if err := os.WriteFile(log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := RecordNode(context.Background(), NodeRecorder{Run: "r1", Pod: "rec", PodNamespace: "kscmp-system", TerminationLog: log})
	if !errors.Is(err, ErrNodeRecorderConfig) || !strings.Contains(err.Error(), "NODE_NAME") {
		t.Fatalf("err = %v, want ErrNodeRecorderConfig naming NODE_NAME", err)
	}
	if got, _ := os.ReadFile(log); !strings.Contains(string(got), "NODE_NAME") {
		t.Errorf("termination log %q does not say why", got)
	}
	absent := filepath.Join(dir, "absent")
	_ = RecordNode(context.Background(), NodeRecorder{TerminationLog: absent})
	if _, err := os.Stat(absent); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a termination log was created outside a pod: %v", err)
	}
}
