package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/deploy/webhook"
)

// webhookFlags are the flags of kscmp webhook.
type webhookFlags struct {
	listen, certFile, keyFile, kubeconfig, configName, service string
	selfSigned                                                 bool
}

const webhookLong = `Webhook sets securityContext.seccompProfile {type: Localhost, localhostProfile:
kubearmor/<namespace>/<profile>.json} on each container of a pod that policies
select, with the names the agent writes; a profile the user set is left alone
(the API server shows a warning). TLS from --tls-cert/--tls-key, or
--self-signed: a CA and certificate made at start, the CA bundle patched into
the MutatingWebhookConfiguration --webhook-config.`

func newWebhookCmd() *cobra.Command {
	var fl webhookFlags
	cmd := &cobra.Command{
		Use:   "webhook --self-signed --service NAME.NAMESPACE.svc --webhook-config kscmp",
		Short: "Bind pods to their merged profiles (mutating admission webhook)",
		Long:  webhookLong,
		Args:  argsUsage(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return fl.run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.StringVar(&fl.listen, "listen", ":8443", "address to serve HTTPS on")
	f.StringVar(&fl.certFile, "tls-cert", "", "serving certificate (PEM)")
	f.StringVar(&fl.keyFile, "tls-key", "", "serving key (PEM)")
	f.BoolVar(&fl.selfSigned, "self-signed", false, "make a CA and a serving certificate at start")
	f.StringVar(&fl.service, "service", "", "with --self-signed: the names (comma-separated DNS names or IPs) the certificate is for")
	f.StringVar(&fl.configName, "webhook-config", "kscmp", "MutatingWebhookConfiguration to patch the CA bundle into (with --self-signed)")
	f.StringVar(&fl.kubeconfig, "kubeconfig", "", "kubeconfig; default in-cluster, $KUBECONFIG, ~/.kube/config")
	return cmd
}

// run serves the webhook until ctx is done: the certificate, the policy
// cache, the CA bundle in the webhook configuration, then HTTPS.
func (fl *webhookFlags) run(ctx context.Context) error {
	cert, caBundle, err := fl.certificate()
	if err != nil {
		return err
	}
	cfg, err := restConfig(fl.kubeconfig)
	if err != nil {
		return usageErr("%w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	policies := agent.NewPolicyCache(dyn, slog.Default())
	if !policies.Start(ctx) {
		return errors.New("webhook: policies not listed")
	}
	if caBundle != nil && fl.configName != "" {
		kube, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		if err := patchCABundle(ctx, kube, fl.configName, caBundle); err != nil {
			return err
		}
	}
	return serve(ctx, &http.Server{Addr: fl.listen, Handler: &webhook.Handler{Policies: policies, Logger: slog.Default()},
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, ReadHeaderTimeout: 5 * time.Second})
}

// certificate is the serving certificate: made at start with --self-signed
// (with the CA bundle to publish), else read from --tls-cert and --tls-key.
func (fl *webhookFlags) certificate() (tls.Certificate, []byte, error) {
	switch {
	case fl.selfSigned && fl.service == "":
		return tls.Certificate{}, nil, usageErr("--self-signed needs --service (the DNS name the API server calls)")
	case fl.selfSigned:
		return webhook.SelfSigned(strings.Split(fl.service, ","))
	case fl.certFile != "" && fl.keyFile != "":
		cert, err := tls.LoadX509KeyPair(fl.certFile, fl.keyFile)
		if err != nil {
			return cert, nil, invalidErr(fmt.Errorf("--tls-cert %s, --tls-key %s: %w", fl.certFile, fl.keyFile, err))
		}
		return cert, nil, nil
	}
	return tls.Certificate{}, nil, usageErr("give --tls-cert and --tls-key, or --self-signed")
}

// serve runs srv until ctx is done, then shuts it down, giving requests in
// flight five seconds.
func serve(ctx context.Context, srv *http.Server) error {
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	slog.Info("webhook serving", "listen", srv.Addr)
	if err := srv.ListenAndServeTLS("", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// patchCABundle puts the CA bundle into every webhook of the configuration.
func patchCABundle(ctx context.Context, kube kubernetes.Interface, name string, ca []byte) error {
	whc, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("webhook configuration %s: %w", name, err)
	}
	for i := range whc.Webhooks {
		whc.Webhooks[i].ClientConfig.CABundle = ca
	}
	if _, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, whc, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("webhook configuration %s: patch CA bundle: %w", name, err)
	}
	return nil
}
