package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/kubearmor/kscmp/internal/apitest"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// TestScaleBench is make bench-scale: M agents (KSCMP_BENCH_AGENTS) in this
// process, each with its own clients, informers, node name and kubelet
// directory, and one aggregator, against a real kube-apiserver + etcd with
// P policies (KSCMP_BENCH_POLICIES) and one pod per node. After the start
// has settled, one policy that selects a container on every node is
// changed; measured until every node has the new profile on disk
// (converge) and the policy's status says so: the API server's own
// apiserver_request_total by verb and resource, watch events and bytes
// each agent received, and the API server's CPU time. It prints a table
// and one line:
//
//	agents=M policies=P writes_per_node_per_change=W events_per_agent_per_change=E converge_ms=C
//
// W counts every write request in the window (agents' and aggregator's,
// Events included, and the bench's own update of the policy; the leader's
// Lease renewals left out) divided by M; E
// counts every add/update/delete the agent's informers received, divided
// by M. It also logs when the agents received the change and the CPU time
// of this process, the API server and etcd until converged. To compare:
// KSCMP_BENCH_CPUPROFILE=file profiles this process in that window,
// KSCMP_BENCH_CONN=own gives each agent a connection of its own (as on a
// cluster; otherwise all share one), KSCMP_BENCH_STATUS_DELAY and
// KSCMP_BENCH_HOLD (durations) set Options.StatusDelay and
// AggregatorOptions.Hold. Skipped unless KSCMP_BENCH_AGENTS is set.
func TestScaleBench(t *testing.T) {
	m, _ := strconv.Atoi(os.Getenv("KSCMP_BENCH_AGENTS"))
	if m <= 0 {
		t.Skip("make bench-scale AGENTS=M POLICIES=P runs it")
	}
	p, _ := strconv.Atoi(os.Getenv("KSCMP_BENCH_POLICIES"))
	if p < 2 {
		p = 100
	}
	// KSCMP_BENCH_CONN=own: each agent on a connection of its own.
	ownConn := os.Getenv("KSCMP_BENCH_CONN") == "own"
	// The status delays, to compare (a duration; the defaults if unset).
	statusDelay, _ := time.ParseDuration(os.Getenv("KSCMP_BENCH_STATUS_DELAY"))
	hold, _ := time.ParseDuration(os.Getenv("KSCMP_BENCH_HOLD"))
	srv := apitest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	srv.InstallPolicyCRD(t)
	srv.CreateNamespace(t, "bench")
	admin := fastConfig(srv.Config, nil)
	dyn := dynamic.NewForConfigOrDie(admin)
	kube := kubernetes.NewForConfigOrDie(admin)

	setup := time.Now()
	testenv.Parallel(t, p, 8, func(j int) error { return benchPolicy(ctx, dyn, j, "") })
	testenv.Parallel(t, m, 8, func(i int) error {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%04d", i), Namespace: "bench",
			Labels: map[string]string{"app": "all", "id": benchName(1 + i%(p-1))}},
			Spec: corev1.PodSpec{NodeName: benchNode(i), Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}
		_, err := kube.CoreV1().Pods("bench").Create(ctx, pod, metav1.CreateOptions{})
		return err
	})

	base := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	agents := make([]*benchAgent, m)
	var wg sync.WaitGroup
	actx, stop := context.WithCancel(ctx)
	defer func() { stop(); wg.Wait() }()
	for i := range m {
		b := &benchAgent{dir: filepath.Join(base, benchNode(i)), pod: i}
		cfg := fastConfig(srv.Config, &b.bytes)
		if ownConn {
			// A transport of its own (client-go shares one per TLS
			// configuration, so all agents would share one HTTP/2
			// connection): a node's agent has its own connection.
			cfg.Proxy = http.ProxyFromEnvironment
		}
		a, err := New(kubernetes.NewForConfigOrDie(cfg), dynamic.NewForConfigOrDie(cfg), Options{Node: benchNode(i), SeccompDir: b.dir, Workers: 1, StatusDelay: statusDelay, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		count := cache.ResourceEventHandlerFuncs{AddFunc: func(any) { b.events.Add(1) },
			UpdateFunc: func(_, _ any) { b.events.Add(1) }, DeleteFunc: func(any) { b.events.Add(1) }}
		a.pods.AddEventHandler(count)
		a.policies.informer.AddEventHandler(count)
		a.policies.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: func(_, obj any) {
			if u, ok := obj.(*unstructured.Unstructured); ok && u.GetName() == benchName(0) && u.GetGeneration() == 2 {
				b.received.CompareAndSwap(0, time.Now().UnixNano())
			}
		}})
		agents[i] = b
		wg.Go(func() { a.Run(actx) })
	}
	aggCfg := fastConfig(srv.Config, nil)
	agg := NewAggregator(kubernetes.NewForConfigOrDie(aggCfg), dynamic.NewForConfigOrDie(aggCfg), NewPolicyCache(dynamic.NewForConfigOrDie(aggCfg), nil), AggregatorOptions{Hold: hold, Logger: quiet})
	if !agg.policies.Start(actx) {
		t.Fatal("aggregator's policies not listed")
	}
	wg.Go(func() { agg.Run(actx) })

	// The start settles: every node has its profile, the changed policy's
	// status counts every node.
	waitLong(ctx, t, "every node has its profile", func() bool { return allHave(agents, p, "getpid") })
	waitLong(ctx, t, "status settled", func() bool { return statusSays(agg.policies, 1, m) })
	waitLong(ctx, t, "every policy has a status", func() bool { return allStatus(agg.policies) })
	// The agents have received the start's status writes: no watch event
	// for two seconds.
	for last := int64(-1); ; time.Sleep(2 * time.Second) {
		if ev, _ := totals(agents); ev == last {
			break
		} else {
			last = ev
		}
	}
	t.Logf("start settled %s after setup began", time.Since(setup).Round(time.Millisecond))
	before := scrape(ctx, t, kube)
	ev0, by0 := totals(agents)
	stopProfile := func() {}
	if f := os.Getenv("KSCMP_BENCH_CPUPROFILE"); f != "" {
		stopProfile = cpuProfile(t, f) // the window until converged
	}
	cpu0, api0, etcd0 := selfCPU(), before.cpu, etcdCPU(ctx, t, srv.EtcdURL)

	start := time.Now()
	if err := benchPolicy(ctx, dyn, 0, "flock"); err != nil {
		t.Fatal(err)
	}
	// Polled every 100 ms, reading M files: polling often would take the
	// CPU the agents need (5 ms polls of 200 files did). The time is the
	// newest profile's mtime instead: when the last node wrote it.
	waitEvery(ctx, t, 100*time.Millisecond, "every node has the changed profile", func() bool { return allHave(agents, p, "flock") })
	last, received := lastWritten(t, agents, p), slowestReceived(agents)
	converge := last.Sub(start)
	t.Logf("the changed policy reached every agent's informer after %s; the last profile was written after %s",
		received.Sub(start).Round(time.Millisecond), converge.Round(time.Millisecond))
	t.Logf("received by the agents after (min, median, 90th, max): %s", spread(agents, start))
	stopProfile()
	cpu1, api1, etcd1 := selfCPU(), scrape(ctx, t, kube).cpu, etcdCPU(ctx, t, srv.EtcdURL)
	t.Logf("CPU until then: this process (agents, aggregator) %.2f s, the API server %.2f s, etcd %.2f s", cpu1-cpu0, api1-api0, etcd1-etcd0)
	waitLong(ctx, t, "status of generation 2 on every node", func() bool { return statusSays(agg.policies, 2, m) })
	time.Sleep(3 * time.Second) // writes still trailing (Events, a last status)
	after := scrape(ctx, t, kube)
	ev1, by1 := totals(agents)
	printScale(t, m, p, before, after, float64(ev1-ev0)/float64(m), float64(by1-by0)/float64(m), converge)
}

// selfCPU is this process's user and system CPU time so far, in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// etcdCPU is etcd's process_cpu_seconds_total, from its /metrics.
func etcdCPU(ctx context.Context, t *testing.T, url string) float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("etcd /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_cpu_seconds_total "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatalf("etcd /metrics: no process_cpu_seconds_total (%v)", sc.Err())
	return 0
}

// cpuProfile writes this process's CPU profile to file from now until the
// returned function is called.
func cpuProfile(t *testing.T, file string) func() {
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	}
}

// benchAgent is one simulated node's counters.
type benchAgent struct {
	dir    string
	pod    int
	events atomic.Int64 // informer adds, updates, deletes
	// received is when the changed policy (p0000, generation 2) reached
	// this agent's informer, in Unix nanoseconds; 0 before.
	received atomic.Int64
	bytes    atomic.Int64 // response bytes read (watch streams included)
}

func benchNode(i int) string { return fmt.Sprintf("node-%04d", i) }
func benchName(j int) string { return fmt.Sprintf("p%04d", j) }

// benchPolicy creates policy j (or, with extra, replaces policy 0 with one
// that also allows extra): p0000 selects every pod (app=all), the others
// the pod labelled id=<its name>.
func benchPolicy(ctx context.Context, dyn dynamic.Interface, j int, extra string) error {
	sel := map[string]any{"id": benchName(j)}
	calls := []any{"read", "write", "getpid"}
	if j == 0 {
		sel = map[string]any{"app": "all"}
	}
	if extra != "" {
		calls = append(calls, extra)
	}
	ri := dyn.Resource(PolicyResource).Namespace("bench")
	if extra != "" {
		cur, err := ri.Get(ctx, benchName(j), metav1.GetOptions{})
		if err != nil {
			return err
		}
		unstructured.SetNestedSlice(cur.Object, calls, "spec", "seccomp", "syscalls")
		_, err = ri.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": PolicyResource.GroupVersion().String(), "kind": "KubeArmorSeccompPolicy",
		"metadata": map[string]any{"name": benchName(j), "namespace": "bench"},
		"spec": map[string]any{"selector": map[string]any{"matchLabels": sel},
			"seccomp": map[string]any{"syscalls": calls, "action": "Allow"}}}}
	_, err := ri.Create(ctx, u, metav1.CreateOptions{})
	return err
}

// allHave: every node's profile for its pod holds the system call.
func allHave(agents []*benchAgent, p int, call string) bool {
	for _, b := range agents {
		path := ProfilePath("bench", ProfileName([]string{"bench/" + benchName(0), "bench/" + benchName(1+b.pod%(p-1))}))
		data, err := os.ReadFile(filepath.Join(b.dir, filepath.FromSlash(path)))
		if err != nil || !strings.Contains(string(data), `"`+call+`"`) {
			return false
		}
	}
	return true
}

// statusSays: p0000's status describes generation gen, installed on m of m
// nodes. It reads the aggregator's informer, so that polling makes no
// request in the measured window.
func statusSays(c *PolicyCache, gen int64, m int) bool {
	obj, ok, err := c.informer.GetIndexer().GetByKey("bench/" + benchName(0))
	u, _ := obj.(*unstructured.Unstructured)
	if err != nil || !ok || u == nil {
		return false
	}
	g, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	n, _, _ := unstructured.NestedInt64(u.Object, "status", "nodes")
	s, _, _ := unstructured.NestedInt64(u.Object, "status", "selectedNodes")
	return g == gen && n == int64(m) && s == int64(m)
}

// allStatus: every policy's status describes its generation.
func allStatus(c *PolicyCache) bool {
	for _, u := range c.Objects("") {
		if g, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration"); g != u.GetGeneration() {
			return false
		}
	}
	return true
}

func totals(agents []*benchAgent) (events, bytes int64) {
	for _, b := range agents {
		events += b.events.Load()
		bytes += b.bytes.Load()
	}
	return events, bytes
}

// fastConfig is a copy of cfg without client-side throttling (the bench
// measures the server, not client-go's limiter), counting response bytes
// into n when n is not nil.
func fastConfig(cfg *rest.Config, n *atomic.Int64) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = 1000, 2000
	if n != nil {
		c.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingRT{rt, n} })
	}
	return c
}

type countingRT struct {
	rt http.RoundTripper
	n  *atomic.Int64
}

func (c countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	if resp != nil && resp.Body != nil {
		resp.Body = &countingBody{resp.Body, c.n}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	k, err := b.ReadCloser.Read(p)
	b.n.Add(int64(k))
	return k, err
}

func waitLong(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitEvery(ctx, t, 5*time.Millisecond, what, cond)
}

// waitEvery is waitLong polling every interval.
func waitEvery(ctx context.Context, t *testing.T, interval time.Duration, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// lastWritten is the newest modification time of the agents' profiles
// that allHave reads.
func lastWritten(t *testing.T, agents []*benchAgent, p int) time.Time {
	var last time.Time
	for _, b := range agents {
		path := ProfilePath("bench", ProfileName([]string{"bench/" + benchName(0), "bench/" + benchName(1+b.pod%(p-1))}))
		fi, err := os.Stat(filepath.Join(b.dir, filepath.FromSlash(path)))
		if err != nil {
			t.Fatal(err)
		}
		if fi.ModTime().After(last) {
			last = fi.ModTime()
		}
	}
	return last
}

// spread is when the agents received the changed policy after start: the
// minimum, median, 90th percentile and maximum.
func spread(agents []*benchAgent, start time.Time) string {
	var ds []time.Duration
	for _, b := range agents {
		ds = append(ds, time.Unix(0, b.received.Load()).Sub(start))
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[int(q*float64(len(ds)-1))].Round(time.Millisecond) }
	return fmt.Sprintf("%s, %s, %s, %s", at(0), at(0.5), at(0.9), at(1))
}

// slowestReceived is when the last agent's informer received the changed
// policy.
func slowestReceived(agents []*benchAgent) time.Time {
	var last int64
	for _, b := range agents {
		last = max(last, b.received.Load())
	}
	return time.Unix(0, last)
}

// serverMetrics are the API server's counters that the bench reads.
type serverMetrics struct {
	requests map[string]float64 // "VERB resource[/subresource]" → count
	cpu      float64            // process_cpu_seconds_total
}

var requestLine = regexp.MustCompile(`^apiserver_request_total\{(.*)\} ([0-9.e+]+)$`)
var labelRe = regexp.MustCompile(`(\w+)="([^"]*)"`)

// scrape reads the API server's /metrics.
func scrape(ctx context.Context, t *testing.T, kube kubernetes.Interface) serverMetrics {
	t.Helper()
	body, err := kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	out := serverMetrics{requests: map[string]float64{}}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "process_cpu_seconds_total "); ok {
			out.cpu, _ = strconv.ParseFloat(v, 64)
		}
		mm := requestLine.FindStringSubmatch(line)
		if mm == nil {
			continue
		}
		labels := map[string]string{}
		for _, l := range labelRe.FindAllStringSubmatch(mm[1], -1) {
			labels[l[1]] = l[2]
		}
		res := labels["resource"]
		if labels["subresource"] != "" {
			res += "/" + labels["subresource"]
		}
		v, _ := strconv.ParseFloat(mm[2], 64)
		out.requests[labels["verb"]+" "+res] += v
	}
	return out
}

// printScale prints the window's requests by verb and resource, and the line.
func printScale(t *testing.T, m, p int, before, after serverMetrics, events, bytes float64, converge time.Duration) {
	writes := 0.0
	var rows []string
	for _, k := range slices.Sorted(maps.Keys(after.requests)) {
		d := after.requests[k] - before.requests[k]
		if d == 0 {
			continue
		}
		verb, res, _ := strings.Cut(k, " ")
		rows = append(rows, fmt.Sprintf("  %-8s %-45s %8.0f", verb, res, d))
		switch verb {
		case "POST", "PUT", "PATCH", "APPLY", "DELETE":
			if res != "leases" {
				writes += d
			}
		}
	}
	fmt.Printf("agents=%d policies=%d: API requests in the window of one policy change (verb, resource, count)\n%s\n", m, p, strings.Join(rows, "\n"))
	fmt.Printf("  apiserver CPU %.2f s; per agent: %.1f watch events, %.0f bytes read\n", after.cpu-before.cpu, events, bytes)
	fmt.Printf("agents=%d policies=%d writes_per_node_per_change=%.2f events_per_agent_per_change=%.2f converge_ms=%d\n",
		m, p, writes/float64(m), events, converge.Milliseconds())
}
