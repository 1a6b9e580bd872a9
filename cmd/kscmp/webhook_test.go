package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/internal/apitest"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// TestWebhookCommand runs the built `kscmp webhook --self-signed`: it patches
// its CA bundle into the webhook configuration, and the real API server then
// calls it over TLS and binds a pod to its profile.
func TestWebhookCommand(t *testing.T) {
	srv := apitest.Start(t)
	srv.InstallPolicyCRD(t)
	srv.CreateNamespace(t, "shop")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns, _ := srv.Client.CoreV1().Namespaces().Get(ctx, "shop", metav1.GetOptions{})
	ns.Labels = map[string]string{"kscmp.kubearmor.com/enforce": "true"}
	srv.Client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
	u := &unstructured.Unstructured{}
	yaml.Unmarshal([]byte("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: web, namespace: shop}\nspec: {selector: {matchLabels: {app: web}}, seccomp: {syscalls: [read], action: Allow}}"), &u.Object)
	if _, err := dynamic.NewForConfigOrDie(srv.Config).Resource(agent.PolicyResource).Namespace("shop").Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The webhook's port can be taken between FreePorts and its bind: then
	// it exits saying so, and it starts again on another port (with the
	// configuration's URL changed to match).
	bin := buildKscmp(t)
	ignore, none := admissionregv1.Ignore, admissionregv1.SideEffectClassNone
	err := testenv.OnFreePorts(t, 1, 3, func(ports []int) error {
		addr := "127.0.0.1:" + strconv.Itoa(ports[0])
		url := "https://" + addr + "/mutate-pods"
		whc := &admissionregv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "kscmp"},
			Webhooks: []admissionregv1.MutatingWebhook{{Name: "pods.kscmp.kubearmor.com", AdmissionReviewVersions: []string{"v1"},
				SideEffects: &none, FailurePolicy: &ignore,
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kscmp.kubearmor.com/enforce": "true"}},
				Rules: []admissionregv1.RuleWithOperations{{Operations: []admissionregv1.OperationType{admissionregv1.Create},
					Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
				ClientConfig: admissionregv1.WebhookClientConfig{URL: &url}}}}
		configs := srv.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
		if old, err := configs.Get(ctx, "kscmp", metav1.GetOptions{}); err == nil {
			whc.ResourceVersion = old.ResourceVersion
			if _, err := configs.Update(ctx, whc, metav1.UpdateOptions{}); err != nil {
				return err
			}
		} else if _, err := configs.Create(ctx, whc, metav1.CreateOptions{}); err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, bin, "webhook", "--self-signed", "--service", "127.0.0.1", "--listen", addr,
			"--webhook-config", "kscmp", "--kubeconfig", srv.Kubeconfig(t))
		stderr := &lockedBuffer{}
		cmd.Stderr = io.MultiWriter(os.Stderr, stderr)
		if err := cmd.Start(); err != nil {
			return err
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// Listening: the port's listening socket is the webhook's own.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			select {
			case err := <-exited:
				if testenv.AddrInUse(stderr.String()) {
					return fmt.Errorf("%w: the webhook exited: %v", testenv.ErrPortInUse, err)
				}
				return fmt.Errorf("the webhook exited before it listened on %s: %v", addr, err)
			default:
			}
			if owners, _ := testenv.PortOwners(ports[0]); slices.Contains(owners, cmd.Process.Pid) {
				t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); <-exited })
				return nil
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				<-exited
				return fmt.Errorf("the webhook does not listen on %s after 30 s", addr)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}

	want := agent.ProfilePath("shop", "web")
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i), Namespace: "shop", Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}
		got, err := srv.Client.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sc := got.Spec.Containers[0].SecurityContext; sc != nil && sc.SeccompProfile != nil && sc.SeccompProfile.LocalhostProfile != nil && *sc.SeccompProfile.LocalhostProfile == want {
			break
		}
		if time.Now().After(deadline) {
			whc, _ := srv.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "kscmp", metav1.GetOptions{})
			t.Fatalf("pod never bound (CA bundle patched: %v)", len(whc.Webhooks[0].ClientConfig.CABundle) > 0)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
