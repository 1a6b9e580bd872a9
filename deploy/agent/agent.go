package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/merge"
)

// PolicyResource is the policies' API resource.
var PolicyResource = schema.GroupVersionResource{Group: api.Group, Version: api.Version, Resource: api.Plural}

// Options configures an Agent.
type Options struct {
	Node       string     // this node's name: only its pods are watched
	SeccompDir string     // <kubelet-root>/seccomp
	Family     api.Family // the node's family; amd64 if empty
	Runtime    merge.Runtime
	Workers    int // reconcilers; 2 if 0
	// RestartWorkloads rolls the Deployment, StatefulSet or DaemonSet of a
	// pod on this node that runs with a profile the policies no longer give.
	RestartWorkloads bool
	// Aggregate runs the aggregator (Aggregator) in this process too,
	// leader-elected through a Lease in LeaseNamespace ("default" if
	// empty): for a lone agent without the webhook Deployment, which
	// otherwise runs it.
	Aggregate      bool
	LeaseNamespace string
	// Violations, when set, watches what seccomp refuses or logs in this
	// node's pods: Events on the pods, metrics, ViolationSummary.
	Violations *ViolationOptions
	// Metrics, when set, records reconciles and violations.
	Metrics *Metrics
	// StatusDelay: the node's status object is written this long after
	// the first change that needs it, with every change made meanwhile
	// (DefaultStatusDelay if 0). Profiles are never delayed; the status
	// is, so that its writes do not compete with delivering a policy
	// change to the other nodes.
	StatusDelay time.Duration
	Logger      *slog.Logger
}

// Agent keeps the node's profiles equal to the merge of the current
// policies: informers on the policies of all namespaces and on the pods of
// this node (a field selector on spec.nodeName: one list, then a watch),
// a rate-limited work queue of namespaces, and a level-triggered reconcile
// per namespace.
type Agent struct {
	kube     kubernetes.Interface
	opts     Options
	pods     cache.SharedIndexInformer
	policies *PolicyCache
	factory  informers.SharedInformerFactory
	queue    workqueue.TypedRateLimitingInterface[string]
	memo     Memo
	rep      *reporter       // used by the status worker alone
	viol     *violationWatch // nil when violations are not watched
	stopRep  func()
	dyn      dynamic.Interface

	// Status goes through its own queue, so that API round trips for the
	// node's status never delay a profile on disk.
	statusQ workqueue.TypedRateLimitingInterface[string]

	// Opted-in namespaces (EnforceLabel=true), for pods that run without
	// their profile.
	nsFactory        informers.SharedInformerFactory
	optedIn          cache.SharedIndexInformer
	umu              sync.Mutex                // guards the two maps below
	unprotectedSeen  map[types.UID]bool        // pods already reported
	unprotectedCount map[string]int            // namespace → pods without their profile
	smu              sync.Mutex                // guards pending
	pending          map[string]statusSnapshot // namespace ("" = all) → latest state to report
}

type statusSnapshot struct {
	gens     map[string]int64 // installed policy key → the generation merged
	assigned []Assignment
	err      error
}

// mergedGenerations is the generation of each policy the assignments are
// made of, as merged (from the policies given to the merge): the node's
// status needs these few, and reading them from the parsed policies, not
// from every policy object of the namespace, keeps a reconcile's status
// work from growing with the number of policies.
func mergedGenerations(policies []*api.KubeArmorSeccompPolicy, assigned []Assignment) map[string]int64 {
	type ref struct{ namespace, name string }
	want := map[ref]string{}
	for k := range installedPolicies(assigned) {
		ns, name, _ := strings.Cut(k, "/")
		want[ref{ns, name}] = k
	}
	gens := make(map[string]int64, len(want))
	for _, p := range policies {
		if len(gens) == len(want) {
			break
		}
		if k, ok := want[ref{p.Namespace, p.Name}]; ok {
			gens[k] = p.Generation
		}
	}
	return gens
}

// flushKey is the status queue's item that retries a failed status write;
// violationsKey hands the status worker the violation summary of the
// interval that just ended.
const (
	flushKey      = "\x00flush"
	violationsKey = "\x00violations"
)

// DefaultStatusDelay is Options.StatusDelay when not set.
const DefaultStatusDelay = time.Second

// New makes an agent; Run starts it.
func New(kube kubernetes.Interface, dyn dynamic.Interface, opts Options) (*Agent, error) {
	if opts.Node == "" || opts.SeccompDir == "" {
		return nil, errors.New("agent: node and seccomp directory are required")
	}
	if opts.Family == "" {
		opts.Family = api.FamilyAMD64
	}
	if opts.Runtime == "" {
		opts.Runtime = merge.RuntimeRunc
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.StatusDelay <= 0 {
		opts.StatusDelay = DefaultStatusDelay
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &Agent{kube: kube, dyn: dyn, opts: opts, policies: NewPolicyCache(dyn, opts.Logger)}
	a.rep, a.stopRep = newReporter(kube, dyn, opts.Node)
	a.viol = newViolationWatch(kube, opts)
	a.statusQ = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "kscmp-agent-status"})
	if a.viol != nil {
		// Once per violation interval: the policies' violation counts in
		// the node status change at most that often.
		a.viol.handled = func() { a.statusQ.Add(violationsKey) }
	}
	a.pending = map[string]statusSnapshot{}
	a.factory = informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", opts.Node).String()
	}))
	a.pods = a.factory.Core().V1().Pods().Informer()
	a.unprotectedSeen, a.unprotectedCount = map[types.UID]bool{}, map[string]int{}
	a.nsFactory = informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = EnforceLabel + "=true"
	}))
	a.optedIn = a.nsFactory.Core().V1().Namespaces().Informer()
	if err := a.optedIn.SetTransform(func(obj any) (any, error) {
		if ns, ok := obj.(*corev1.Namespace); ok {
			ns.ManagedFields, ns.Annotations = nil, nil
		}
		return obj, nil
	}); err != nil {
		return nil, err
	}
	if err := a.pods.SetTransform(TrimPod); err != nil {
		return nil, err
	}
	a.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "kscmp-agent"})
	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if m, err := metaNamespace(obj); err == nil {
			a.queue.Add(m)
		}
	}
	handler := cache.ResourceEventHandlerFuncs{AddFunc: enqueue, DeleteFunc: enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) }}
	// A namespace that opts in is checked for pods without their profile.
	if _, err := a.optedIn.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok {
			a.queue.Add(ns.Name)
		}
	}}); err != nil {
		return nil, err
	}
	if _, err := a.pods.AddEventHandler(handler); err != nil {
		return nil, err
	}
	// A policy whose generation did not change (its status, labels) needs
	// no reconcile: the aggregator's status writes reach every agent's
	// watch and must cost nothing there.
	policyHandler := handler
	policyHandler.UpdateFunc = func(old, obj any) {
		if o, ok := old.(*unstructured.Unstructured); ok {
			if n, ok := obj.(*unstructured.Unstructured); ok && o.GetGeneration() == n.GetGeneration() && n.GetGeneration() != 0 {
				return
			}
		}
		enqueue(obj)
	}
	if _, err := a.policies.informer.AddEventHandler(policyHandler); err != nil {
		return nil, err
	}
	return a, nil
}

func metaNamespace(obj any) (string, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return o.Namespace, nil
	case *unstructured.Unstructured:
		return o.GetNamespace(), nil
	}
	return "", fmt.Errorf("unexpected object %T", obj)
}

// Run starts the informers, reconciles every namespace once (the restart
// reload: the directory is made equal to what the current state needs,
// removing what no policy produces and no pod uses), then reconciles what
// changes until ctx is done. ctx is handed down to every API call the
// workers make (restarts, status writes), so they end with it.
func (a *Agent) Run(ctx context.Context) error {
	defer a.queue.ShutDown()
	defer a.statusQ.ShutDown()
	defer a.stopRep()
	if err := os.MkdirAll(filepath.Join(a.opts.SeccompDir, ProfileDir), 0o755); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.factory.Start(ctx.Done())
	a.policies.factory.Start(ctx.Done())
	// Not waited for: without the permission to list namespaces the agent
	// still installs profiles, it only cannot tell opted-in namespaces.
	a.nsFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), a.pods.HasSynced, a.policies.informer.HasSynced) {
		return fmt.Errorf("agent: caches not synced: %w", context.Cause(ctx))
	}
	if err := a.reconcileAll(); err != nil {
		a.opts.Logger.Error("agent: initial reconcile", "error", err)
	}
	var wg sync.WaitGroup
	if err := a.startViolations(ctx, &wg); err != nil {
		a.opts.Logger.Error("agent: violations not watched", "error", err)
	}
	for range a.opts.Workers {
		wg.Go(func() { a.runWorker(ctx) })
	}
	// One status worker: the reporter's memory of what it wrote is not
	// shared, and status writes are ordered per node.
	wg.Go(func() { a.runStatusWorker(ctx) })
	if a.opts.Aggregate {
		ao := AggregatorOptions{Namespace: a.opts.LeaseNamespace, Identity: a.opts.Node, Logger: a.opts.Logger}
		if a.viol != nil {
			ao.ViolationInterval = a.viol.opts.Interval
		}
		agg := NewAggregator(a.kube, a.dyn, a.policies, ao)
		wg.Go(func() { agg.Run(ctx) })
	}
	<-ctx.Done()
	a.queue.ShutDown()
	a.statusQ.ShutDown()
	wg.Wait()
	return nil
}

// runWorker reconciles namespaces from the queue until it shuts down. The
// queue hands a namespace to one worker at a time, so two workers never
// write one namespace's directory together.
func (a *Agent) runWorker(ctx context.Context) {
	for a.processNextNamespace(ctx) {
	}
}

// processNextNamespace reconciles one namespace from the queue; a failure
// puts it back with a growing delay, a success resets its delay. It returns
// false when the queue is shut down.
func (a *Agent) processNextNamespace(ctx context.Context) bool {
	ns, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(ns)
	start := time.Now()
	err := a.reconcile(ctx, ns)
	a.opts.Metrics.ObserveReconcile(time.Since(start), err)
	if err != nil {
		a.opts.Logger.Error("agent: reconcile", "namespace", ns, "error", err)
		a.queue.AddRateLimited(ns)
		return true
	}
	a.queue.Forget(ns)
	return true
}

// reconcileAll makes the whole directory right: every namespace that has
// pods here, and removal of every namespace's leftovers.
func (a *Agent) reconcileAll() error {
	pods := a.nodePods("")
	policies := a.policies.Policies("")
	files, assigned, err := Desired(merge.NewSet(policies), pods, a.opts.Family, a.opts.Runtime, &a.memo)
	if err != nil {
		return err
	}
	a.memo.forget(ProfileDir+"/", files)
	res, err := Sync(a.opts.SeccompDir, files, InUse(pods))
	a.queueStatus("", statusSnapshot{mergedGenerations(policies, assigned), assigned, err})
	a.opts.Logger.Info("agent: reconciled all", "profiles", len(files), "written", res.Written, "removed", res.Removed, "kept_in_use", res.KeptInUse)
	return err
}

// reconcile makes kubearmor/<namespace>/ hold the profiles the namespace's
// pods on this node need, from the current policies, and queues the
// policies' status: level-triggered, idempotent. ctx bounds the workload
// restarts it makes.
func (a *Agent) reconcile(ctx context.Context, namespace string) error {
	pods := a.nodePods(namespace)
	a.opts.Logger.Debug("agent: reconcile", "namespace", namespace, "pods", len(pods))
	policies := a.policies.Policies(namespace)
	files, assigned, err := Desired(merge.NewSet(policies), pods, a.opts.Family, a.opts.Runtime, &a.memo)
	if err != nil {
		return err
	}
	a.memo.forget(ProfileDir+"/"+namespace+"/", files)
	res, err := SyncNamespace(a.opts.SeccompDir, namespace, files, InUse(pods))
	a.queueStatus(namespace, statusSnapshot{mergedGenerations(policies, assigned), assigned, err})
	if err != nil {
		return err
	}
	optedIn := a.isOptedIn(namespace)
	if optedIn {
		a.reportUnprotected(namespace, pods, assigned)
	} else {
		a.umu.Lock()
		delete(a.unprotectedCount, namespace) // opted out: not the webhook's to bind
		a.umu.Unlock()
	}
	if a.opts.RestartWorkloads {
		for target, digest := range restartTargets(pods, assigned, files, res.Changed, optedIn) {
			rolled, err := restart(ctx, a.kube, target, digest)
			if err != nil {
				return fmt.Errorf("restart %s: %w", target, err)
			}
			if rolled {
				a.opts.Logger.Info("agent: workload rolled for its new profiles", "workload", target, "profiles", digest)
			}
		}
	}
	if res.Written+res.Removed > 0 {
		a.opts.Logger.Info("agent: reconciled", "namespace", namespace, "written", res.Written, "removed", res.Removed, "kept_in_use", res.KeptInUse)
	}
	return nil
}

// isOptedIn: the namespace carries EnforceLabel=true (as far as the
// namespace informer knows).
func (a *Agent) isOptedIn(namespace string) bool {
	obj, ok, err := a.optedIn.GetStore().GetByKey(namespace)
	ns, _ := obj.(*corev1.Namespace)
	return err == nil && ok && ns != nil && ns.Labels[EnforceLabel] == "true"
}

// queueStatus hands a namespace's state to the status worker. Only the
// latest state of a namespace is kept: a status write that fell behind
// writes what is true now, not every step in between.
func (a *Agent) queueStatus(namespace string, s statusSnapshot) {
	a.smu.Lock()
	a.pending[namespace] = s
	a.smu.Unlock()
	a.statusQ.Add(namespace)
}

// runStatusWorker writes the policies' status from the status queue until
// it shuts down; ctx bounds each write.
func (a *Agent) runStatusWorker(ctx context.Context) {
	for a.processNextStatus(ctx) {
	}
}

// processNextStatus folds the latest state queued for one namespace into
// the node's status, and writes it StatusDelay after the first change,
// once the queue is empty: a burst of reconciles (a start, a policy
// selecting many namespaces, a policy changed twice) is one write. A
// failed write is retried with a growing delay. It returns false when the
// queue is shut down.
func (a *Agent) processNextStatus(ctx context.Context) bool {
	ns, quit := a.statusQ.Get()
	if quit {
		return false
	}
	defer a.statusQ.Done(ns)
	a.smu.Lock()
	s, ok := a.pending[ns]
	delete(a.pending, ns)
	a.smu.Unlock()
	if ok {
		a.rep.update(ns, s.gens, s.assigned, s.err)
	}
	if ns == violationsKey {
		a.rep.setViolations(a.viol.summaryOf(""))
	}
	switch {
	case ns == flushKey && a.statusQ.Len() > 0:
		a.statusQ.Add(flushKey) // due: written after what is queued
		return true
	case a.statusQ.Len() > 0:
		return true
	case ns != flushKey:
		// A flush already waiting keeps its earlier time: changes that
		// keep coming are still written every StatusDelay.
		a.statusQ.AddAfter(flushKey, a.opts.StatusDelay)
		return true
	}
	if err := a.rep.flush(ctx); err != nil {
		if ctx.Err() == nil {
			a.opts.Logger.Error("agent: node status", "error", err)
			a.statusQ.AddRateLimited(flushKey)
		}
		return true
	}
	a.statusQ.Forget(flushKey)
	return true
}

// installedPolicies are the policies some container's profile is made of.
func installedPolicies(assigned []Assignment) map[string]bool {
	out := map[string]bool{}
	for _, as := range assigned {
		for _, k := range as.Policies {
			out[k] = true
		}
	}
	return out
}

func (a *Agent) nodePods(namespace string) []*corev1.Pod {
	var objs []any
	if namespace == "" {
		objs = a.pods.GetStore().List()
	} else {
		objs, _ = a.pods.GetIndexer().ByIndex(cache.NamespaceIndex, namespace)
	}
	out := make([]*corev1.Pod, 0, len(objs))
	for _, obj := range objs {
		if p, ok := obj.(*corev1.Pod); ok {
			out = append(out, p)
		}
	}
	return out
}
