package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/internal/apitest"
)

// BenchmarkAgent is the load: one agent (the built binary), 1,000
// policies (~50 syscalls each) and 500 pods on its node, 4 policies selecting
// each pod. Per op: a cold start until every profile is on disk, then one
// policy change until its file changes. Reported: converge-ms, change-ms,
// rss-MiB (the agent's peak resident memory). KSCMP_BENCH_POLICIES=10000
// adds policies that select no pod (the informer and parse cost of many
// policies); the agent runs as in the DaemonSet (--aggregate=false).
func BenchmarkAgent(b *testing.B) {
	srv := apitest.Start(b)
	srv.InstallPolicyCRD(b)
	srv.CreateNamespace(b, "bench")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dyn := dynamic.NewForConfigOrDie(srv.Config)
	policies := dyn.Resource(agent.PolicyResource).Namespace("bench")
	const nPods, nApps = 500, 250
	nPolicies := 1000
	if n, _ := strconv.Atoi(os.Getenv("KSCMP_BENCH_POLICIES")); n > nPolicies {
		nPolicies = n
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
		return fmt.Sprintf("a%d", i%nApps)
	}
	mkPolicy := func(i int, extra string) *unstructured.Unstructured {
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
	parallel := func(n int, fn func(i int) error) {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		sem := make(chan struct{}, 16)
		for i := range n {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				if err := fn(i); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	var mu sync.Mutex
	parallel(nPolicies, func(i int) error {
		mu.Lock()
		u := mkPolicy(i, "")
		mu.Unlock()
		_, err := policies.Create(ctx, u, metav1.CreateOptions{})
		return err
	})
	parallel(nPods, func(i int) error {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Namespace: "bench", Labels: map[string]string{"app": fmt.Sprintf("a%d", i%nApps)}},
			Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}
		_, err := srv.Client.CoreV1().Pods("bench").Create(ctx, p, metav1.CreateOptions{})
		return err
	})
	bin := buildKscmp(b)
	kubeconfig := srv.Kubeconfig(b)
	count := func(dir string) int {
		entries, _ := os.ReadDir(filepath.Join(dir, "seccomp", agent.ProfileDir, "bench"))
		return len(entries)
	}
	var converge, change, rss float64
	gen := 0
	b.ResetTimer()
	for b.Loop() {
		dir := b.TempDir()
		start := time.Now()
		cmd := exec.CommandContext(ctx, bin, "agent", "--kubeconfig", kubeconfig, "--node", "node-a", "--kubelet-root", dir, "--aggregate=false")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for count(dir) < nApps {
			if time.Since(start) > time.Minute {
				b.Fatalf("no convergence: %d files", count(dir))
			}
			time.Sleep(2 * time.Millisecond)
		}
		converge += float64(time.Since(start).Milliseconds())

		// One policy change → its file on disk.
		gen++
		mu.Lock()
		u := mkPolicy(0, []string{"flock", "fsync", "fdatasync", "syncfs"}[gen%4])
		mu.Unlock()
		want := []byte(`"` + []string{"flock", "fsync", "fdatasync", "syncfs"}[gen%4] + `"`)
		file := filepath.Join(dir, "seccomp", filepath.FromSlash(agent.ProfilePath("bench", "p0+p250+p500+p750")))
		// The agent writes the status meanwhile: retry on conflict; the clock
		// starts at the update that goes through.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			old, err := policies.Get(ctx, "p0", metav1.GetOptions{})
			if err != nil {
				return err
			}
			u.SetResourceVersion(old.GetResourceVersion())
			start = time.Now()
			_, err = policies.Update(ctx, u, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		for {
			if data, err := os.ReadFile(file); err == nil && bytes.Contains(data, want) {
				break
			}
			if time.Since(start) > 30*time.Second {
				b.Fatal("change not written")
			}
			time.Sleep(time.Millisecond)
		}
		change += float64(time.Since(start).Microseconds()) / 1000
		rss = max(rss, peakRSS(b, cmd.Process.Pid))
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	b.ReportMetric(converge/float64(b.N), "converge-ms")
	b.ReportMetric(change/float64(b.N), "change-ms")
	b.ReportMetric(rss, "rss-MiB")
}

// peakRSS reads a process's peak resident memory (VmHWM) in MiB.
func peakRSS(tb testing.TB, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024
		}
	}
	return 0
}
