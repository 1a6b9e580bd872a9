package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
)

// Errors a run wraps; check them with errors.Is.
var (
	// ErrInvalid: an option is wrong (a flag's value).
	ErrInvalid = errors.New("invalid option")
	// ErrRunActive: another run's recorders are still running.
	ErrRunActive = errors.New("a discover run is already active")
	// ErrNoNodes: nothing selected runs on any node.
	ErrNoNodes = errors.New("no node to record on")
	// ErrRunNotFound: --collect names a run that has no Jobs (left).
	ErrRunNotFound = errors.New("run not found")
)

// LogSource reads a recorder pod's log (of RecorderContainer). It is an
// interface so tests on an API server without kubelets can feed streams;
// PodLogs is the real one.
type LogSource interface {
	// Log opens the pod's log; tailLines > 0 reads only its last lines.
	Log(ctx context.Context, namespace, pod string, tailLines int64) (io.ReadCloser, error)
}

// PodLogs reads logs through the API server's pods/log endpoint.
type PodLogs struct{ Client kubernetes.Interface }

// Log implements LogSource.
func (p PodLogs) Log(ctx context.Context, namespace, pod string, tailLines int64) (io.ReadCloser, error) {
	opts := &corev1.PodLogOptions{Container: RecorderContainer}
	if tailLines > 0 {
		opts.TailLines = &tailLines
	}
	return p.Client.CoreV1().Pods(namespace).GetLogs(pod, opts).Stream(ctx)
}

// Options configure a run. Zero values take the defaults (Defaults).
type Options struct {
	// Namespace and Selector (k=v,...) select the workloads, as for the
	// node-local discover; Nodes restricts the nodes recorded on.
	Namespace string
	Selector  string
	Nodes     []string
	// Duration is how long each recorder records (> 0).
	Duration time.Duration
	// Interval is how often recorders write progress and Watch polls.
	Interval time.Duration
	// Image, RecorderNamespace and KubeletRoot place the recorders.
	Image             string
	RecorderNamespace string
	KubeletRoot       string
	// ProfileName is the recorder's seccomp profile, relative to the
	// kubelet's seccomp directory (discover.RecorderProfileName()).
	ProfileName string
	// Caps are the capabilities the recorder adds (DefaultCaps).
	Caps []string
	// HostPID runs the recorder in the host's PID namespace (not needed:
	// the recorder names workloads from its events).
	HostPID bool
	// Keep is the Jobs' ttlSecondsAfterFinished: how long a finished run
	// can still be collected with --collect when the CLI is gone.
	Keep time.Duration
	// Force starts a run even when another is active.
	Force bool

	// CreateQPS paces Job creation and deletion and stop annotations;
	// LogQPS paces progress reads (tailLines) through the API server.
	CreateQPS, LogQPS float64
	// Collectors bounds the logs read (and reports held) at once.
	Collectors int
	// StartTimeout is how long after Duration a run still waits for
	// recorders that have not finished; StopGrace how long after a stop
	// (Ctrl-C) it waits for them to write their reports.
	StartTimeout, StopGrace time.Duration
	// MaxStream bounds one node's decompressed report.
	MaxStream int64

	// Logs reads the recorders' logs (default PodLogs).
	Logs LogSource
	// Progress, when set, is called with the run's status every Interval
	// and on every change of a node's state.
	Progress func(Status)
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Defaults fills the zero fields and checks the options; an error names
// the option and wraps ErrInvalid.
func (o *Options) Defaults(client kubernetes.Interface) error {
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&o.Image, DefaultImage)
	set(&o.RecorderNamespace, DefaultRecorderNamespace)
	set(&o.KubeletRoot, DefaultKubeletRoot)
	if o.Caps == nil {
		o.Caps = DefaultCaps
	}
	if o.Keep == 0 {
		o.Keep = DefaultKeep
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.CreateQPS == 0 {
		o.CreateQPS = 20
	}
	if o.LogQPS == 0 {
		o.LogQPS = 10
	}
	if o.Collectors == 0 {
		o.Collectors = 8
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 2 * time.Minute
	}
	if o.StopGrace == 0 {
		o.StopGrace = time.Minute
	}
	if o.Logs == nil {
		o.Logs = PodLogs{client}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o.check()
}

// check validates what Defaults cannot fill.
func (o *Options) check() error {
	switch {
	case o.Duration <= 0:
		return fmt.Errorf("duration %v: a cluster run needs a duration > 0: %w", o.Duration, ErrInvalid)
	case o.Interval < time.Second:
		return fmt.Errorf("interval %v: at least 1s: %w", o.Interval, ErrInvalid)
	case o.Keep < 0:
		return fmt.Errorf("keep %v: must not be negative: %w", o.Keep, ErrInvalid)
	case o.ProfileName == "":
		return fmt.Errorf("recorder profile name: empty: %w", ErrInvalid)
	case o.CreateQPS < 0 || o.LogQPS < 0 || o.Collectors < 0:
		return fmt.Errorf("create QPS %v, log QPS %v, collectors %d: must not be negative: %w", o.CreateQPS, o.LogQPS, o.Collectors, ErrInvalid)
	}
	if _, err := api.ParseLabels(o.Selector); err != nil {
		return fmt.Errorf("selector %q: %v: %w", o.Selector, err, ErrInvalid)
	}
	return nil
}

// Result is a run's outcome.
type Result struct {
	// Report is the union report, Report.Nodes every planned node's state.
	Report *report.Report
	// Stopped says the run was ended early (Stop).
	Stopped bool
}

// Complete reports whether every planned node was collected without loss.
func (r *Result) Complete() bool {
	for _, n := range r.Report.Nodes {
		if !n.Complete() {
			return false
		}
	}
	return len(r.Report.Nodes) > 0
}

// Collected counts the nodes whose report was read.
func (r *Result) Collected() int {
	n := 0
	for _, c := range r.Report.Nodes {
		if c.State == report.NodeCollected || c.Workloads > 0 {
			n++
		}
	}
	return n
}
