package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/internal/apitest"
)

// chartDir is the Helm chart users install with (helm install kscmp
// deploy/helm/kscmp); it renders the objects of deploy/manifests.
const chartDir = "helm/kscmp"

// renderChart renders the chart as `helm install NAME chartDir -n ns
// --set …` would (the Helm Go SDK: loader, values, engine, install order)
// and returns its objects, the CRDs of crds/ first, then the templates in
// Helm's install order.
func renderChart(t *testing.T, ns string, vals map[string]any) []*unstructured.Unstructured {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load %s: %v", chartDir, err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "kscmp", Namespace: ns, IsInstall: true}, nil)
	if err != nil {
		t.Fatalf("%s: values %v: %v", chartDir, vals, err)
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		t.Fatalf("render %s with %v: %v", chartDir, vals, err)
	}
	hooks, sorted, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		t.Fatalf("%s: %v", chartDir, err)
	}
	if len(hooks) > 0 {
		t.Errorf("%s renders %d hooks; the test applies none", chartDir, len(hooks))
	}
	var out []*unstructured.Unstructured
	for _, crd := range ch.CRDObjects() {
		out = append(out, apitest.Decode(t, crd.Filename, crd.File.Data)...)
	}
	for _, m := range sorted {
		out = append(out, apitest.Decode(t, m.Name, []byte(m.Content))...)
	}
	return out
}

// overrides sets every value the chart has to something other than its
// default.
var overrides = map[string]any{
	"image":            map[string]any{"repository": "ghcr.io/you/kscmp", "tag": "v1.2.3", "pullPolicy": "Always"},
	"namespace":        map[string]any{"create": true},
	"kubeletRoot":      "/var/snap/microk8s/common/var/lib/kubelet",
	"restartWorkloads": true,
	"agent": map[string]any{
		"exitErrors":      true,
		"attributeExited": false,
		"resources":       map[string]any{"limits": map[string]any{"memory": "256Mi"}},
		"tolerations":     []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}},
		"nodeSelector":    map[string]any{"kubernetes.io/os": "linux"},
	},
	"webhook": map[string]any{
		"replicas":       3,
		"namespaceLabel": map[string]any{"key": "example.com/seccomp", "value": "on"},
		"tolerations":    []any{map[string]any{"key": "dedicated", "operator": "Exists"}},
		"nodeSelector":   map[string]any{"node-role.kubernetes.io/infra": ""},
	},
	"recorder": map[string]any{"discoverGroup": "platform-team"},
}

// TestHelmApply renders the chart with its defaults and with every value
// overridden (in another namespace) and applies both to a real API server,
// each object first as a server-side dry run.
func TestHelmApply(t *testing.T) {
	srv := apitest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	apply := newApplier(ctx, t, srv)
	def := renderChart(t, "kscmp-system", map[string]any{"namespace": map[string]any{"create": true}})
	if len(def) < 10 {
		t.Fatalf("only %d objects rendered", len(def))
	}
	applyAll(t, apply, def)
	applyAll(t, apply, renderChart(t, "kscmp-other", overrides))
}

// TestHelmCRD: the chart's CRD is the one make generate writes into
// deploy/manifests/crd (make generate copies it; this catches a hand edit
// or a forgotten copy).
func TestHelmCRD(t *testing.T) {
	const name = "security.kubearmor.com_kubearmorseccomppolicies.yaml"
	want, err := os.ReadFile(filepath.Join("manifests", "crd", name))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(chartDir, "crds", name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s/crds/%s differs from manifests/crd/%s: run make generate", chartDir, name, name)
	}
}

// key names an object in the comparisons.
func key(u *unstructured.Unstructured) string {
	return fmt.Sprintf("%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
}

// securityFields are the fields, per kind, on which the chart must agree
// with the kustomize manifests: who runs with which privileges, what of the
// host it sees, what it may do in the API, and which pods the webhook
// mutates. Containers are compared separately (containerFields).
var securityFields = map[string][][]string{
	"Namespace":                      {{"metadata", "labels"}},
	"ServiceAccount":                 {{"automountServiceAccountToken"}},
	"ClusterRole":                    {{"rules"}, {"aggregationRule"}},
	"Role":                           {{"rules"}},
	"ClusterRoleBinding":             {{"roleRef"}, {"subjects"}},
	"RoleBinding":                    {{"roleRef"}, {"subjects"}},
	"MutatingWebhookConfiguration":   {{"webhooks"}},
	"Service":                        {{"spec"}},
	"CustomResourceDefinition":       {{"spec"}},
	"DaemonSet":                      podFields,
	"Deployment":                     podFields,
	"ValidatingWebhookConfiguration": {{"webhooks"}},
	"PodDisruptionBudget":            {{"spec"}},
}

// podFields are a workload's pod-level security fields.
var podFields = [][]string{
	{"spec", "template", "spec", "serviceAccountName"},
	{"spec", "template", "spec", "automountServiceAccountToken"},
	{"spec", "template", "spec", "securityContext"},
	{"spec", "template", "spec", "hostNetwork"},
	{"spec", "template", "spec", "hostPID"},
	{"spec", "template", "spec", "hostIPC"},
	{"spec", "template", "spec", "volumes"},
	{"spec", "template", "spec", "priorityClassName"},
}

// containerFields are each container's security fields; args hold the
// kubelet root, --restart-workloads and the address /metrics listens on,
// env what the args' $(VAR)s expand to and the GOMEMLIMIT that keeps the
// process under its memory limit, image the code that runs.
var containerFields = []string{"securityContext", "volumeMounts", "args", "env", "image", "imagePullPolicy"}

// diffSecurity returns one line per security-relevant field on which got
// differs from want, and per object only one of them has.
func diffSecurity(want, got []*unstructured.Unstructured) []string {
	index := func(us []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
		m := map[string]*unstructured.Unstructured{}
		for _, u := range us {
			m[key(u)] = u
		}
		return m
	}
	w, g := index(want), index(got)
	var diffs []string
	for k, wu := range w {
		gu, ok := g[k]
		if !ok {
			diffs = append(diffs, k+": in deploy/manifests, not rendered by the chart")
			continue
		}
		fields, ok := securityFields[wu.GetKind()]
		if !ok {
			diffs = append(diffs, k+": a kind the comparison does not know; add its security fields")
		}
		for _, f := range fields {
			wv, _, _ := unstructured.NestedFieldNoCopy(wu.Object, f...)
			gv, _, _ := unstructured.NestedFieldNoCopy(gu.Object, f...)
			if !reflect.DeepEqual(wv, gv) {
				diffs = append(diffs, fmt.Sprintf("%s: %s: manifests %v, chart %v", k, strings.Join(f, "."), wv, gv))
			}
		}
		for _, list := range []string{"initContainers", "containers"} {
			diffs = append(diffs, diffContainers(k+" "+list, wu, gu, list)...)
		}
	}
	for k := range g {
		if _, ok := w[k]; !ok {
			diffs = append(diffs, k+": rendered by the chart, not in deploy/manifests")
		}
	}
	slices.Sort(diffs)
	return diffs
}

// diffContainers compares the containers of one list (containers or
// initContainers) of two workloads by name, on containerFields.
func diffContainers(where string, wu, gu *unstructured.Unstructured, list string) []string {
	byName := func(u *unstructured.Unstructured) map[string]map[string]any {
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", list)
		m := map[string]map[string]any{}
		for _, c := range cs {
			if c, ok := c.(map[string]any); ok {
				name, _ := c["name"].(string)
				m[name] = c
			}
		}
		return m
	}
	w, g := byName(wu), byName(gu)
	var diffs []string
	for name, wc := range w {
		gc, ok := g[name]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s %s: missing from the chart", where, name))
			continue
		}
		for _, f := range containerFields {
			if !reflect.DeepEqual(wc[f], gc[f]) {
				diffs = append(diffs, fmt.Sprintf("%s %s: %s: manifests %v, chart %v", where, name, f, wc[f], gc[f]))
			}
		}
	}
	for name := range g {
		if _, ok := w[name]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s %s: only in the chart", where, name))
		}
	}
	return diffs
}

// TestHelmAgreesWithManifests: the chart with its defaults (and the
// namespace it can create) renders the objects of deploy/manifests, equal
// on every security-relevant field: containers' securityContext
// (capabilities, privileged, runAsUser, runAsNonRoot, read-only root,
// seccomp profile), hostPath volumes and mounts, RBAC rules and bindings,
// the webhook configuration, service accounts, the CRD.
func TestHelmAgreesWithManifests(t *testing.T) {
	got := renderChart(t, "kscmp-system", map[string]any{"namespace": map[string]any{"create": true}})
	for _, d := range diffSecurity(manifests(t), got) {
		t.Error(d)
	}
	// The comparison itself must see a drift: one capability more.
	drifted := renderChart(t, "kscmp-system", map[string]any{"namespace": map[string]any{"create": true}})
	for _, u := range drifted {
		if u.GetKind() == "DaemonSet" {
			cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			sc := cs[0].(map[string]any)["securityContext"].(map[string]any)
			caps := sc["capabilities"].(map[string]any)
			caps["add"] = append(caps["add"].([]any), "SYS_ADMIN")
			if err := unstructured.SetNestedSlice(u.Object, cs, "spec", "template", "spec", "containers"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d := diffSecurity(manifests(t), drifted); len(d) != 1 || !strings.Contains(d[0], "securityContext") {
		t.Errorf("an added capability gives the differences %q, want one on securityContext", d)
	}
}

// TestHelmValues: each value lands where it should, and nowhere else.
func TestHelmValues(t *testing.T) {
	def := renderChart(t, "kscmp-system", nil)
	for _, u := range def {
		if u.GetKind() == "Namespace" {
			t.Errorf("namespace.create defaults to false, yet %s is rendered", key(u))
		}
		for _, c := range allContainers(u) {
			if c["image"] != "kscmp:latest" {
				t.Errorf("%s %s: image %v, want kscmp:<appVersion> = kscmp:latest", key(u), c["name"], c["image"])
			}
			if slices.Contains(stringsOf(c["args"]), "--restart-workloads") {
				t.Errorf("%s %s: --restart-workloads without restartWorkloads", key(u), c["name"])
			}
		}
	}

	got := renderChart(t, "kscmp-other", overrides)
	root := "/var/snap/microk8s/common/var/lib/kubelet"
	var restart, ds, dep, discover int
	for _, u := range got {
		for _, c := range allContainers(u) {
			if c["image"] != "ghcr.io/you/kscmp:v1.2.3" || c["imagePullPolicy"] != "Always" {
				t.Errorf("%s %s: image %v %v, want ghcr.io/you/kscmp:v1.2.3 Always", key(u), c["name"], c["image"], c["imagePullPolicy"])
			}
			if slices.Contains(stringsOf(c["args"]), "--restart-workloads") {
				restart++
			}
		}
		spec, _, _ := unstructured.NestedMap(u.Object, "spec", "template", "spec")
		switch u.GetKind() {
		case "DaemonSet":
			ds++
			checkKubeletRoot(t, u, root)
			wantField(t, u, spec["nodeSelector"], map[string]any{"kubernetes.io/os": "linux"}, "nodeSelector")
			wantField(t, u, spec["tolerations"], overrides["agent"].(map[string]any)["tolerations"], "tolerations")
			c := allContainers(u)[1]
			lim, _, _ := unstructured.NestedString(c, "resources", "limits", "memory")
			wantField(t, u, lim, "256Mi", "agent memory limit")
		case "Deployment":
			dep++
			r, _, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "replicas")
			wantField(t, u, fmt.Sprint(r), "3", "replicas") // a JSON number: float64
			wantField(t, u, spec["nodeSelector"], map[string]any{"node-role.kubernetes.io/infra": ""}, "nodeSelector")
			args := stringsOf(allContainers(u)[0]["args"])
			for _, want := range []string{"kscmp-other/kscmp-webhook-tls", "kscmp-webhook.kscmp-other.svc"} {
				if !slices.Contains(args, want) {
					t.Errorf("%s: args %v lack %s", key(u), args, want)
				}
			}
		case "MutatingWebhookConfiguration":
			whs, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
			sel := whs[0].(map[string]any)["namespaceSelector"].(map[string]any)
			wantField(t, u, sel["matchLabels"], map[string]any{"example.com/seccomp": "on"}, "namespaceSelector.matchLabels")
			exprs := sel["matchExpressions"].([]any)
			wantField(t, u, exprs[0].(map[string]any)["values"], []any{"kscmp-other"}, "namespaceSelector's excluded namespace")
		case "Namespace":
			wantField(t, u, u.GetName(), "kscmp-other", "namespace name")
		case "RoleBinding", "ClusterRoleBinding":
			subj, _, _ := unstructured.NestedSlice(u.Object, "subjects")
			if u.GetName() == "kscmp-discover" {
				discover++
				wantField(t, u, subj[0].(map[string]any)["name"], "platform-team", "subject (recorder.discoverGroup)")
			}
		}
	}
	if discover != 2 {
		t.Errorf("%d bindings kscmp-discover, want 2 (the ClusterRole's and the Role's)", discover)
	}
	if ds != 1 || dep != 1 || restart != 1 {
		t.Errorf("%d DaemonSets, %d Deployments, --restart-workloads on %d containers; want 1, 1, 1 (the agent)", ds, dep, restart)
	}
}

// checkKubeletRoot: the agent's hostPath, both containers' mounts and both
// --kubelet-root flags follow kubeletRoot.
func checkKubeletRoot(t *testing.T, u *unstructured.Unstructured, root string) {
	t.Helper()
	vols, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "volumes")
	if len(vols) == 0 || vols[0].(map[string]any)["name"] != "seccomp" {
		t.Fatalf("%s: volumes %v, want seccomp first", key(u), vols)
	}
	p, _, _ := unstructured.NestedString(vols[0].(map[string]any), "hostPath", "path")
	wantField(t, u, p, root+"/seccomp", "hostPath")
	for _, c := range allContainers(u) {
		args := stringsOf(c["args"])
		i := slices.Index(args, "--kubelet-root")
		if i < 0 || i+1 >= len(args) || args[i+1] != root {
			t.Errorf("%s %s: args %v, want --kubelet-root %s", key(u), c["name"], args, root)
		}
		mounts, _ := c["volumeMounts"].([]any)
		if len(mounts) == 0 || mounts[0].(map[string]any)["mountPath"] != root+"/seccomp" {
			t.Errorf("%s %s: mounts %v, want %s/seccomp first", key(u), c["name"], mounts, root)
		}
	}
}

// wantField reports got != want for the named field of u.
func wantField(t *testing.T, u *unstructured.Unstructured, got, want any, field string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: %s is %v, want %v", key(u), field, got, want)
	}
}

// allContainers returns a workload's init containers, then its containers.
func allContainers(u *unstructured.Unstructured) []map[string]any {
	var out []map[string]any
	for _, list := range []string{"initContainers", "containers"} {
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", list)
		for _, c := range cs {
			out = append(out, c.(map[string]any))
		}
	}
	return out
}

// stringsOf converts a decoded YAML list of strings.
func stringsOf(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, s := range l {
		out = append(out, fmt.Sprint(s))
	}
	return out
}

// TestHelmServiceMonitor: the agents' metrics Service is always rendered;
// the ServiceMonitor only with agent.serviceMonitor.enabled, with its
// labels and interval, selecting that Service's port.
func TestHelmServiceMonitor(t *testing.T) {
	count := func(us []*unstructured.Unstructured, kind string) int {
		n := 0
		for _, u := range us {
			if u.GetKind() == kind {
				n++
			}
		}
		return n
	}
	def := renderChart(t, "kscmp-system", nil)
	if count(def, "ServiceMonitor") != 0 || count(def, "Service") != 2 {
		t.Errorf("defaults: %d ServiceMonitors, %d Services; want 0 and 2 (webhook, agent metrics)", count(def, "ServiceMonitor"), count(def, "Service"))
	}
	got := renderChart(t, "kscmp-other", map[string]any{"agent": map[string]any{"serviceMonitor": map[string]any{
		"enabled": true, "interval": "15s", "labels": map[string]any{"release": "prom"}}}})
	for _, u := range got {
		if u.GetKind() != "ServiceMonitor" {
			continue
		}
		wantField(t, u, u.GetLabels()["release"], "prom", "labels.release")
		wantField(t, u, u.GetNamespace(), "kscmp-other", "namespace")
		eps, _, _ := unstructured.NestedSlice(u.Object, "spec", "endpoints")
		wantField(t, u, eps, []any{map[string]any{"port": "metrics", "path": "/metrics", "interval": "15s"}}, "endpoints")
	}
	if count(got, "ServiceMonitor") != 1 {
		t.Errorf("serviceMonitor.enabled: %d ServiceMonitors, want 1", count(got, "ServiceMonitor"))
	}
}

// TestAgentMetricsOnNodeIP: the agent listens for /metrics on its node's IP
// (the downward API's status.hostIP), not on every address of the host
// network: two nodes on one host (the test cluster) would compete for
// :9476. Both the manifests and the chart, whatever the values.
func TestAgentMetricsOnNodeIP(t *testing.T) {
	for name, objs := range map[string][]*unstructured.Unstructured{
		"deploy/manifests":      manifests(t),
		"chart, defaults":       renderChart(t, "kscmp-system", nil),
		"chart, every override": renderChart(t, "kscmp-other", overrides),
	} {
		n := 0
		for _, u := range objs {
			if u.GetKind() != "DaemonSet" {
				continue
			}
			n++
			c := allContainers(u)[1]
			args := stringsOf(c["args"])
			if i := slices.Index(args, "--metrics-addr"); i < 0 || i+1 >= len(args) || args[i+1] != "$(HOST_IP):9476" {
				t.Errorf("%s: agent args %v, want --metrics-addr $(HOST_IP):9476", name, args)
			}
			env, _ := c["env"].([]any)
			found := false
			for _, e := range env {
				e, _ := e.(map[string]any)
				if e["name"] != "HOST_IP" {
					continue
				}
				path, _, _ := unstructured.NestedString(e, "valueFrom", "fieldRef", "fieldPath")
				found = path == "status.hostIP"
			}
			if !found {
				t.Errorf("%s: agent env %v lacks HOST_IP from status.hostIP", name, env)
			}
		}
		if n != 1 {
			t.Errorf("%s: %d DaemonSets, want 1", name, n)
		}
	}
}

// TestHelmExitErrors: the agent's eBPF programs get what they need and
// nothing more. By default (the chart as deploy/manifests) the agent
// attributes exited processes (--attribute-exited is on): CAP_BPF,
// CAP_PERFMON and its own profile plus bpf, no --exit-errors and no host
// mount. agent.attributeExited=false takes all three away
// (--attribute-exited=false, its own profile without bpf).
// agent.exitErrors adds --exit-errors and read-only mounts of the runtime
// state and the cgroup tree (never containerd's socket directory), and
// keeps the capabilities and the profile whatever attributeExited says.
func TestHelmExitErrors(t *testing.T) {
	agentOf := func(objs []*unstructured.Unstructured) (map[string]any, []any) {
		for _, u := range objs {
			if u.GetKind() == "DaemonSet" {
				vols, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "volumes")
				return allContainers(u)[1], vols
			}
		}
		t.Fatal("no DaemonSet")
		return nil, nil
	}
	caps := func(c map[string]any) []string {
		add, _, _ := unstructured.NestedSlice(c, "securityContext", "capabilities", "add")
		return stringsOf(add)
	}
	profile := func(c map[string]any) string {
		p, _, _ := unstructured.NestedString(c, "securityContext", "seccompProfile", "localhostProfile")
		return p
	}
	want := []string{"DAC_OVERRIDE", "CHOWN", "FOWNER", "AUDIT_READ", "AUDIT_CONTROL", "BPF", "PERFMON"}
	for name, objs := range map[string][]*unstructured.Unstructured{"manifests": manifests(t), "chart defaults": renderChart(t, "kscmp-system", nil)} {
		c, vols := agentOf(objs)
		args := stringsOf(c["args"])
		if slices.Contains(args, "--exit-errors") || slices.Contains(args, "--attribute-exited=false") || !slices.Equal(caps(c), want) ||
			profile(c) != agent.OwnBPFProfile || len(vols) != 1 {
			t.Errorf("%s: want --attribute-exited (the default) and no --exit-errors: args %v, caps %v, profile %s, %d volumes", name, args, caps(c), profile(c), len(vols))
		}
	}
	c, vols := agentOf(renderChart(t, "kscmp-system", map[string]any{"agent": map[string]any{"attributeExited": false}}))
	if args := stringsOf(c["args"]); !slices.Contains(args, "--attribute-exited=false") || slices.Contains(caps(c), "BPF") || slices.Contains(caps(c), "PERFMON") ||
		profile(c) != agent.OwnProfile || len(vols) != 1 {
		t.Errorf("attributeExited=false: eBPF still half on: args %v, caps %v, profile %s, %d volumes", args, caps(c), profile(c), len(vols))
	}
	c, _ = agentOf(renderChart(t, "kscmp-system", map[string]any{"agent": map[string]any{"attributeExited": false, "exitErrors": true}}))
	if !slices.Equal(caps(c), want) || profile(c) != agent.OwnBPFProfile {
		t.Errorf("exitErrors without attributeExited: caps %v, profile %s", caps(c), profile(c))
	}
	c, vols = agentOf(renderChart(t, "kscmp-system", map[string]any{"agent": map[string]any{"exitErrors": true}}))
	if !slices.Contains(stringsOf(c["args"]), "--exit-errors") {
		t.Errorf("args %v lack --exit-errors", c["args"])
	}
	if !slices.Equal(caps(c), want) {
		t.Errorf("capabilities %v, want %v", caps(c), want)
	}
	if profile(c) != agent.OwnBPFProfile {
		t.Errorf("profile %s, want %s", profile(c), agent.OwnBPFProfile)
	}
	mounts, _ := c["volumeMounts"].([]any)
	paths := map[string]string{}
	for _, v := range vols[1:] {
		v := v.(map[string]any)
		p, _, _ := unstructured.NestedString(v, "hostPath", "path")
		paths[v["name"].(string)] = p
	}
	var got []string
	for _, m := range mounts[1:] {
		m := m.(map[string]any)
		if m["readOnly"] != true || paths[m["name"].(string)] != m["mountPath"] {
			t.Errorf("mount %v: want read-only, at its host path %s", m, paths[m["name"].(string)])
		}
		got = append(got, m["mountPath"].(string))
	}
	if wantMounts := []string{"/run/runc", "/run/containerd/runc", "/run/containerd/io.containerd.runtime.v2.task", "/sys/fs/cgroup"}; !slices.Equal(got, wantMounts) {
		t.Errorf("mounts %v, want %v", got, wantMounts)
	}
}
