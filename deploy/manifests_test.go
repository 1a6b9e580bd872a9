package deploy

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/internal/apitest"
)

// manifests returns the documents of every resource the kustomization lists,
// in its order.
func manifests(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	dir := "manifests"
	var k struct {
		Resources []string `json:"resources"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	for _, r := range k.Resources {
		out = append(out, apitest.Documents(t, filepath.Join("deploy", dir, r))...)
	}
	return out
}

// TestManifestsApply applies the manifests to a real API server, first as a
// server-side dry run (kubectl apply --dry-run=server), then for real; then
// checks that the CRD's schema refuses bad policies and takes good ones.
func TestManifestsApply(t *testing.T) {
	srv := apitest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dyn, err := dynamic.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	apply := newApplier(ctx, t, srv)
	docs := manifests(t)
	if len(docs) < 10 {
		t.Fatalf("only %d documents in the manifests", len(docs))
	}

	applyAll(t, apply, docs)

	checkAgentOwnProfile(t, docs)

	srv.CreateNamespace(t, "shop")
	gvr := schema.GroupVersionResource{Group: "security.kubearmor.com", Version: "v1", Resource: "kubearmorseccomppolicies"}
	create := func(spec string) error {
		u := &unstructured.Unstructured{}
		doc := "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: p, namespace: shop}\n" + spec
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		_, err := dyn.Resource(gvr).Namespace("shop").Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	}
	var lastErr error
	_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		lastErr = create("spec: {selector: {matchLabels: {app: web}}, seccomp: {syscalls: [read], action: Allow}}")
		return !apierrors.IsNotFound(lastErr), nil
	})
	if lastErr != nil {
		t.Fatalf("a valid policy is refused: %v", lastErr)
	}
	bad := map[string]string{
		"unknown action":    `spec: {selector: {matchLabels: {app: web}}, seccomp: {syscalls: [read], action: Permit}}`,
		"unknown arch":      `spec: {selector: {matchLabels: {app: web}}, seccomp: {arch: [sparc], syscalls: [read], action: Allow}}`,
		"empty selector":    `spec: {selector: {}, seccomp: {syscalls: [read], action: Allow}}`,
		"both forms":        `spec: {selector: {matchLabels: {app: web}}, seccomp: {syscalls: [read], action: Allow, rules: [{syscalls: [write], action: Block}]}}`,
		"empty syscalls":    `spec: {selector: {matchLabels: {app: web}}, seccomp: {syscalls: [], action: Allow}}`,
		"severity 11":       `spec: {severity: 11, selector: {matchLabels: {app: web}}, seccomp: {syscalls: [read], action: Allow}}`,
		"no seccomp":        `spec: {selector: {matchLabels: {app: web}}}`,
		"pods and host":     `spec: {selector: {matchLabels: {app: web}, systemdUnits: [nginx.service]}, seccomp: {syscalls: [read], action: Allow}}`,
		"rule without name": `spec: {selector: {matchLabels: {app: web}}, seccomp: {rules: [{action: Allow}]}}`,
		"default Kill":      `spec: {selector: {matchLabels: {app: web}}, seccomp: {syscalls: [read], action: Allow, defaultAction: Kill}}`,
		"default no allow":  `spec: {selector: {matchLabels: {app: web}}, seccomp: {rules: [{syscalls: [mkdir], action: Block}], defaultAction: Audit}}`,
		"arg index 6":       `spec: {selector: {matchLabels: {app: web}}, seccomp: {rules: [{syscalls: [clone], action: Allow, args: [{index: 6, operator: Equal, value: 0}]}]}}`,
		"arg operator":      `spec: {selector: {matchLabels: {app: web}}, seccomp: {rules: [{syscalls: [clone], action: Allow, args: [{index: 0, operator: BitsSet, value: 0}]}]}}`,
		"mask without op":   `spec: {selector: {matchLabels: {app: web}}, seccomp: {rules: [{syscalls: [clone], action: Allow, args: [{index: 0, operator: Equal, mask: 1, value: 0}]}]}}`,
		"index twice":       `spec: {selector: {matchLabels: {app: web}}, seccomp: {rules: [{syscalls: [clone], action: Allow, args: [{index: 0, operator: Equal, value: 0}, {index: 0, operator: Equal, value: 1}]}]}}`,
	}
	for name, spec := range bad {
		err := create(spec)
		if !apierrors.IsInvalid(err) {
			t.Errorf("%s: want the API server to refuse it as invalid, got %v", name, err)
		} else {
			t.Logf("%s: %v", name, strings.SplitN(err.Error(), ": ", 3)[len(strings.SplitN(err.Error(), ": ", 3))-1])
		}
	}
	for _, good := range []string{
		`spec: {severity: 3, selector: {matchLabels: {app: wordpress}}, seccomp: {arch: [x86_64, x86, x32], syscalls: [accept4, epoll_wait, pselect6, futex, madvise], action: Allow}}`,
		`spec: {selector: {systemdUnits: [nginx.service]}, seccomp: {rules: [{syscalls: [read], action: Allow}, {syscalls: [mkdir], action: Deny}]}}`,
		`spec: {selector: {matchLabels: {app: web}}, seccomp: {rules: [{syscalls: [read], action: Allow}, {syscalls: [mkdir], action: Kill}], defaultAction: Audit}}`,
		`spec: {selector: {matchLabels: {app: web}}, seccomp: {rules: [{syscalls: [clone], action: Allow, args: [{index: 0, operator: MaskedEqual, mask: CLONE_NEWUSER|CLONE_NEWNET, value: 0}]}, {syscalls: [socket], action: Allow, args: [{index: 0, operator: Equal, value: AF_INET}]}]}}`,
	} {
		if err := create(good); err != nil {
			t.Errorf("valid policy refused: %v\n%s", err, good)
		}
	}
}

// newApplier returns a function that server-side applies one object to
// srv (kubectl apply --server-side --force-conflicts), as a dry run when
// dryRun is set. It waits for the object's kind to be served, so a CRD
// applied just before is usable; the Helm chart's test applies with it too.
func newApplier(ctx context.Context, t *testing.T, srv *apitest.Server) func(u *unstructured.Unstructured, dryRun bool) error {
	t.Helper()
	dyn, err := dynamic.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	cached := memory.NewMemCacheClient(disc)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(cached)
	return func(u *unstructured.Unstructured, dryRun bool) error {
		gvk := u.GroupVersionKind()
		var m *meta.RESTMapping
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			var err error
			m, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				cached.Invalidate()
				return false, nil
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		opts := metav1.ApplyOptions{FieldManager: "kscmp-test", Force: true}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		_, err = ri.Apply(ctx, u.GetName(), u, opts)
		return err
	}
}

// applyAll applies docs in their order, each first as a server-side dry
// run: a dry run of everything needs the CRD and namespace to exist for the
// objects that use them, as with kubectl, so dry-run each, apply it, go on.
func applyAll(t *testing.T, apply func(*unstructured.Unstructured, bool) error, docs []*unstructured.Unstructured) {
	t.Helper()
	for _, u := range docs {
		if err := apply(u, true); err != nil {
			t.Fatalf("dry run of %s %s: %v", u.GetKind(), u.GetName(), err)
		}
		if err := apply(u, false); err != nil {
			t.Fatalf("apply %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

// checkAgentOwnProfile: the agent's container runs under its own profile
// (the one with bpf, for its default --attribute-exited),
// which an init container of the same image installs first with the same
// restricted security context (not privileged, read-only root file system,
// only the kubelet's seccomp directory) under RuntimeDefault; the webhook
// never mutates kscmp's own pods.
func checkAgentOwnProfile(t *testing.T, docs []*unstructured.Unstructured) {
	t.Helper()
	var ds appsv1.DaemonSet
	var whc admissionregv1.MutatingWebhookConfiguration
	for _, u := range docs {
		var into any
		switch u.GetKind() {
		case "DaemonSet":
			into = &ds
		case "MutatingWebhookConfiguration":
			into = &whc
		default:
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
			t.Fatal(err)
		}
	}
	spec := ds.Spec.Template.Spec
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 1 {
		t.Fatalf("the DaemonSet has %d containers and %d init containers, want 1 and 1", len(spec.Containers), len(spec.InitContainers))
	}
	agentC, initC := spec.Containers[0], spec.InitContainers[0]
	if sp := agentC.SecurityContext.SeccompProfile; sp == nil || sp.Type != corev1.SeccompProfileTypeLocalhost || sp.LocalhostProfile == nil || *sp.LocalhostProfile != agent.OwnBPFProfile {
		t.Errorf("the agent container's seccomp profile is %+v, want Localhost %s", sp, agent.OwnBPFProfile)
	}
	if sp := initC.SecurityContext.SeccompProfile; sp == nil || sp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("the init container's seccomp profile is %+v, want RuntimeDefault", sp)
	}
	if initC.Image != agentC.Image || !slices.Equal(initC.Args[:2], []string{"agent", "install-profile"}) {
		t.Errorf("init container: image %s args %v, want %s agent install-profile", initC.Image, initC.Args, agentC.Image)
	}
	root := func(args []string) string {
		if i := slices.Index(args, "--kubelet-root"); i >= 0 && i+1 < len(args) {
			return args[i+1]
		}
		return ""
	}
	if root(initC.Args) == "" || root(initC.Args) != root(agentC.Args) {
		t.Errorf("kubelet roots: init %q, agent %q", root(initC.Args), root(agentC.Args))
	}
	for _, c := range []corev1.Container{initC, agentC} {
		sc := c.SecurityContext
		if sc.Privileged == nil || *sc.Privileged || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: security context %+v is not the restricted one", c.Name, sc)
		}
		if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != "seccomp" || c.VolumeMounts[0].MountPath != root(agentC.Args)+"/seccomp" {
			t.Errorf("%s: mounts %+v, want only the kubelet's seccomp directory", c.Name, c.VolumeMounts)
		}
	}
	if len(spec.Volumes) != 1 || spec.Volumes[0].HostPath == nil || spec.Volumes[0].HostPath.Path != root(agentC.Args)+"/seccomp" {
		t.Errorf("volumes %+v, want only the kubelet's seccomp directory", spec.Volumes)
	}

	if len(whc.Webhooks) != 1 || whc.Webhooks[0].NamespaceSelector == nil {
		t.Fatalf("webhook configuration %+v", whc)
	}
	sel, err := metav1.LabelSelectorAsSelector(whc.Webhooks[0].NamespaceSelector)
	if err != nil {
		t.Fatal(err)
	}
	enforce := "kscmp.kubearmor.com/enforce"
	if sel.Matches(labels.Set{enforce: "true", corev1.LabelMetadataName: ds.Namespace}) {
		t.Errorf("the webhook would mutate pods in %s when it is labelled %s=true", ds.Namespace, enforce)
	}
	if !sel.Matches(labels.Set{enforce: "true", corev1.LabelMetadataName: "shop"}) {
		t.Error("the webhook would not mutate pods of an opted-in namespace")
	}
}

// TestManifestsWebhookSecret: the webhook's --tls-secret is the one Secret
// its Role lets it get (by name) and create, in its own namespace, and no
// ClusterRole of kscmp grants any Secret.
func TestManifestsWebhookSecret(t *testing.T) {
	var dep appsv1.Deployment
	var roles []rbacv1.Role
	for _, u := range manifests(t) {
		switch u.GetKind() {
		case "Deployment":
			if u.GetName() != "kscmp-webhook" {
				continue
			}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &dep); err != nil {
				t.Fatal(err)
			}
		case "Role":
			var r rbacv1.Role
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
				t.Fatal(err)
			}
			roles = append(roles, r)
		case "ClusterRole":
			var r rbacv1.ClusterRole
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
				t.Fatal(err)
			}
			for _, rule := range r.Rules {
				if slices.Contains(rule.Resources, "secrets") || slices.Contains(rule.Resources, "*") {
					t.Errorf("ClusterRole %s grants %v on %v", r.Name, rule.Verbs, rule.Resources)
				}
			}
		}
	}
	args := dep.Spec.Template.Spec.Containers[0].Args
	i := slices.Index(args, "--tls-secret")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("the webhook's args %v name no --tls-secret", args)
	}
	ns, name, _ := strings.Cut(args[i+1], "/")
	if ns != dep.Namespace {
		t.Errorf("--tls-secret %s is outside the webhook's namespace %s", args[i+1], dep.Namespace)
	}
	var get, create bool
	for _, r := range roles {
		if r.Namespace != ns || r.Name != dep.Spec.Template.Spec.ServiceAccountName {
			continue
		}
		for _, rule := range r.Rules {
			if !slices.Contains(rule.Resources, "secrets") {
				continue
			}
			switch {
			case slices.Equal(rule.Verbs, []string{"get"}) && slices.Equal(rule.ResourceNames, []string{name}):
				get = true
			case slices.Equal(rule.Verbs, []string{"create"}):
				create = true
			default:
				t.Errorf("Role %s/%s: rule %+v grants more than get %s and create", r.Namespace, r.Name, rule, name)
			}
		}
	}
	if !get || !create {
		t.Errorf("Role %s/%s: get %s: %v, create: %v; want both", ns, dep.Spec.Template.Spec.ServiceAccountName, name, get, create)
	}
}

// TestManifestsRecorderAlone: deploy/manifests/recorder, usable alone,
// creates the same namespace as deploy/manifests (its namespace.yaml is a
// copy: a kustomization cannot load files above its directory), and
// deploy/manifests includes its RBAC.
func TestManifestsRecorderAlone(t *testing.T) {
	top, err := os.ReadFile("manifests/namespace.yaml")
	if err != nil {
		t.Fatal(err)
	}
	own, err := os.ReadFile("manifests/recorder/namespace.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(top, own) {
		t.Errorf("manifests/recorder/namespace.yaml differs from manifests/namespace.yaml")
	}
	var n int
	for _, u := range manifests(t) {
		if strings.Contains(u.GetName(), "kscmp-recorder") || strings.Contains(u.GetName(), "kscmp-discover") {
			n++
		}
	}
	if n != 7 {
		t.Errorf("deploy/manifests has %d recorder objects, want 7 (recorder/rbac.yaml)", n)
	}
}
