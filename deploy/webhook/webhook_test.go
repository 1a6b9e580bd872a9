package webhook

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/internal/apitest"
)

// TestWebhookBindsPods: the real API server calls the webhook over TLS on
// 127.0.0.1; pods in opted-in namespaces get the profile the agent names,
// explicit profiles stay, other namespaces are untouched, and an outage of
// the webhook blocks nobody.
func TestWebhookBindsPods(t *testing.T) {
	srv := apitest.Start(t)
	srv.InstallPolicyCRD(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, ns := range []string{"shop", "plain"} {
		srv.CreateNamespace(t, ns)
	}
	shop, _ := srv.Client.CoreV1().Namespaces().Get(ctx, "shop", metav1.GetOptions{})
	shop.Labels = map[string]string{"kscmp.kubearmor.com/enforce": "true"}
	if _, err := srv.Client.CoreV1().Namespaces().Update(ctx, shop, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(srv.Config)
	for _, doc := range []string{
		"metadata: {name: kscmp1, namespace: shop}\nspec: {selector: {matchLabels: {app: web}}, seccomp: {syscalls: [read], action: Allow}}",
		"metadata: {name: nginx-only, namespace: shop}\nspec: {selector: {matchLabels: {app: web}}, containers: [nginx], seccomp: {syscalls: [write], action: Allow}}",
		"metadata: {name: kscmp1, namespace: plain}\nspec: {selector: {matchLabels: {app: web}}, seccomp: {syscalls: [read], action: Allow}}",
	} {
		u := &unstructured.Unstructured{}
		yaml.Unmarshal([]byte("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\n"+doc), &u.Object)
		if _, err := dyn.Resource(agent.PolicyResource).Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	policies := agent.NewPolicyCache(dyn, nil)
	if !policies.Start(ctx) {
		t.Fatal("policy cache not synced")
	}

	cert, caBundle, err := SelfSigned([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: &Handler{Policies: policies}, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go hs.ServeTLS(ln, "", "")
	url := "https://" + ln.Addr().String() + "/mutate-pods"
	ignore, none, timeout := admissionregv1.Ignore, admissionregv1.SideEffectClassNone, int32(3)
	whc := &admissionregv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "kscmp"},
		Webhooks: []admissionregv1.MutatingWebhook{{
			Name: "pods.kscmp.kubearmor.com", AdmissionReviewVersions: []string{"v1"}, SideEffects: &none,
			FailurePolicy: &ignore, TimeoutSeconds: &timeout,
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kscmp.kubearmor.com/enforce": "true"}},
			Rules: []admissionregv1.RuleWithOperations{{Operations: []admissionregv1.OperationType{admissionregv1.Create},
				Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			ClientConfig: admissionregv1.WebhookClientConfig{URL: &url, CABundle: caBundle},
		}}}
	if _, err := srv.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, whc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	mkPod := func(ns, name string, explicit bool) *corev1.Pod {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}, {Name: "log", Image: "busybox"}}}}
		if explicit {
			p.Spec.Containers[1].SecurityContext = &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
		}
		// The API server may need a moment to start calling a new webhook
		// configuration: retry (under a new name) until the pod is mutated.
		deadline := time.Now().Add(20 * time.Second)
		for i := 0; ; i++ {
			p.Name = fmt.Sprintf("%s-%d", name, i)
			got, err := srv.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if ns != "shop" || got.Spec.Containers[0].SecurityContext != nil || time.Now().After(deadline) {
				return got
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	profile := func(c corev1.Container) string {
		if c.SecurityContext == nil || c.SecurityContext.SeccompProfile == nil {
			return ""
		}
		sp := c.SecurityContext.SeccompProfile
		if sp.LocalhostProfile != nil {
			return string(sp.Type) + ":" + *sp.LocalhostProfile
		}
		return string(sp.Type)
	}
	p := mkPod("shop", "web-1", false)
	if got, want := profile(p.Spec.Containers[0]), "Localhost:"+agent.ProfilePath("shop", "kscmp1+nginx-only"); got != want {
		t.Errorf("nginx: %q, want %q", got, want)
	}
	if got, want := profile(p.Spec.Containers[1]), "Localhost:"+agent.ProfilePath("shop", "kscmp1"); got != want {
		t.Errorf("log: %q, want %q", got, want)
	}
	p = mkPod("shop", "web-2", true)
	if got := profile(p.Spec.Containers[1]); got != "RuntimeDefault" {
		t.Errorf("an explicit profile was overwritten: %q", got)
	}
	if p = mkPod("plain", "web-3", false); profile(p.Spec.Containers[0]) != "" {
		t.Errorf("a namespace that did not opt in was mutated: %q", profile(p.Spec.Containers[0]))
	}
	// Outage: the webhook is gone; pods are created anyway (failurePolicy Ignore).
	hs.Close()
	start := time.Now()
	p = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-4", Namespace: "shop", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}}}}
	if _, err := srv.Client.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("webhook outage blocked a pod: %v", err)
	}
	t.Logf("pod created during the webhook outage in %s", time.Since(start))
}

type staticPolicies []*api.KubeArmorSeccompPolicy

func (s staticPolicies) Policies(ns string) []*api.KubeArmorSeccompPolicy {
	var out []*api.KubeArmorSeccompPolicy
	for _, p := range s {
		if p.Namespace == ns {
			out = append(out, p)
		}
	}
	return out
}

// TestWebhookLeavesAgentAlone: the agent's own pods (as the DaemonSet makes
// them) are never mutated, even when a policy selects them: every
// container names its profile (its own, or RuntimeDefault for the init
// container).
func TestWebhookLeavesAgentAlone(t *testing.T) {
	ds := apitest.AgentDaemonSet(t)
	pod := corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: ds.Spec.Template.ObjectMeta, Spec: ds.Spec.Template.Spec}
	pod.Name, pod.Namespace = "kscmp-agent-x7k2p", ds.Namespace
	raw, _ := json.Marshal(pod)
	p := &api.KubeArmorSeccompPolicy{ObjectMeta: metav1.ObjectMeta{Name: "extra", Namespace: ds.Namespace},
		Spec: api.PolicySpec{Selector: api.Selector{MatchLabels: ds.Spec.Template.Labels},
			Seccomp: api.SeccompSpec{Syscalls: []string{"read"}, Action: api.ActionAllow}}}
	h := &Handler{Policies: staticPolicies{p}}
	resp := h.Mutate(&admissionv1.AdmissionRequest{UID: "1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Operation: admissionv1.Create, Namespace: ds.Namespace, Object: runtime.RawExtension{Raw: raw}})
	if !resp.Allowed || resp.Patch != nil {
		t.Errorf("the agent's pod was mutated: %s", resp.Patch)
	}
	if len(resp.Warnings) != len(pod.Spec.Containers)+len(pod.Spec.InitContainers) {
		t.Errorf("warnings %q, want one per container", resp.Warnings)
	}
}
