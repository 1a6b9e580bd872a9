package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/discover/cluster"
	"github.com/kubearmor/kscmp/internal/apitest"
)

// The collection benchmarks (make bench-cluster-collect; figures in
// BENCHMARKS.md and docs/architecture.md "Discovery on a cluster").
//
// A node's report is W pod workloads; each pod belongs to one of 2W
// Deployments of one namespace spread over the cluster, and each
// Deployment makes one of 20 distinct sets of 60 to 140 x86_64 calls
// (programs differ, replicas do not): the shape the issue names
// ("reports are mostly the same syscall sets over and over").

// sets are the 20 distinct call sets, fixed by a seeded generator.
var sets = func() [][]string {
	names := make([]string, 0, 400)
	for n := range api.ArchX86_64.Table().SyscallNames {
		names = append(names, n)
	}
	slices.Sort(names)
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([][]string, 20)
	for i := range out {
		perm := rng.Perm(len(names))[:60+rng.IntN(81)]
		for _, j := range perm {
			out[i] = append(out[i], names[j])
		}
		slices.Sort(out[i])
	}
	return out
}()

// benchReport is node n's report with w workloads (as a recorder writes
// it: pod names, uids, container ids, cgroups, labels).
func benchReport(n, w int) *report.Report {
	r := report.New()
	r.Node, r.Kernel, r.Arch, r.Hook, r.Run = fmt.Sprintf("node-%04d", n), "6.8.0-90-generic", "x86_64", "tp_btf", "bench"
	r.Start = time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	r.End = r.Start.Add(10 * time.Minute)
	for i := range w {
		d := (i + n*w/2) % (2 * w)
		dep := fmt.Sprintf("svc-%04d", d)
		pod := fmt.Sprintf("%s-7d9f8b6c5-%05x", dep, n*w+i)
		id := fmt.Sprintf("%016x%016x%016x%016x", n, i, d, n*i)
		r.Workloads = append(r.Workloads, report.Workload{
			Identity: report.Identity{Kind: report.KindPod, Namespace: "shop", Pod: pod, PodUID: id[:36], Container: "app",
				Labels: map[string]string{"app.kubernetes.io/name": dep, "pod-template-hash": "7d9f8b6c5"},
				Owner:  &report.Owner{Kind: "Deployment", Name: dep}, ContainerID: id, Runtime: "containerd",
				Cgroup: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + id[:36] + ".slice/cri-containerd-" + id + ".scope"},
			Syscalls:  map[string][]string{"x86_64": slices.Clone(sets[d%len(sets)])},
			FirstSeen: r.Start, LastSeen: r.End,
		})
	}
	return r
}

func stream(b *testing.B, r *report.Report) []byte {
	var buf bytes.Buffer
	report.WriteProgress(&buf, report.Progress{Node: r.Node, ElapsedSeconds: 600, Workloads: len(r.Workloads), Calls: 1})
	if err := report.WriteStream(&buf, r); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkNodeStream: what one recorder writes at the end (compress,
// frame) and the bytes of its log: what the API server relays per node.
func BenchmarkNodeStream(b *testing.B) {
	for _, w := range []int{100, 2000} {
		b.Run(fmt.Sprintf("workloads=%d", w), func(b *testing.B) {
			r := benchReport(1, w)
			raw, _ := r.Marshal()
			var n int
			for b.Loop() {
				n = len(stream(b, r))
			}
			b.ReportMetric(float64(n), "log-bytes")
			b.ReportMetric(float64(len(raw)), "json-bytes")
		})
	}
}

// BenchmarkCollectNode: the collector's work per node: read the log
// (ReadStream: decode, check, decompress, validate) and add it to the
// union.
func BenchmarkCollectNode(b *testing.B) {
	for _, w := range []int{100, 2000} {
		b.Run(fmt.Sprintf("workloads=%d", w), func(b *testing.B) {
			log := stream(b, benchReport(1, w))
			b.SetBytes(int64(len(log)))
			for b.Loop() {
				res, err := report.ReadStream(bytes.NewReader(log), "bench", 0)
				if err != nil {
					b.Fatal(err)
				}
				cluster.NewUnion("bench").Add("node-0001", res.Report)
			}
		})
	}
}

// BenchmarkUnion: the CLI collecting M nodes of 100 workloads each, one
// log after another, into one report: its time, its live heap at the end
// (the union, with every contributing pod's name) and the report's size.
// The logs are made before the timer starts.
func BenchmarkUnion(b *testing.B) {
	for _, m := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("nodes=%d", m), func(b *testing.B) {
			logs := make([][]byte, m)
			for n := range logs {
				logs[n] = stream(b, benchReport(n, 100))
			}
			var heap uint64
			var size int
			for b.Loop() {
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				u := cluster.NewUnion("bench")
				for n, log := range logs {
					res, err := report.ReadStream(bytes.NewReader(log), "bench", 0)
					if err != nil {
						b.Fatal(err)
					}
					u.Add(fmt.Sprintf("node-%04d", n), res.Report)
				}
				rep := u.Report(nil)
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				heap = after.HeapAlloc - min(after.HeapAlloc, before.HeapAlloc)
				data, _ := rep.Marshal()
				size = len(data)
				runtime.KeepAlive(u)
			}
			b.ReportMetric(float64(heap)/(1<<20), "union-MiB")
			b.ReportMetric(float64(size)/(1<<20), "report-MiB")
		})
	}
}

// BenchmarkStartJobs: on a real API server and etcd, the start burst of a
// run on N nodes, unpaced (the server's own rate), and the size of a
// recorder Job and its pod as etcd stores them (protobuf): the only
// objects a run writes.
func BenchmarkStartJobs(b *testing.B) {
	srv := apitest.Start(b)
	srv.CreateNamespace(b, "rec")
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: cluster.ServiceAccount, Namespace: "rec"}}
	if _, err := srv.Client.CoreV1().ServiceAccounts("rec").Create(context.Background(), sa, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	o := &cluster.Options{RecorderNamespace: "rec", Duration: 10 * time.Minute, ProfileName: "kscmp/recorder-0123456789ab.json",
		Namespace: "shop", CreateQPS: 1e6}
	if err := o.Defaults(srv.Client); err != nil {
		b.Fatal(err)
	}
	const nodes = 1000
	plan := &cluster.Plan{Nodes: make([]string, nodes)}
	for i := range plan.Nodes {
		plan.Nodes[i] = fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal", i/256, i%256)
	}
	run := 0
	for b.Loop() {
		run++
		plan.Run = fmt.Sprintf("bench-%d", run)
		if err := cluster.Start(context.Background(), srv.Client, o, plan, nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := cluster.Cleanup(context.Background(), srv.Client, "rec", plan.Run, nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	job := cluster.JobFor(o, "20261201-061800-a1b2", plan.Nodes[0])
	pod := &corev1.Pod{ObjectMeta: job.Spec.Template.ObjectMeta, Spec: job.Spec.Template.Spec}
	pod.Name = job.Name + "-x7k2p"
	jb, _ := job.Marshal()
	pb, _ := pod.Marshal()
	b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N*nodes)*1e3, "ms/job")
	b.ReportMetric(float64(len(jb)), "job-proto-bytes")
	b.ReportMetric(float64(len(pb)), "pod-proto-bytes")
}
