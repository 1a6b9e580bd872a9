package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unique"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/kubearmor/kscmp/api"
)

// PolicyCache holds the policies of all namespaces from one informer (list
// once, then watch) and hands out the valid pod policies of a namespace.
// The agent and the webhook share it.
type PolicyCache struct {
	factory  dynamicinformer.DynamicSharedInformerFactory
	informer cache.SharedIndexInformer
	log      *slog.Logger

	changes atomic.Uint64 // informer events so far: a version of the whole cache

	mu      sync.Mutex        // guards invalid and parsed
	invalid map[string]string // policy key → why it is refused
	parsed  map[string]parsed // policy key → its last conversion
}

// parsed is one policy converted and validated at one generation (the
// resourceVersion when the server sets no generation): conversion and
// validation run once per change of the spec, not once per reconcile, nor
// again when only the status changed.
type parsed struct {
	version string
	policy  *api.KubeArmorSeccompPolicy // nil when refused
}

// NewPolicyCache makes a cache; Start fills it.
func NewPolicyCache(dyn dynamic.Interface, log *slog.Logger) *PolicyCache {
	if log == nil {
		log = slog.Default()
	}
	f := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	inf := f.ForResource(PolicyResource).Informer()
	c := &PolicyCache{factory: f, informer: inf, log: log,
		invalid: map[string]string{}, parsed: map[string]parsed{}}
	// Set before the informer starts, which is the only time it can be.
	_ = inf.SetTransform(c.transform)
	bump := func(any) { c.changes.Add(1) }
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: bump,
		DeleteFunc: func(obj any) { c.forget(obj); bump(obj) },
		UpdateFunc: c.updated})
	return c
}

// updated counts an update as a change unless the policy's parse stays
// valid (same generation and UID): a status write (the aggregator's, ten
// thousand of them after a start with 10,000 policies) leaves Policies as
// it was, and the webhook's index of the namespace with it.
func (c *PolicyCache) updated(old, obj any) {
	o, ok1 := old.(*unstructured.Unstructured)
	u, ok2 := obj.(*unstructured.Unstructured)
	if ok1 && ok2 && u.GetGeneration() != 0 && parseVersion(o) == parseVersion(u) {
		return
	}
	c.changes.Add(1)
}

// transform trims a policy, parses it, and keeps only the parsed spec: the
// informer's copy loses its spec (every syscall name as an interface value
// in a map), which with 10,000 policies is most of the agent's memory.
// Only objects with a generation are stripped: their parse is found again
// by generation whatever else changes (status, labels).
func (c *PolicyCache) transform(obj any) (any, error) {
	obj, _ = TrimObject(obj)
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || u.GetGeneration() == 0 {
		return obj, nil
	}
	c.parse(u)
	delete(u.Object, "spec")
	return u, nil
}

// forget drops a deleted policy's parse, unless one made again under its
// name (another UID) replaced it already.
func (c *PolicyCache) forget(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	key := u.GetNamespace() + "/" + u.GetName()
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.parsed[key]; ok && p.version == parseVersion(u) {
		delete(c.parsed, key)
		delete(c.invalid, key)
	}
}

// parseVersion is what a parse is valid for: the generation of this UID,
// else the resourceVersion.
func parseVersion(u *unstructured.Unstructured) string {
	_, v := identity(u)
	return v
}

// identity is a policy's key (namespace/name) and parseVersion, read from
// its metadata map at once: Policies needs both for every policy of a
// namespace on each reconcile, and there the accessors' repeated lookups
// and a Sprintf were most of the agent's time with 1,000 policies.
func identity(u *unstructured.Unstructured) (key, version string) {
	md, _ := u.Object["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	name, _ := md["name"].(string)
	key = ns + "/" + name
	if g, _ := md["generation"].(int64); g != 0 {
		uid, _ := md["uid"].(string)
		return key, "gen:" + strconv.FormatInt(g, 10) + ":" + uid
	}
	rv, _ := md["resourceVersion"].(string)
	return key, "rv:" + rv
}

// Changes counts the policy events the cache has seen that can change what
// Policies returns (not status-only updates): when it is the same as
// before, so are the policies, and whatever was computed from them (the
// webhook's merge.Set per namespace) is still good. The count is raised
// after the store changed.
func (c *PolicyCache) Changes() uint64 { return c.changes.Load() }

// Start runs the informer until ctx is done and waits for its first list.
func (c *PolicyCache) Start(ctx context.Context) bool {
	c.factory.Start(ctx.Done())
	return cache.WaitForCacheSync(ctx.Done(), c.informer.HasSynced)
}

// Policies converts and validates the namespace's policies (all namespaces
// for ""); invalid ones and host policies are left out. The API server's
// schema refuses most invalid policies; what it cannot check, such as
// syscall names, is checked here.
func (c *PolicyCache) Policies(namespace string) []*api.KubeArmorSeccompPolicy {
	var out []*api.KubeArmorSeccompPolicy
	for _, u := range c.Objects(namespace) {
		if p := c.parse(u); p != nil && !p.Spec.Selector.Host() { // host policies are for hosts, not pods
			out = append(out, p)
		}
	}
	return out
}

// parse converts and validates a policy, once per generation.
func (c *PolicyCache) parse(u *unstructured.Unstructured) *api.KubeArmorSeccompPolicy {
	key, version := identity(u)
	c.mu.Lock()
	prev, ok := c.parsed[key]
	c.mu.Unlock()
	if ok && prev.version == version {
		return prev.policy
	}
	p := &api.KubeArmorSeccompPolicy{}
	if key == OwnNamespace+"/"+OwnName || key == OwnNamespace+"/"+OwnBPFName {
		// Its profile would be OwnProfile (or OwnBPFProfile), the
		// file the agent itself runs under, which comes from the policy
		// built into kscmp.
		c.refuse(key, "the name of the agent's own policy, which is built into kscmp and installed by the agent's init container: its profile would overwrite "+ProfilePath(OwnNamespace, strings.TrimPrefix(key, OwnNamespace+"/"))+"; rename the policy")
		p = nil
	} else if err := fromUnstructured(u, p); err != nil {
		c.refuse(key, err.Error())
		p = nil
	} else if errs := api.Validate(p); len(errs) > 0 {
		c.refuse(key, errs.Error())
		p = nil
	}
	if p != nil {
		compact(p)
	}
	c.mu.Lock()
	c.parsed[key] = parsed{version: version, policy: p}
	if p != nil {
		delete(c.invalid, key)
	}
	c.mu.Unlock()
	return p
}

// Objects returns the namespace's policy objects as the API server has them
// (all namespaces for ""), without their spec (transform): metadata and
// status. Policies gives the parsed specs.
func (c *PolicyCache) Objects(namespace string) []*unstructured.Unstructured {
	var objs []any
	if namespace == "" {
		objs = c.informer.GetStore().List()
	} else {
		objs, _ = c.informer.GetIndexer().ByIndex(cache.NamespaceIndex, namespace)
	}
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		if u, ok := o.(*unstructured.Unstructured); ok {
			out = append(out, u)
		}
	}
	return out
}

// Refused returns the policies Policies left out as invalid, with why.
func (c *PolicyCache) Refused() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.invalid))
	for k, v := range c.invalid {
		out[k] = v
	}
	return out
}

func (c *PolicyCache) refuse(key, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.invalid[key] != why {
		c.invalid[key] = why
		c.log.Warn("policy refused", "policy", key, "reason", why)
	}
}

// compact makes a parsed policy's system call names the one copy of each
// name the process holds (unique.Make), in lists of their exact length: a
// cache of 10,000 policies of ~50 calls kept half a million strings of its
// own and the slack of each list's last growth, a third of the webhook's
// heap (BENCHMARKS.md, make bench-webhook). It drops the status, which
// nothing reads from the parse (the aggregator reads the informer's copy).
func compact(p *api.KubeArmorSeccompPolicy) {
	p.Status = api.PolicyStatus{}
	p.ManagedFields = nil
	intern := func(names []string) []string {
		if names == nil {
			return nil
		}
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = unique.Make(n).Value()
		}
		return out
	}
	s := &p.Spec.Seccomp
	s.Syscalls = intern(s.Syscalls)
	for i := range s.Rules {
		s.Rules[i].Syscalls = intern(s.Rules[i].Syscalls)
	}
}

// fromUnstructured converts a policy as the API server sent it through its
// JSON form, so that the types' own UnmarshalJSON decide: an argument
// value is stored as an integer or a string (api.ArgValue), which
// runtime.DefaultUnstructuredConverter cannot put into a string type
// ("cannot convert int64 to api.ArgValue": every policy with a numeric
// condition was refused). Once per policy generation.
func fromUnstructured(u *unstructured.Unstructured, p *api.KubeArmorSeccompPolicy) error {
	data, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	return json.Unmarshal(data, p)
}
