package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Validity is how long the CA and serving certificate SharedCertificate
// makes are valid: ten years, so that a cluster never meets an expiry it
// did not plan for. To renew (or rotate after a leak), delete the Secret
// and restart every replica: the first one back makes a new pair.
const Validity = 10 * 365 * 24 * time.Hour

// renewWarning: a Secret whose certificate expires within this long is
// still served, with a warning in the log at every start.
const renewWarning = 30 * 24 * time.Hour

// SecretCAKey is the key of the Secret's data that holds the CA (PEM), next
// to corev1.TLSCertKey and corev1.TLSPrivateKeyKey (the serving pair).
const SecretCAKey = "ca.crt"

// ErrBadSecret: the webhook's TLS Secret exists but cannot serve hosts (a
// key is missing or unparsable, the pair does not match, the certificate is
// not signed by the CA, does not name a host, or has expired).
var ErrBadSecret = errors.New("webhook TLS Secret unusable")

// SharedCertificate returns the serving certificate and CA bundle (PEM) kept
// in the Secret namespace/name, so that every replica of the webhook serves
// one certificate that the one CA bundle in the webhook configuration
// verifies. When the Secret does not exist it makes a CA and a certificate
// for ServiceNames(hosts), valid for Validity, and creates it; when another
// replica created it first (AlreadyExists), it takes that one. It never
// updates a Secret: one that cannot serve hosts is an error wrapping
// ErrBadSecret, which says to delete it.
func SharedCertificate(ctx context.Context, kube kubernetes.Interface, namespace, name string, hosts []string, log *slog.Logger) (tls.Certificate, []byte, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	secrets := kube.CoreV1().Secrets(namespace)
	s, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		now := time.Now()
		var certPEM, keyPEM, caPEM []byte
		if certPEM, keyPEM, caPEM, err = issue(ServiceNames(hosts), now, now.Add(Validity)); err != nil {
			return tls.Certificate{}, nil, err
		}
		s, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace,
				Labels: map[string]string{"app.kubernetes.io/name": "kscmp-webhook", "app.kubernetes.io/part-of": "kscmp"}},
			Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM, SecretCAKey: caPEM},
		}, metav1.CreateOptions{})
		switch {
		case err == nil:
			log.Info("webhook TLS Secret created", "secret", namespace+"/"+name, "notAfter", now.Add(Validity).UTC().Format(time.RFC3339))
		case apierrors.IsAlreadyExists(err):
			// Another replica won the race: serve its pair, not ours.
			s, err = secrets.Get(ctx, name, metav1.GetOptions{})
		}
	}
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("webhook TLS Secret %s/%s: %w", namespace, name, err)
	}
	return fromSecret(s, hosts, time.Now(), log)
}

// fromSecret checks that the Secret's pair is signed by its CA, valid at
// now and names every host, and returns it with the CA bundle.
func fromSecret(s *corev1.Secret, hosts []string, now time.Time, log *slog.Logger) (tls.Certificate, []byte, error) {
	where := s.Namespace + "/" + s.Name
	bad := func(format string, args ...any) (tls.Certificate, []byte, error) {
		return tls.Certificate{}, nil, fmt.Errorf("webhook TLS Secret %s: %s: %w (delete it and restart the webhook to make a new one)",
			where, fmt.Sprintf(format, args...), ErrBadSecret)
	}
	for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, SecretCAKey} {
		if len(s.Data[k]) == 0 {
			return bad("data[%s] is missing", k)
		}
	}
	cert, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return bad("data[%s], data[%s]: %v", corev1.TLSCertKey, corev1.TLSPrivateKeyKey, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.Data[SecretCAKey]) {
		return bad("data[%s]: no PEM certificate", SecretCAKey)
	}
	leaf := cert.Leaf
	for _, h := range hosts {
		opts := x509.VerifyOptions{DNSName: h, Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if _, err := leaf.Verify(opts); err != nil {
			return bad("data[%s] does not verify for %s: %v", corev1.TLSCertKey, h, err)
		}
	}
	if left := leaf.NotAfter.Sub(now); left < renewWarning {
		log.Warn("webhook certificate expires soon: delete its Secret and restart the webhook to renew it",
			"secret", where, "notAfter", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return cert, bytes.Clone(s.Data[SecretCAKey]), nil
}

// PublishCABundle makes ca the CA bundle of every webhook of the
// MutatingWebhookConfiguration name. It is idempotent: when every bundle
// already equals ca it writes nothing and returns false. Replicas starting
// together race on the update; a conflict is retried on a fresh read, which
// then finds the bundle the other replica wrote (the same one).
func PublishCABundle(ctx context.Context, kube kubernetes.Interface, name string, ca []byte) (changed bool, err error) {
	configs := kube.AdmissionregistrationV1().MutatingWebhookConfigurations()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		whc, err := configs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		changed = false
		for i := range whc.Webhooks {
			if !bytes.Equal(whc.Webhooks[i].ClientConfig.CABundle, ca) {
				whc.Webhooks[i].ClientConfig.CABundle = ca
				changed = true
			}
		}
		if !changed {
			return nil
		}
		_, err = configs.Update(ctx, whc, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return false, fmt.Errorf("webhook configuration %s: CA bundle: %w", name, err)
	}
	return changed, nil
}
