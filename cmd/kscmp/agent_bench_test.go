package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/kubearmor/kscmp/deploy/agent"
)

// BenchmarkAgent is the load: one agent (the built binary), 1,000
// policies (~50 syscalls each) and 500 pods on its node, 4 policies selecting
// each pod (newBenchLoad). Per op: a cold start until every profile is on disk, then one
// policy change until its file changes. Reported: converge-ms, change-ms,
// rss-MiB (the agent's peak resident memory). KSCMP_BENCH_POLICIES=10000
// adds policies that select no pod (the informer and parse cost of many
// policies); the agent runs as in the DaemonSet (--aggregate=false).
func BenchmarkAgent(b *testing.B) {
	env := newBenchLoad(b)
	srv, ctx, policies, mkPolicy, mu := env.srv, env.ctx, env.policies, env.mkPolicy, &env.mu
	const nApps = benchApps
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
