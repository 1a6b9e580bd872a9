package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"

	"github.com/kubearmor/kscmp/api"
)

// AggregatorFieldManager is the server-side apply field manager of the
// policies' status.
const AggregatorFieldManager = "kscmp-aggregator"

// LeaseName is the Lease the aggregators elect their leader with.
const LeaseName = "kscmp-aggregator"

// AggregatorOptions configures an Aggregator.
type AggregatorOptions struct {
	Namespace string        // of the Lease; "default" if empty
	Identity  string        // this candidate's name, stable across restarts (a restarted leader takes its Lease back at once); the host name and a random suffix if empty
	Interval  time.Duration // a policy's status is written at most once per Interval; 1 s if 0
	// ViolationInterval: a policy's status whose only change is grown
	// violation counts is written at most once per ViolationInterval
	// (DefaultViolationInterval if 0).
	ViolationInterval time.Duration
	// Hold: the status of a new generation (or a new policy) whose
	// rollout is in progress is first written Hold after the aggregator
	// saw it, unless the rollout finished or failed before (then that is
	// written at once). A change the nodes take in within Hold is then
	// one status version (installed), not two, and no status version
	// reaches every agent's watch while the new spec itself is still
	// being delivered to them. DefaultHold if 0.
	Hold   time.Duration
	Logger *slog.Logger
}

// DefaultHold is AggregatorOptions.Hold when not set.
const DefaultHold = 5 * time.Second

// Aggregator summarises the agents' per-node statuses into each policy's
// status: counts and at most api.MaxFailures failing nodes, written with
// server-side apply, at most once per policy per Interval and only when it
// differs. Its Events are per policy, not per node. Several may run: one
// leads (a Lease), the others wait.
type Aggregator struct {
	kube     kubernetes.Interface
	dyn      dynamic.Interface
	policies *PolicyCache
	opts     AggregatorOptions

	mu       sync.Mutex
	byNode   map[string][]api.NodePolicy          // node → its entries, as last seen
	byPolicy map[string]map[string]api.NodePolicy // policy key → node → entry
	dirty    map[string]bool                      // policy keys whose status may be stale
	had      map[string]int                       // policy key → nodes it was on, for the Deleted Event
	written  map[string]time.Time                 // policy key → its last status write
	seen     map[string]seenGeneration            // policy key → its newest generation, and since when
	recorder record.EventRecorder
}

// NewAggregator makes an aggregator over the policies of cache (started by
// the caller); Run starts it.
func NewAggregator(kube kubernetes.Interface, dyn dynamic.Interface, policies *PolicyCache, opts AggregatorOptions) *Aggregator {
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.Identity == "" {
		h, _ := os.Hostname()
		opts.Identity = h + "-" + rand.String(5)
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Hold <= 0 {
		opts.Hold = DefaultHold
	}
	if opts.ViolationInterval <= 0 {
		opts.ViolationInterval = DefaultViolationInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Aggregator{kube: kube, dyn: dyn, policies: policies, opts: opts}
}

// Run takes part in the election until ctx is done, aggregating while it
// leads.
func (g *Aggregator) Run(ctx context.Context) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: g.opts.Namespace, Name: LeaseName},
		Client:     g.kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: g.opts.Identity},
	}
	for ctx.Err() == nil {
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
			ReleaseOnCancel: true, Name: LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					g.opts.Logger.Info("aggregator: leading", "identity", g.opts.Identity)
					if err := g.lead(ctx); err != nil {
						g.opts.Logger.Error("aggregator", "error", err)
					}
				},
				OnStoppedLeading: func() {},
			},
		})
	}
}

// lead watches the node statuses and writes the policies' status until
// ctx is done (leadership lost or the process ends).
func (g *Aggregator) lead(ctx context.Context) error {
	g.mu.Lock()
	g.byNode, g.byPolicy, g.dirty, g.had = map[string][]api.NodePolicy{}, map[string]map[string]api.NodePolicy{}, map[string]bool{}, map[string]int{}
	g.written, g.seen = map[string]time.Time{}, map[string]seenGeneration{}
	g.mu.Unlock()
	b := record.NewBroadcaster()
	defer b.Shutdown()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: g.kube.CoreV1().Events("")})
	g.recorder = b.NewRecorder(runtime.NewScheme(), corev1.EventSource{Component: "kscmp-aggregator"})

	f := dynamicinformer.NewDynamicSharedInformerFactory(g.dyn, 0)
	nodes := f.ForResource(NodeStatusResource).Informer()
	if err := nodes.SetTransform(TrimObject); err != nil {
		return err
	}
	nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { g.nodeChanged(obj, false) },
		UpdateFunc: func(_, obj any) { g.nodeChanged(obj, false) },
		DeleteFunc: func(obj any) { g.nodeChanged(obj, true) },
	})
	mark := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if u, ok := obj.(*unstructured.Unstructured); ok {
			k := u.GetNamespace() + "/" + u.GetName()
			g.mu.Lock()
			g.dirty[k] = true
			if s := g.seen[k]; s.generation != u.GetGeneration() || s.uid != u.GetUID() {
				g.seen[k] = seenGeneration{u.GetUID(), u.GetGeneration(), time.Now()}
			}
			g.mu.Unlock()
		}
	}
	reg, err := g.policies.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: mark, DeleteFunc: mark, UpdateFunc: func(_, obj any) { mark(obj) }})
	if err != nil {
		return err
	}
	defer g.policies.informer.RemoveEventHandler(reg)
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), nodes.HasSynced, g.policies.informer.HasSynced, reg.HasSynced) {
		return fmt.Errorf("aggregator: caches not synced: %w", context.Cause(ctx))
	}
	t := time.NewTicker(g.opts.Interval)
	defer t.Stop()
	for {
		g.flush(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// nodeChanged folds one node's status object into the index and marks the
// policies whose entry on that node changed.
func (g *Aggregator) nodeChanged(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj, deleted = d.Obj, true
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	var ns api.KubeArmorSeccompNodeStatus
	if !deleted {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ns); err != nil {
			g.opts.Logger.Warn("aggregator: node status not read", "node", u.GetName(), "error", err)
			return
		}
	}
	node := u.GetName()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, e := range g.byNode[node] {
		delete(g.byPolicy[e.Policy], node)
		g.dirty[e.Policy] = true
	}
	g.byNode[node] = ns.Policies
	for _, e := range ns.Policies {
		if g.byPolicy[e.Policy] == nil {
			g.byPolicy[e.Policy] = map[string]api.NodePolicy{}
		}
		g.byPolicy[e.Policy][node] = e
		g.dirty[e.Policy] = true
		// Remembered here, not at the next status write: a policy deleted
		// within one Interval of its install still gets its Deleted Event.
		g.had[e.Policy] = max(g.had[e.Policy], len(g.byPolicy[e.Policy]))
	}
	if len(ns.Policies) == 0 {
		delete(g.byNode, node)
	}
}

// flush writes the status of every policy marked since the last flush.
// One that fails stays marked.
func (g *Aggregator) flush(ctx context.Context) {
	g.mu.Lock()
	keys := slices.Sorted(maps.Keys(g.dirty))
	clear(g.dirty)
	g.mu.Unlock()
	for _, k := range keys {
		if err := g.write(ctx, k); err != nil {
			if ctx.Err() != nil {
				return
			}
			if !errors.Is(err, errDeferred) {
				g.opts.Logger.Error("aggregator: policy status", "policy", k, "error", err)
			}
			g.mu.Lock()
			g.dirty[k] = true
			g.mu.Unlock()
		}
	}
}
