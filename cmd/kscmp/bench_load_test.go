package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/internal/apitest"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// The load of BenchmarkAgent and BenchmarkWebhook: benchPods pods on node
// node-a in namespace bench, labelled app=a0 … a249 (two pods per app), and
// 1,000 policies, policy i selecting app a(i mod 250): 4 policies select
// each pod. KSCMP_BENCH_POLICIES above 1,000 adds policies that select no
// pod (app=idleN).
const (
	benchPods = 500
	benchApps = 250
)

// benchLoad is that load, created on a real API server.
type benchLoad struct {
	srv       *apitest.Server
	ctx       context.Context
	policies  dynamic.ResourceInterface // namespace bench
	nPolicies int
	pods      []*corev1.Pod // as created, in order

	// mkPolicy is policy i (~50 random syscalls, and extra if not "");
	// callers hold mu, which guards its random source.
	mkPolicy func(i int, extra string) *unstructured.Unstructured
	mu       sync.Mutex
}

// newBenchLoad starts an API server and creates the load; its context ends
// after 10 minutes or with the benchmark.
func newBenchLoad(b *testing.B) *benchLoad {
	srv := apitest.Start(b)
	srv.InstallPolicyCRD(b)
	srv.CreateNamespace(b, "bench")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	b.Cleanup(cancel)
	dyn := dynamic.NewForConfigOrDie(srv.Config)
	l := &benchLoad{srv: srv, ctx: ctx, policies: dyn.Resource(agent.PolicyResource).Namespace("bench"), nPolicies: 1000}
	if n, _ := strconv.Atoi(os.Getenv("KSCMP_BENCH_POLICIES")); n > l.nPolicies {
		l.nPolicies = n
	}

	var names []string
	for n := range api.ArchX86_64.Table().SyscallNames {
		names = append(names, n)
	}
	slices.Sort(names)
	r := rand.New(rand.NewPCG(1, 1))
	app := func(i int) string {
		if i >= 1000 {
			return fmt.Sprintf("idle%d", i)
		}
		return fmt.Sprintf("a%d", i%benchApps)
	}
	l.mkPolicy = func(i int, extra string) *unstructured.Unstructured {
		calls := []any{}
		for _, j := range r.Perm(len(names))[:50] {
			calls = append(calls, names[j])
		}
		if extra != "" {
			calls = append(calls, extra)
		}
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": api.APIVersion, "kind": api.Kind,
			"metadata": map[string]any{"name": fmt.Sprintf("p%d", i), "namespace": "bench"},
			"spec": map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": app(i)}},
				"seccomp": map[string]any{"syscalls": calls, "action": "Allow"}},
		}}
	}
	testenv.Parallel(b, l.nPolicies, 16, func(i int) error {
		l.mu.Lock()
		u := l.mkPolicy(i, "")
		l.mu.Unlock()
		_, err := l.policies.Create(ctx, u, metav1.CreateOptions{})
		return err
	})
	l.pods = make([]*corev1.Pod, benchPods)
	for i := range l.pods {
		l.pods[i] = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Namespace: "bench", Labels: map[string]string{"app": fmt.Sprintf("a%d", i%benchApps)}},
			Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}
	}
	testenv.Parallel(b, benchPods, 16, func(i int) error {
		_, err := srv.Client.CoreV1().Pods("bench").Create(ctx, l.pods[i], metav1.CreateOptions{})
		return err
	})
	return l
}
