package webhook

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// SelfSigned makes a CA and a serving certificate it signs for the DNS names
// and IP addresses in hosts, valid for a year. It returns the certificate
// to serve and the CA bundle (PEM) to put into the webhook configuration.
// A webhook with more than one replica needs them shared: SharedCertificate.
func SelfSigned(hosts []string) (tls.Certificate, []byte, error) {
	now := time.Now()
	certPEM, keyPEM, caPEM, err := issue(hosts, now, now.AddDate(1, 0, 0))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return cert, caPEM, nil
}

// issue makes a CA and a serving certificate for hosts that it signs, both
// valid from an hour before now (clock skew) to notAfter. It returns the
// PEM serving certificate, its PKCS#8 key and the CA certificate; the CA's
// key is dropped: nothing ever signs with it again, so nothing can leak it.
func issue(hosts []string, now, notAfter time.Time) (certPEM, keyPEM, caPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, nil, fmt.Errorf("webhook certificate: no host names")
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	caTmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "kscmp-webhook-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("webhook CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("webhook CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: now.Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("webhook certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}

// serial is a random 128-bit serial number, so that certificates of CAs
// made at different times never share one (RFC 5280 asks for unique ones).
// crypto/rand's Reader never fails (since Go 1.24 it would crash instead).
func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	return n.Add(n, big.NewInt(1))
}

// ServiceNames is hosts with, after each Service name NAME.NAMESPACE.svc,
// the other names a client inside the cluster may call that Service by:
// NAME, NAME.NAMESPACE and NAME.NAMESPACE.svc.cluster.local. The API server
// calls a webhook Service as NAME.NAMESPACE.svc; the others cost nothing and
// keep a clientConfig url or a debugging curl working. Duplicates go; the
// order is stable, the first host first (it becomes the common name).
func ServiceNames(hosts []string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(h string) {
		if h != "" && !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	for _, h := range hosts {
		add(h)
		if parts := strings.Split(h, "."); len(parts) == 3 && parts[2] == "svc" && parts[0] != "" && parts[1] != "" {
			add(parts[0])
			add(parts[0] + "." + parts[1])
			add(h + ".cluster.local")
		}
	}
	return out
}
