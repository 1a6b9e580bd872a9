package agent

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/violation"
	"github.com/kubearmor/kscmp/discover"
)

// The agent's violation report over HTTP: GET ViolationsPath on the
// metrics listener (kscmp agent --metrics-addr) answers the node's
// ViolationReport since the agent began watching. CollectViolations, behind
// kscmp violations --cluster, asks every agent for it through the API
// server's pod proxy and unites the answers.
const (
	ViolationsPath = "/violations"
	// MetricsPortName is the agent container's port that serves /metrics
	// and ViolationsPath (deploy/manifests/agent/daemonset.yaml and the
	// chart name it so); DefaultMetricsPort is used when a pod names none.
	MetricsPortName    = "metrics"
	DefaultMetricsPort = 9476
	// maxReport bounds the entries the agent keeps for its report; past
	// it, new entries are counted in Lost.Overflow (the metrics still
	// count them). An entry is about 0.8 KB of JSON with a pod's labels
	// (BenchmarkCollectViolations): the whole report about 4 MB.
	maxReport = 5000
	// maxReportBytes bounds one agent's answer as CollectViolations reads
	// it: maxReport entries with large label sets fit.
	maxReportBytes = 64 << 20
)

// cumulative is a node's violations since its watch began: the monitor's
// interval reports added up, at most maxReport entries.
type cumulative struct {
	report *violation.Report // nil until the first interval
	index  map[string]int    // entry key → index in report.Violations
}

// add sums one interval's report r in.
func (c *cumulative) add(r *violation.Report) {
	if c.report == nil {
		c.report = violation.New()
		c.report.Kernel, c.report.Arch, c.report.Start = r.Kernel, r.Arch, r.Start
		c.index = map[string]int{}
	}
	c.report.Source = r.Source
	c.report.Lost = c.report.Lost.Plus(r.Lost)
	for _, v := range r.Violations {
		k := v.Key()
		i, ok := c.index[k]
		if !ok {
			if len(c.report.Violations) >= maxReport {
				c.report.Lost.Overflow += v.Count
				continue
			}
			c.index[k] = len(c.report.Violations)
			c.report.Violations = append(c.report.Violations, v)
			continue
		}
		c.report.Violations[i].Merge(v)
	}
}

// ViolationReport returns the node's ViolationReport: every refused or
// logged call the watch has seen since it began (Start), sorted, at most
// maxReport entries (more are counted in Lost.Overflow). It is nil when the
// violations are not watched. An agent that has seen nothing yet gives an
// empty report starting now.
func (a *Agent) ViolationReport() *violation.Report {
	if a.viol == nil {
		return nil
	}
	w := a.viol
	w.mu.Lock()
	defer w.mu.Unlock()
	r := violation.New()
	if t := w.total.report; t != nil {
		*r = *t
		r.Violations = slices.Clone(t.Violations)
	} else {
		r.Start = time.Now()
	}
	r.Node, r.End = w.node, time.Now()
	r.Sort()
	return r
}

// ReportFilter selects the entries of a node's report the agent sends:
// the query of GET ViolationsPath, so that a cluster's collection moves and
// holds only what was asked for.
type ReportFilter struct {
	// Namespace, Selector (pod labels, k=v[,k=v]) and Container as in
	// kscmp violations; Since keeps entries last seen at or after it.
	Namespace, Selector, Container string
	Since                          time.Time
}

// query is f as ViolationsPath's query parameters.
func (f ReportFilter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"namespace": f.Namespace, "selector": f.Selector, "container": f.Container} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// parseReportFilter reads the query q; a bad value names its parameter.
func parseReportFilter(q url.Values) (discover.Filter, time.Time, error) {
	sel, err := api.ParseLabels(q.Get("selector"))
	if err != nil {
		return discover.Filter{}, time.Time{}, fmt.Errorf("selector: %w", err)
	}
	var since time.Time
	if s := q.Get("since"); s != "" {
		if since, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return discover.Filter{}, time.Time{}, fmt.Errorf("since %q: want an RFC 3339 time", s)
		}
	}
	return discover.Filter{Namespace: q.Get("namespace"), Selector: sel, Container: q.Get("container")}, since, nil
}

// ViolationsHandler serves ViolationReport as JSON at GET ViolationsPath,
// the entries the query's ReportFilter keeps (all without one); 404 when
// the violations are not watched (kscmp agent --violations=false), 400 for
// a bad query.
func (a *Agent) ViolationsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		filter, since, err := parseReportFilter(req.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r := a.ViolationReport()
		if r == nil {
			http.Error(w, "violations are not watched on this node (kscmp agent --violations=false)", http.StatusNotFound)
			return
		}
		r.Violations = slices.DeleteFunc(r.Violations, func(v violation.Violation) bool {
			return !filter.Match(0, v.Identity) || v.LastSeen.Before(since)
		})
		data, err := r.Marshal()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	})
}

// CollectOptions says where CollectViolations finds the agents.
type CollectOptions struct {
	// Namespace and Selector find the agent pods (kscmp-system,
	// app.kubernetes.io/name=kscmp-agent: the manifests' and the chart's).
	Namespace, Selector string
	// Filter is sent to every agent: only the entries it keeps travel.
	Filter ReportFilter
	// Parallel agents are asked at once (16 if 0); Timeout bounds each
	// (30 s if 0).
	Parallel int
	Timeout  time.Duration
	// Fetch, when set, replaces the API server's pod proxy (tests).
	Fetch func(ctx context.Context, pod *corev1.Pod, port int) (io.ReadCloser, error)
}

// ErrNoAgents is returned by CollectViolations when no agent pod matches.
var ErrNoAgents = errors.New("no kscmp agent pod found")

// CollectViolations asks every agent pod of opts for its node's report
// through the API server (GET pods/proxy; the caller needs that right in
// the agents' namespace and list on its pods) and returns their union with
// one Nodes entry per agent pod, sorted by node. An agent that does not
// answer, or answers something that is not a valid report, is a Nodes
// entry with Collected false and the reason; the error is only for a
// failed pod list or no agent at all.
func CollectViolations(ctx context.Context, kube kubernetes.Interface, opts CollectOptions) (*violation.Report, error) {
	opts.Namespace = cmp.Or(opts.Namespace, "kscmp-system")
	opts.Selector = cmp.Or(opts.Selector, "app.kubernetes.io/name=kscmp-agent")
	opts.Parallel = cmp.Or(opts.Parallel, 16)
	opts.Timeout = cmp.Or(opts.Timeout, 30*time.Second)
	if opts.Fetch == nil {
		opts.Fetch = func(ctx context.Context, pod *corev1.Pod, port int) (io.ReadCloser, error) {
			params := map[string]string{}
			for k, v := range opts.Filter.query() {
				params[k] = v[0]
			}
			return kube.CoreV1().Pods(pod.Namespace).ProxyGet("http", pod.Name, strconv.Itoa(port), ViolationsPath, params).Stream(ctx)
		}
	}
	pods, err := kube.CoreV1().Pods(opts.Namespace).List(ctx, metav1.ListOptions{LabelSelector: opts.Selector})
	if err != nil {
		return nil, fmt.Errorf("list agent pods in %s (%s): %w", opts.Namespace, opts.Selector, err)
	}
	if len(pods.Items) == 0 {
		return nil, fmt.Errorf("%w in namespace %s with labels %s", ErrNoAgents, opts.Namespace, opts.Selector)
	}
	nodes := make([]violation.Node, len(pods.Items))
	reports := make([]*violation.Report, len(pods.Items))
	sem := make(chan struct{}, opts.Parallel)
	var wg sync.WaitGroup
	for i := range pods.Items {
		pod := &pods.Items[i]
		nodes[i] = violation.Node{Name: pod.Spec.NodeName, Agent: pod.Name}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			r, err := fetchReport(ctx, pod, opts)
			if err != nil {
				nodes[i].Error = err.Error()
				return
			}
			reports[i] = r
			nodes[i].Collected, nodes[i].Start = true, r.Start
			nodes[i].Violations, nodes[i].Lost = len(r.Violations), r.Lost
		})
	}
	wg.Wait()
	out := violation.Union(slices.DeleteFunc(reports, func(r *violation.Report) bool { return r == nil })...)
	out.Node = ""
	slices.SortFunc(nodes, func(a, b violation.Node) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Agent, b.Agent))
	})
	out.Nodes = nodes
	if out.End.IsZero() {
		out.End = time.Now()
	}
	return out, nil
}

// fetchReport reads and validates one agent's report.
func fetchReport(ctx context.Context, pod *corev1.Pod, opts CollectOptions) (*violation.Report, error) {
	if pod.Status.Phase != corev1.PodRunning {
		return nil, fmt.Errorf("agent pod %s is %s, not Running", pod.Name, cmp.Or(string(pod.Status.Phase), "not started"))
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	body, err := opts.Fetch(ctx, pod, metricsPort(pod))
	if err != nil {
		return nil, fmt.Errorf("agent pod %s: GET %s: %w", pod.Name, ViolationsPath, err)
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, maxReportBytes+1))
	if err != nil {
		return nil, fmt.Errorf("agent pod %s: read %s: %w", pod.Name, ViolationsPath, err)
	}
	if len(data) > maxReportBytes {
		return nil, fmt.Errorf("agent pod %s: %s: more than %d bytes", pod.Name, ViolationsPath, maxReportBytes)
	}
	r, err := violation.Read(bytes.NewReader(data), "agent pod "+pod.Name+" "+ViolationsPath)
	if err != nil {
		return nil, err
	}
	if r.Node != pod.Spec.NodeName {
		return nil, fmt.Errorf("agent pod %s: its report is of node %q, the pod runs on %q", pod.Name, r.Node, pod.Spec.NodeName)
	}
	return r, nil
}

// metricsPort is the agent container's port named MetricsPortName, else
// DefaultMetricsPort.
func metricsPort(pod *corev1.Pod) int {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == MetricsPortName && p.ContainerPort > 0 {
				return int(p.ContainerPort)
			}
		}
	}
	return DefaultMetricsPort
}
