package agent

import (
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kubearmor/kscmp/api/violation"
)

// DefaultMaxSeries bounds the label sets of kscmp_agent_violations_total.
const DefaultMaxSeries = 500

// OtherLabel stands for every namespace, workload and system call past the
// series bound.
const OtherLabel = "other"

// Metrics is the agent's Prometheus registry: what an operator alerts on
// (profiles installed, reconcile time and errors, violations, audit
// records lost). client_golang is used rather than a hand-written text
// format because Prometheus and every scraper speak its exposition
// (content negotiation, histograms, process and Go metrics) and the
// ServiceMonitor of the Prometheus operator expects exactly that.
// A nil *Metrics records nothing.
type Metrics struct {
	reg        *prometheus.Registry
	reconDur   prometheus.Histogram
	reconErr   prometheus.Counter
	violations *prometheus.CounterVec
	lost       *prometheus.CounterVec
	dropped    prometheus.Counter

	mu        sync.Mutex
	series    map[[3]string]bool // the label sets given their own series
	maxSeries int
}

// NewMetrics makes the registry; profiles installed are counted at scrape
// time from seccompDir/kubearmor (a walk of a few hundred small entries),
// so no reconcile path has to keep a gauge right. maxSeries bounds the
// violation series (DefaultMaxSeries if 0).
func NewMetrics(seccompDir string, maxSeries int) *Metrics {
	if maxSeries <= 0 {
		maxSeries = DefaultMaxSeries
	}
	m := &Metrics{reg: prometheus.NewRegistry(), series: map[[3]string]bool{}, maxSeries: maxSeries}
	m.reconDur = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kscmp_agent_reconcile_duration_seconds",
		Help: "Time to reconcile one namespace's profiles on this node.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)})
	m.reconErr = prometheus.NewCounter(prometheus.CounterOpts{Name: "kscmp_agent_reconcile_errors_total",
		Help: "Namespace reconciles that failed (retried with back-off)."})
	m.violations = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kscmp_agent_violations_total",
		Help: "System calls seccomp refused (Block, Kill) or logged (Audit) in this node's pods; past the series bound namespace, workload and syscall are \"other\"."},
		[]string{"namespace", "workload", "syscall", "action"})
	m.lost = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kscmp_agent_audit_lost_total",
		Help: "Seccomp audit records not counted under a pod, by reason (audit: socket overflow, kernel: the kernel's audit backlog, overflow: monitor entry bound, unparsed, unattributed: the process was gone before it could be named, counted under its executable)."},
		[]string{"reason"})
	m.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "kscmp_agent_violation_events_dropped_total",
		Help: "Violation Events not written because the interval's Event bound was reached."})
	profiles := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kscmp_agent_profiles_installed",
		Help: "Profile files under <kubelet-root>/seccomp/kubearmor on this node."},
		func() float64 { return float64(countProfiles(filepath.Join(seccompDir, ProfileDir))) })
	m.reg.MustRegister(m.reconDur, m.reconErr, m.violations, m.lost, m.dropped, profiles,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// countProfiles counts the .json files under dir (0 when it is missing).
func countProfiles(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(d.Name(), ".json") {
			n++
		}
		return nil
	})
	return n
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ObserveReconcile records one namespace reconcile.
func (m *Metrics) ObserveReconcile(d time.Duration, err error) {
	if m == nil {
		return
	}
	m.reconDur.Observe(d.Seconds())
	if err != nil {
		m.reconErr.Inc()
	}
}

// AddViolations counts n violations of a workload. The first maxSeries
// distinct (namespace, workload, syscall) get their own series; later
// ones go to ("other", "other", "other", action): a pod churning names or
// a fuzzer calling every number cannot grow the scrape without bound.
// action is one of violation.Actions, a bounded set.
func (m *Metrics) AddViolations(namespace, workload, syscall, action string, n uint64) {
	if m == nil || n == 0 {
		return
	}
	k := [3]string{namespace, workload, syscall}
	m.mu.Lock()
	if !m.series[k] {
		if len(m.series) >= m.maxSeries {
			k = [3]string{OtherLabel, OtherLabel, OtherLabel}
		} else {
			m.series[k] = true
		}
	}
	m.mu.Unlock()
	m.violations.WithLabelValues(k[0], k[1], k[2], action).Add(float64(n))
}

// AddLost counts what a monitoring interval could not record.
func (m *Metrics) AddLost(l violation.Lost) {
	if m == nil {
		return
	}
	for reason, n := range map[string]uint64{"audit": l.Audit, "kernel": l.Kernel, "overflow": l.Overflow, "unparsed": l.Unparsed, "unattributed": l.Unattributed} {
		if n > 0 {
			m.lost.WithLabelValues(reason).Add(float64(n))
		}
	}
}

// droppedEvents counts Events not written.
func (m *Metrics) droppedEvents(n int) {
	if m != nil && n > 0 {
		m.dropped.Add(float64(n))
	}
}
