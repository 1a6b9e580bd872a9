package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/api/violation"
)

// BenchmarkCollectViolations: kscmp violations --cluster's work after the
// bytes arrive, for M agents of 100 entries each (50 pods, two calls, as
// an agent on a busy node in complain mode might hold): each report read
// and validated, the union, the JSON written. The pod proxy's transport
// is not in it (a fake Fetch hands over the agent's bytes). Reported: the
// union's live heap after a GC (above what the bench held before: the
// agents' bodies), the bytes read and the written report's size.
func BenchmarkCollectViolations(b *testing.B) {
	for _, m := range []int{100, 1000} {
		b.Run(fmt.Sprintf("agents=%d", m), func(b *testing.B) {
			bodies := map[string][]byte{}
			var objs []kruntime.Object
			for i := range m {
				node, name := fmt.Sprintf("node-%04d", i), fmt.Sprintf("kscmp-agent-%04d", i)
				objs = append(objs, agentPod(name, node, corev1.PodRunning))
				bodies[name] = benchAgentReport(b, node, 50)
			}
			kube := fake.NewClientset(objs...)
			fetch := func(_ context.Context, pod *corev1.Pod, _ int) (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(bodies[pod.Name])), nil
			}
			var in int
			for _, body := range bodies {
				in += len(body)
			}
			runtime.GC()
			var base runtime.MemStats
			runtime.ReadMemStats(&base)
			b.ResetTimer()
			var out []byte
			for b.Loop() {
				out = nil
				r, err := CollectViolations(context.Background(), kube, CollectOptions{Fetch: fetch})
				if err != nil {
					b.Fatal(err)
				}
				if len(r.Violations) != m*100 {
					b.Fatalf("%d entries, want %d", len(r.Violations), m*100)
				}
				b.StopTimer()
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				b.ReportMetric(float64(ms.HeapAlloc-base.HeapAlloc)/(1<<20), "MiB-live")
				b.StartTimer()
				if out, err = r.Marshal(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(in)/(1<<20), "MiB-in")
			b.ReportMetric(float64(len(out))/(1<<20), "MiB-out")
		})
	}
}

// benchAgentReport is the /violations body of an agent on node with pods
// pods, each with a Block mkdir and an Audit chmod.
func benchAgentReport(b *testing.B, node string, pods int) []byte {
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	r := violation.New()
	r.Node, r.Source, r.Kernel, r.Arch, r.Start, r.End = node, "audit", "6.18", "x86_64", t0, t0.Add(time.Hour)
	for p := range pods {
		id := report.Identity{Kind: report.KindPod, Namespace: fmt.Sprintf("ns-%d", p%10), Pod: fmt.Sprintf("web-%s-%d", node, p),
			PodUID: fmt.Sprintf("%s-%d-uid-0000-0000-000000000000", node, p), Container: "app",
			Labels: map[string]string{"app": fmt.Sprintf("web-%d", p%10), "pod-template-hash": "5d4c8f7b9"},
			Owner:  &report.Owner{Kind: "Deployment", Name: fmt.Sprintf("web-%d", p%10)}, Runtime: "containerd",
			ContainerID: fmt.Sprintf("%064d", p)}
		for _, c := range []struct {
			name, action string
			nr           int
		}{{"mkdir", violation.ActionBlock, 83}, {"chmod", violation.ActionAudit, 90}} {
			r.Violations = append(r.Violations, violation.Violation{Identity: id, Syscall: c.name, Number: c.nr, ABI: "x86_64",
				Action: c.action, Count: 12, FirstSeen: t0, LastSeen: t0.Add(time.Minute), Profile: "localhost/kubearmor/" + id.Namespace + "/web.json"})
		}
	}
	data, err := r.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return data
}
