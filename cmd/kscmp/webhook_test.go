package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
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
	srv.CreateNamespace(t, "kscmp-system") // the --tls-secret default's
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

	// The configuration's URL follows the port the webhook gets.
	bin := buildKscmp(t)
	ignore, none := admissionregv1.Ignore, admissionregv1.SideEffectClassNone
	_, err := startWebhook(ctx, t, bin, func(addr string) error {
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
			_, err := configs.Update(ctx, whc, metav1.UpdateOptions{})
			return err
		}
		_, err := configs.Create(ctx, whc, metav1.CreateOptions{})
		return err
	}, "webhook", "--self-signed", "--service", "127.0.0.1", "--webhook-config", "kscmp", "--kubeconfig", srv.Kubeconfig(t))
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

// webhookProc is a running `kscmp webhook`.
type webhookProc struct {
	addr string
	stop func() // SIGTERM, then wait; idempotent, also run in t.Cleanup
}

// startWebhook runs bin with args and --listen on a free 127.0.0.1 port,
// prepare(addr) first, and returns once the process listens there. The
// port can be taken between FreePorts and the webhook's bind: then it exits
// saying so and starts again on another port (prepare again). Safe to call
// from several goroutines: it reports failures as errors, not t.Fatal.
func startWebhook(ctx context.Context, t *testing.T, bin string, prepare func(addr string) error, args ...string) (*webhookProc, error) {
	var proc *webhookProc
	err := testenv.OnFreePorts(t, 1, 3, func(ports []int) error {
		addr := "127.0.0.1:" + strconv.Itoa(ports[0])
		if prepare != nil {
			if err := prepare(addr); err != nil {
				return err
			}
		}
		cmd := exec.CommandContext(ctx, bin, append(slices.Clone(args), "--listen", addr)...)
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
				var once sync.Once
				stop := func() { once.Do(func() { cmd.Process.Signal(syscall.SIGTERM); <-exited }) }
				t.Cleanup(stop)
				proc = &webhookProc{addr: addr, stop: stop}
				return nil
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				<-exited
				return fmt.Errorf("the webhook does not listen on %s after 30 s", addr)
			}
		}
	})
	return proc, err
}

// TestWebhookReplicasShareCA: two `kscmp webhook --self-signed` started
// together against one API server (as the Deployment's two replicas) serve
// certificates that both verify against the one CA bundle they leave in the
// webhook configuration, for the Service's DNS name the API server calls;
// a restarted replica reuses the Secret (no new CA, configuration
// unchanged); --tls-cert/--tls-key from files still serve without it.
func TestWebhookReplicasShareCA(t *testing.T) {
	srv := apitest.Start(t)
	srv.InstallPolicyCRD(t)
	srv.CreateNamespace(t, "kscmp-system")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const service = "kscmp-webhook.kscmp-system.svc"
	ignore, none, port := admissionregv1.Ignore, admissionregv1.SideEffectClassNone, int32(443)
	whc := &admissionregv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "kscmp"},
		Webhooks: []admissionregv1.MutatingWebhook{{Name: "pods.kscmp.kubearmor.com", AdmissionReviewVersions: []string{"v1"},
			SideEffects: &none, FailurePolicy: &ignore,
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kscmp.kubearmor.com/enforce": "true"}},
			Rules: []admissionregv1.RuleWithOperations{{Operations: []admissionregv1.OperationType{admissionregv1.Create},
				Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			ClientConfig: admissionregv1.WebhookClientConfig{Service: &admissionregv1.ServiceReference{
				Namespace: "kscmp-system", Name: "kscmp-webhook", Path: ptr("/mutate-pods"), Port: &port}}}}}
	configs := srv.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := configs.Create(ctx, whc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bin := buildKscmp(t)
	args := []string{"webhook", "--self-signed", "--service", service, "--webhook-config", "kscmp", "--kubeconfig", srv.Kubeconfig(t)}

	// Both replicas at once: each finds no Secret, and they race to create it.
	replicas := make([]*webhookProc, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() { replicas[i], errs[i] = startWebhook(ctx, t, bin, nil, args...) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	bundle := func() (*admissionregv1.MutatingWebhookConfiguration, *x509.CertPool) {
		t.Helper()
		got, err := configs.Get(ctx, "kscmp", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ca := got.Webhooks[0].ClientConfig.CABundle
		if n := countPEM(ca); n != 1 {
			t.Fatalf("the configuration's CA bundle holds %d certificates, want 1:\n%s", n, ca)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		return got, pool
	}
	handshake := func(name, addr string, roots *x509.CertPool) {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: service, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Errorf("%s (%s): TLS handshake as %s with the configuration's CA bundle: %v", name, addr, service, err)
			return
		}
		conn.Close()
	}
	cfg1, roots := bundle()
	for i, r := range replicas {
		handshake(fmt.Sprintf("replica %d", i+1), r.addr, roots)
	}
	secret, err := srv.Client.CoreV1().Secrets("kscmp-system").Get(ctx, "kscmp-webhook-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the shared Secret: %v", err)
	}
	if !bytes.Equal(secret.Data["ca.crt"], cfg1.Webhooks[0].ClientConfig.CABundle) {
		t.Errorf("the configuration's CA bundle is not the Secret's ca.crt")
	}
	if t.Failed() {
		t.FailNow()
	}

	// A restart reads the Secret: same CA, nothing written.
	replicas[0].stop()
	again, err := startWebhook(ctx, t, bin, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	handshake("restarted replica 1", again.addr, roots)
	handshake("replica 2", replicas[1].addr, roots)
	cfg2, _ := bundle()
	if cfg2.ResourceVersion != cfg1.ResourceVersion {
		t.Errorf("the restart rewrote the configuration (resourceVersion %s -> %s)", cfg1.ResourceVersion, cfg2.ResourceVersion)
	}
	if s, err := srv.Client.CoreV1().Secrets("kscmp-system").Get(ctx, "kscmp-webhook-tls", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	} else if s.UID != secret.UID || s.ResourceVersion != secret.ResourceVersion {
		t.Errorf("the restart replaced the Secret (uid %s -> %s, resourceVersion %s -> %s)", secret.UID, s.UID, secret.ResourceVersion, s.ResourceVersion)
	}

	// Files: the same pair from --tls-cert/--tls-key; no Secret, no patch.
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	for f, k := range map[string]string{certFile: "tls.crt", keyFile: "tls.key"} {
		if err := os.WriteFile(f, secret.Data[k], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files, err := startWebhook(ctx, t, bin, nil, "webhook", "--tls-cert", certFile, "--tls-key", keyFile, "--kubeconfig", srv.Kubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	handshake("--tls-cert/--tls-key", files.addr, roots)
	if cfg3, _ := bundle(); cfg3.ResourceVersion != cfg1.ResourceVersion {
		t.Errorf("the webhook with --tls-cert wrote the configuration (resourceVersion %s -> %s)", cfg1.ResourceVersion, cfg3.ResourceVersion)
	}
}

func ptr[T any](v T) *T { return &v }

// countPEM is the number of PEM blocks in data.
func countPEM(data []byte) int {
	n := 0
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		n++
	}
	return n
}
