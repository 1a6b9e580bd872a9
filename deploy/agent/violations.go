package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/api/violation"
	"github.com/kubearmor/kscmp/discover"
	"github.com/kubearmor/kscmp/discover/violations"
)

// Defaults of ViolationOptions.
const (
	DefaultViolationInterval = time.Minute
	DefaultMaxEvents         = 50
	// EventComponent is the source of the agent's violation Events.
	EventComponent = "kscmp-agent"
)

// ViolationOptions configures the agent's violations watch.
type ViolationOptions struct {
	// Interval is how long violations are summed before one Event per
	// (pod, container, call, action) is written (DefaultViolationInterval
	// if 0).
	Interval time.Duration
	// MaxEvents bounds the Events written per interval, the largest
	// counts first; the rest are counted in the metrics and logged
	// (DefaultMaxEvents if 0).
	MaxEvents int
	// ExitErrors, when set, also counts the EPERM refusals that audit
	// does not see (runc cannot log SCMP_ACT_ERRNO): the monitor's eBPF
	// program on sys_exit (violations.Options.ExitErrors; off by
	// default, BENCHMARKS.md). When the node cannot load it, the watch
	// goes on with audit records alone.
	ExitErrors violations.WatchSource
	// AttributeExited names the workload of a process gone before its
	// record is read (violations.Options.AttributeExited: an eBPF program
	// on process exit). When the node cannot load it, the watch goes on
	// without it, and such records count as unattributed.
	AttributeExited bool
	// Monitor, when set, replaces the audit monitor (tests).
	Monitor func(context.Context, violations.Options) (*violation.Report, error)
	// Ready, when set, is called once the monitor is subscribed (tests).
	Ready func()
}

// ViolationCount is one line of the node's violation summary: how often a
// profile's container made a call that was refused or logged, since the
// agent started.
type ViolationCount struct {
	Namespace, Pod, Container string
	Profile                   string // the pod's profile, "localhost/kubearmor/<ns>/<file>.json"
	Syscall, Action           string
	Count                     uint64
	LastSeen                  time.Time
}

// violationWatch turns the monitor's interval reports into Events on the
// pods, metrics, and the node summary.
type violationWatch struct {
	kube    kubernetes.Interface
	node    string
	opts    ViolationOptions
	metrics *Metrics
	log     *slog.Logger

	mu      sync.Mutex                    // guards summary and total
	summary map[[5]string]*ViolationCount // (ns, pod, container, syscall, action); bounded by maxSummary
	total   cumulative                    // every entry since the watch began, for ViolationReport

	// handled, when set, is called after each interval's report: the
	// agent then puts the summary into the node status.
	handled func()
}

// maxSummary bounds the node summary's lines; past it, counts go to the
// existing lines only (new ones are dropped: the metrics still count them).
const maxSummary = 1000

// runViolations runs the audit monitor for this node's pods until ctx is
// done. A node whose kernel or capabilities cannot deliver the records is
// logged once and left alone: profiles still install.
func (w *violationWatch) run(ctx context.Context, pods discover.PodLookup) {
	monitor := w.opts.Monitor
	if monitor == nil {
		monitor = violations.Monitor
	}
	exitErrors, exited := w.opts.ExitErrors, w.opts.AttributeExited
	for ctx.Err() == nil {
		ready := func() {
			w.log.Info("agent: violations watched", "audit", true, "exit_errors", exitErrors != nil, "attribute_exited", exited, "interval", w.opts.Interval)
			if w.opts.Ready != nil {
				w.opts.Ready()
			}
		}
		_, err := monitor(ctx, violations.Options{Pods: pods, Interval: w.opts.Interval, Reset: true, ExitErrors: exitErrors,
			AttributeExited: exited, Update: func(r *violation.Report) { w.handle(ctx, r) }, Ready: ready, Logger: w.log})
		if err == nil || ctx.Err() != nil {
			return
		}
		if errors.Is(err, violations.ErrExitedUnsupported) && exited {
			// Records still come; those of processes gone before they are
			// read are counted as unattributed.
			w.log.Error("agent: --attribute-exited not available on this node (needs CAP_BPF, CAP_PERFMON and a kernel with BTF); processes that exit before their record is read are not named", "error", err)
			exited = false
			continue
		}
		if errors.Is(err, violations.ErrExitErrorsUnsupported) && exitErrors != nil {
			// The audit records may still come: the refusals under runc
			// are then not seen, as without the option.
			w.log.Error("agent: --exit-errors not available on this node (needs CAP_BPF, CAP_PERFMON and a kernel with BTF); watching audit records only", "error", err)
			exitErrors = nil
			continue
		}
		if errors.Is(err, violations.ErrUnsupported) {
			w.log.Error("agent: violations not watched on this node (needs CAP_AUDIT_READ and CAP_AUDIT_CONTROL)", "error", err)
			return
		}
		w.log.Error("agent: violations monitor stopped; restarting in 30s", "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
		}
	}
}

// handle takes one interval's report: metrics for all, the summary, and
// one Event per pod container, call and action, largest counts first, at
// most MaxEvents.
func (w *violationWatch) handle(ctx context.Context, r *violation.Report) {
	w.metrics.AddLost(r.Lost)
	w.mu.Lock()
	w.total.add(r)
	w.mu.Unlock()
	vs := slices.Clone(r.Violations)
	slices.SortStableFunc(vs, func(a, b violation.Violation) int { return cmp.Compare(b.Count, a.Count) })
	written, dropped := 0, 0
	for _, v := range vs {
		w.metrics.AddViolations(v.Identity.Namespace, workloadOf(v.Identity), v.Syscall, v.Action, v.Count)
		if v.Identity.Kind != report.KindPod || v.Identity.Pod == "" {
			continue
		}
		w.remember(v)
		if written >= w.opts.MaxEvents {
			dropped++
			continue
		}
		if err := w.event(ctx, r.Start, v); err != nil {
			w.log.Warn("agent: violation Event not written", "pod", v.Identity.Namespace+"/"+v.Identity.Pod, "error", err)
			continue
		}
		written++
	}
	w.metrics.droppedEvents(dropped)
	if dropped > 0 {
		w.log.Warn("agent: violation Events over the interval's bound; counted in metrics only", "dropped", dropped, "max", w.opts.MaxEvents)
	}
	if w.handled != nil {
		w.handled()
	}
}

// workloadOf names a violation's workload for the metrics: the pod's
// owner (Deployment via ReplicaSet is the ReplicaSet: the pod template's
// hash is bounded by the rollout history), the pod when it has none, or
// the unit or container outside pods.
func workloadOf(id report.Identity) string {
	switch {
	case id.Owner != nil:
		return id.Owner.Kind + "/" + id.Owner.Name
	case id.Pod != "":
		return "Pod/" + id.Pod
	case id.Unit != "":
		return id.Unit
	case id.Container != "":
		return id.Container
	}
	return string(id.Kind)
}

// remember adds v to the node summary.
func (w *violationWatch) remember(v violation.Violation) {
	k := [5]string{v.Identity.Namespace, v.Identity.Pod, v.Identity.Container, v.Syscall, v.Action}
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.summary[k]
	if c == nil {
		if len(w.summary) >= maxSummary {
			return
		}
		c = &ViolationCount{Namespace: k[0], Pod: k[1], Container: k[2], Profile: v.Profile, Syscall: k[3], Action: k[4]}
		w.summary[k] = c
	}
	c.Count += v.Count
	c.LastSeen = maxTime(c.LastSeen, v.LastSeen)
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// summaryOf returns the summary's lines of namespace ("" = all), sorted.
func (w *violationWatch) summaryOf(namespace string) []ViolationCount {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []ViolationCount
	for _, c := range w.summary {
		if namespace == "" || c.Namespace == namespace {
			out = append(out, *c)
		}
	}
	slices.SortFunc(out, func(a, b ViolationCount) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod), cmp.Compare(a.Container, b.Container),
			cmp.Compare(a.Syscall, b.Syscall), cmp.Compare(a.Action, b.Action))
	})
	return out
}

// EventMessage is the Event text for v: "kscmp refused mkdir 12 times in
// container bb (profile localhost/…)".
func EventMessage(v violation.Violation) string {
	verb := map[string]string{violation.ActionBlock: "refused", violation.ActionKill: "killed the process for",
		violation.ActionAudit: "logged (complain mode)", violation.ActionTrap: "trapped"}[v.Action]
	if verb == "" {
		verb = "saw " + v.Action + " for"
	}
	call := cmp.Or(v.Syscall, fmt.Sprintf("system call %d (%s)", v.Number, v.ABI))
	times := "once"
	if v.Count != 1 {
		times = fmt.Sprintf("%d times", v.Count)
	}
	msg := fmt.Sprintf("kscmp %s %s %s in container %s", verb, call, times, cmp.Or(v.Identity.Container, "?"))
	if v.Profile != "" {
		msg += " (profile " + v.Profile + ")"
	}
	return msg
}

// event writes v's Event on its pod. Its name is a hash of the pod, the
// container, the call, the action and the interval: a retry of one
// interval does not write two.
func (w *violationWatch) event(ctx context.Context, interval time.Time, v violation.Violation) error {
	id := v.Identity
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d\x00%s\x00%d", id.PodUID, id.Container, v.ABI, v.Number, v.Action, interval.UnixNano())
	typ, reason := corev1.EventTypeWarning, "Seccomp"+v.Action
	if v.Action == violation.ActionAudit {
		typ = corev1.EventTypeNormal
	}
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.kscmp.%016x", id.Pod, h.Sum64()), Namespace: id.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: id.Namespace, Name: id.Pod,
			UID: types.UID(id.PodUID), FieldPath: fieldPath(id.Container)},
		Reason: reason, Message: EventMessage(v), Type: typ,
		Source:         corev1.EventSource{Component: EventComponent, Host: w.node},
		FirstTimestamp: metav1.NewTime(v.FirstSeen), LastTimestamp: metav1.NewTime(v.LastSeen),
		Count:               int32(min(v.Count, math.MaxInt32)),
		ReportingController: "kscmp.kubearmor.com/agent", ReportingInstance: w.node,
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := w.kube.CoreV1().Events(id.Namespace).Create(cctx, ev, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("event %s/%s: %w", id.Namespace, ev.Name, err)
	}
	return nil
}

func fieldPath(container string) string {
	if container == "" {
		return ""
	}
	return "spec.containers{" + container + "}"
}

// startViolations starts the violations watch when the options ask for
// it: its own pod watcher (discover's, which indexes pods by container id
// for the monitor's identities) and the monitor, until ctx is done. The
// watcher's first list is waited for in the watch's goroutine: the
// reconcilers never wait for it.
func (a *Agent) startViolations(ctx context.Context, wg *sync.WaitGroup) error {
	if a.viol == nil {
		return nil
	}
	pw, err := discover.NewPodWatcher(a.kube, a.opts.Node)
	if err != nil {
		return err
	}
	wg.Go(func() {
		if err := pw.Start(ctx, 2*time.Minute); err != nil {
			a.opts.Logger.Error("agent: violations not watched", "error", err)
			return
		}
		a.viol.run(ctx, pw)
	})
	return nil
}

// newViolationWatch makes the watch of opts, nil when it is off.
func newViolationWatch(kube kubernetes.Interface, opts Options) *violationWatch {
	if opts.Violations == nil {
		return nil
	}
	vo := *opts.Violations
	if vo.Interval <= 0 {
		vo.Interval = DefaultViolationInterval
	}
	if vo.MaxEvents <= 0 {
		vo.MaxEvents = DefaultMaxEvents
	}
	return &violationWatch{kube: kube, node: opts.Node, opts: vo, metrics: opts.Metrics, log: opts.Logger,
		summary: map[[5]string]*ViolationCount{}}
}

// ViolationSummary is the hook for the policies' status: the violations
// seen on this node since the agent started, per namespace ("" = all),
// pod, container, call and action, with the profile that decided them,
// sorted; nil when the watch is off. The status writer maps Profile to
// the policies through the reconcile's assignments.
func (a *Agent) ViolationSummary(namespace string) []ViolationCount {
	if a.viol == nil {
		return nil
	}
	return a.viol.summaryOf(namespace)
}

// MaxPolicyViolations bounds the lines ViolationsByPolicy gives a policy:
// a status is read by people and stored in etcd.
const MaxPolicyViolations = api.MaxViolations

// PolicyViolationCount is one line of a policy's violation summary on this
// node: a call and action, summed over the containers whose profile the
// policy is part of.
type PolicyViolationCount struct {
	Syscall, Action string
	Count           uint64
	LastSeen        time.Time
}

// ViolationsByPolicy attributes the node summary to policies, for the
// policies' status: a violation in a container whose profile (the pod's
// Localhost profile) is one the agent assigned counts for every policy that
// profile is made of. Per policy the MaxPolicyViolations largest counts,
// sorted by count, then call and action. Violations under a profile the
// agent did not write (runtime/default, another tool's) belong to no
// policy and are left out.
func ViolationsByPolicy(summary []ViolationCount, assigned []Assignment) map[string][]PolicyViolationCount {
	policiesOf := map[string][]string{} // "localhost/<path>" → policy keys
	for _, as := range assigned {
		policiesOf["localhost/"+as.Path] = as.Policies
	}
	sums := map[string]map[[2]string]*PolicyViolationCount{}
	for _, v := range summary {
		for _, p := range policiesOf[v.Profile] {
			if sums[p] == nil {
				sums[p] = map[[2]string]*PolicyViolationCount{}
			}
			k := [2]string{v.Syscall, v.Action}
			c := sums[p][k]
			if c == nil {
				c = &PolicyViolationCount{Syscall: v.Syscall, Action: v.Action}
				sums[p][k] = c
			}
			c.Count += v.Count
			c.LastSeen = maxTime(c.LastSeen, v.LastSeen)
		}
	}
	out := make(map[string][]PolicyViolationCount, len(sums))
	for p, m := range sums {
		var lines []PolicyViolationCount
		for _, c := range m {
			lines = append(lines, *c)
		}
		slices.SortFunc(lines, func(a, b PolicyViolationCount) int {
			return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Syscall, b.Syscall), cmp.Compare(a.Action, b.Action))
		})
		out[p] = lines[:min(len(lines), MaxPolicyViolations)]
	}
	return out
}
