package webhook

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/kubearmor/kscmp/internal/apitest"
)

const (
	testService = "kscmp-webhook.kscmp-system.svc"
	testNS      = "kscmp-system"
	testSecret  = "kscmp-webhook-tls"
	webhookUser = "system:serviceaccount:kscmp-system:kscmp-webhook"
)

// applyWebhookManifests creates the webhook's RBAC and configuration from
// deploy/manifests/webhook, as kubectl apply -k would.
func applyWebhookManifests(t *testing.T, srv *apitest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.CreateNamespace(t, testNS)
	for _, f := range []string{"../manifests/webhook/rbac.yaml", "../manifests/webhook/mutatingwebhook.yaml"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			c := srv.Client
			switch o := obj.(type) {
			case *corev1.ServiceAccount:
				_, err = c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.ClusterRole:
				_, err = c.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.ClusterRoleBinding:
				_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.Role:
				_, err = c.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.RoleBinding:
				_, err = c.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *admissionregv1.MutatingWebhookConfiguration:
				_, err = c.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, o, metav1.CreateOptions{})
			default:
				t.Fatalf("%s: unexpected %T", f, obj)
			}
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("%s: %v", f, err)
			}
		}
	}
}

// TestWebhookSharedCertificate: eight replicas start at once, each as the
// webhook's ServiceAccount with only the manifests' RBAC: one Secret is
// created, every replica serves its pair, the configuration holds its CA,
// and each certificate verifies for every name of the Service. The
// ServiceAccount reads no other Secret and changes none.
func TestWebhookSharedCertificate(t *testing.T) {
	srv := apitest.Start(t)
	applyWebhookManifests(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kube := kubernetes.NewForConfigOrDie(srv.UserConfig(t, webhookUser, "system:serviceaccounts", "system:serviceaccounts:"+testNS))

	type result struct {
		cert tls.Certificate
		ca   []byte
		err  error
	}
	results := make([]result, 8)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			r := &results[i]
			if r.cert, r.ca, r.err = SharedCertificate(ctx, kube, testNS, testSecret, []string{testService}, nil); r.err == nil {
				_, r.err = PublishCABundle(ctx, kube, "kscmp", r.ca)
			}
		})
	}
	wg.Wait()
	whc, err := srv.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "kscmp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bundle := whc.Webhooks[0].ClientConfig.CABundle
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		t.Fatalf("no CA bundle in the configuration")
	}
	for i, r := range results {
		if r.err != nil {
			t.Errorf("replica %d: %v", i, r.err)
			continue
		}
		if !bytes.Equal(r.ca, bundle) {
			t.Errorf("replica %d has a CA of its own", i)
		}
		for _, name := range ServiceNames([]string{testService}) {
			if _, err := r.cert.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("replica %d's certificate for %s: %v", i, name, err)
			}
		}
	}
	if left := time.Until(results[0].cert.Leaf.NotAfter); left < Validity-2*time.Hour {
		t.Errorf("the certificate is valid for %s more, want about %s", left, Validity)
	}

	// Least privilege: only its own Secret, only in its namespace, read-only
	// once it exists.
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: testNS}}
	if _, err := srv.Client.CoreV1().Secrets(testNS).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secrets := kube.CoreV1().Secrets(testNS)
	s, _ := srv.Client.CoreV1().Secrets(testNS).Get(ctx, testSecret, metav1.GetOptions{})
	for what, err := range map[string]error{
		"get another Secret": func() error { _, err := secrets.Get(ctx, "other", metav1.GetOptions{}); return err }(),
		"list Secrets":       func() error { _, err := secrets.List(ctx, metav1.ListOptions{}); return err }(),
		"update its Secret":  func() error { _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); return err }(),
		"delete its Secret":  secrets.Delete(ctx, testSecret, metav1.DeleteOptions{}),
		"create in default": func() error {
			_, err := kube.CoreV1().Secrets("default").Create(ctx, other, metav1.CreateOptions{})
			return err
		}(),
		"get in another namespace": func() error {
			_, err := kube.CoreV1().Secrets("default").Get(ctx, testSecret, metav1.GetOptions{})
			return err
		}(),
	} {
		if !apierrors.IsForbidden(err) {
			t.Errorf("the webhook's ServiceAccount may %s: %v", what, err)
		}
	}
}

// raceTransport creates the Secret as another replica would, right after
// the first GET of it answered 404: the caller then loses the race.
type raceTransport struct {
	next   http.RoundTripper
	winner func()
	once   sync.Once
}

func (r *raceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err == nil && req.Method == http.MethodGet && resp.StatusCode == http.StatusNotFound && strings.HasSuffix(req.URL.Path, "/secrets/"+testSecret) {
		r.once.Do(r.winner)
	}
	return resp, err
}

// TestWebhookSharedCertificateLosesRace: a replica that finds no Secret but
// whose create meets AlreadyExists serves the winner's pair and CA, not the
// ones it made.
func TestWebhookSharedCertificateLosesRace(t *testing.T) {
	srv := apitest.Start(t)
	applyWebhookManifests(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var winnerCA []byte
	cfg := srv.UserConfig(t, webhookUser, "system:serviceaccounts", "system:serviceaccounts:"+testNS)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return &raceTransport{next: rt, winner: func() {
			var err error
			if _, winnerCA, err = SharedCertificate(ctx, srv.Client, testNS, testSecret, []string{testService}, nil); err != nil {
				t.Errorf("the winner: %v", err)
			}
		}}
	}
	_, ca, err := SharedCertificate(ctx, kubernetes.NewForConfigOrDie(cfg), testNS, testSecret, []string{testService}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if winnerCA == nil || !bytes.Equal(ca, winnerCA) {
		t.Errorf("the loser serves a CA of its own (winner ran: %v)", winnerCA != nil)
	}
}

// TestWebhookSecretRefused: a Secret that cannot serve is an error wrapping
// ErrBadSecret, never served: a key missing, another host, expired, a
// certificate another CA signed.
func TestWebhookSecretRefused(t *testing.T) {
	now := time.Now()
	certPEM, keyPEM, caPEM, err := issue(ServiceNames([]string{testService}), now, now.Add(Validity))
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, otherCA, err := issue([]string{testService}, now, now.Add(Validity))
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	secret := func(cert, key, ca []byte) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: testSecret, Namespace: testNS},
			Data: map[string][]byte{corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: key, SecretCAKey: ca}}
	}
	if _, ca, err := fromSecret(secret(certPEM, keyPEM, caPEM), []string{testService, "kscmp-webhook"}, now, quiet); err != nil || !bytes.Equal(ca, caPEM) {
		t.Fatalf("a good Secret: %v", err)
	}
	for name, c := range map[string]struct {
		s     *corev1.Secret
		hosts []string
		at    time.Time
	}{
		"no ca.crt":    {secret(certPEM, keyPEM, nil), []string{testService}, now},
		"another host": {secret(certPEM, keyPEM, caPEM), []string{"other.kscmp-system.svc"}, now},
		"expired":      {secret(certPEM, keyPEM, caPEM), []string{testService}, now.Add(Validity + time.Hour)},
		"another CA":   {secret(certPEM, keyPEM, otherCA), []string{testService}, now},
		"key mismatch": {secret(certPEM, otherKey, caPEM), []string{testService}, now},
	} {
		if _, _, err := fromSecret(c.s, c.hosts, c.at, quiet); !errors.Is(err, ErrBadSecret) {
			t.Errorf("%s: %v, want ErrBadSecret", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
