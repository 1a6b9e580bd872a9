package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/internal/apitest"
)

// TestManifestsStatusRBAC: with the manifests' RBAC and nothing more, an
// agent (as the kscmp-agent service account) writes its node's status
// object, and the aggregator (as kscmp-webhook, its Lease in kscmp-system)
// writes the policy's status from it: installed on 1 of 1 nodes.
func TestManifestsStatusRBAC(t *testing.T) {
	srv := apitest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	applyAll(t, newApplier(ctx, t, srv), manifests(t))
	srv.CreateNamespace(t, "shop")
	dyn := dynamic.NewForConfigOrDie(srv.Config)
	u := &unstructured.Unstructured{}
	yaml.Unmarshal([]byte("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: web, namespace: shop}\nspec: {selector: {matchLabels: {app: web}}, seccomp: {syscalls: [read], action: Allow}}"), &u.Object)
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		_, err := dyn.Resource(agent.PolicyResource).Namespace("shop").Create(ctx, u, metav1.CreateOptions{})
		return err == nil, nil
	}); err != nil {
		t.Fatalf("policy not created: %v", err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}
	if _, err := srv.Client.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	as := func(sa string) (kubernetes.Interface, dynamic.Interface) {
		cfg := srv.UserConfig(t, "system:serviceaccount:kscmp-system:"+sa, "system:serviceaccounts", "system:serviceaccounts:kscmp-system", "system:authenticated")
		return kubernetes.NewForConfigOrDie(cfg), dynamic.NewForConfigOrDie(cfg)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	defer func() { stop(); <-done; <-done }()
	kube, adyn := as("kscmp-agent")
	a, err := agent.New(kube, adyn, agent.Options{Node: "node-a", SeccompDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	go func() { a.Run(runCtx); done <- struct{}{} }()
	wkube, wdyn := as("kscmp-webhook")
	policies := agent.NewPolicyCache(wdyn, nil)
	if !policies.Start(runCtx) {
		t.Fatal("the webhook's policy cache did not sync")
	}
	agg := agent.NewAggregator(wkube, wdyn, policies, agent.AggregatorOptions{Namespace: "kscmp-system", Identity: "kscmp-webhook-0"})
	go func() { agg.Run(runCtx); done <- struct{}{} }()

	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		p, err := dyn.Resource(agent.PolicyResource).Namespace("shop").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		n, _, _ := unstructured.NestedInt64(p.Object, "status", "nodes")
		sel, _, _ := unstructured.NestedInt64(p.Object, "status", "selectedNodes")
		return n == 1 && sel == 1, nil
	}); err != nil {
		t.Fatalf("no status installed on 1 of 1 nodes with the manifests' RBAC: %v", err)
	}
	if _, err := dyn.Resource(agent.NodeStatusResource).Get(ctx, "node-a", metav1.GetOptions{}); err != nil {
		t.Errorf("node-a's status object: %v", err)
	}
	// kubectl get kscmp: installed on 1 of 1 nodes, none failed.
	raw, err := srv.Client.CoreV1().RESTClient().Get().AbsPath("/apis/security.kubearmor.com/v1/namespaces/shop/kubearmorseccomppolicies").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil || len(table.Rows) != 1 {
		t.Fatalf("table: %v, %d rows", err, len(table.Rows))
	}
	got := map[string]any{}
	for i, col := range table.ColumnDefinitions {
		got[col.Name] = table.Rows[0].Cells[i]
	}
	if fmt.Sprint(got["Installed"], "/", got["Of"], "/", got["Failed"]) != "1/1/0" {
		t.Errorf("kubectl get kscmp columns: %v, want Installed 1, Of 1, Failed 0", got)
	}
}
