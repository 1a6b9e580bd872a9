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

func newWebhookCmd() *cobra.Command {
	var (
		listen, certFile, keyFile, kubecfg, configName, service string
		selfSigned                                              bool
	)
	cmd := &cobra.Command{
		Use:   "webhook --self-signed --service NAME.NAMESPACE.svc --webhook-config kscmp",
		Short: "Bind pods to their merged profiles (mutating admission webhook)",
		Long: `Webhook sets securityContext.seccompProfile {type: Localhost, localhostProfile:
kubearmor/<namespace>/<profile>.json} on each container of a pod that policies
select, with the names the agent writes; a profile the user set is left alone
(the API server shows a warning). TLS from --tls-cert/--tls-key, or
--self-signed: a CA and certificate made at start, the CA bundle patched into
the MutatingWebhookConfiguration --webhook-config.`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cert tls.Certificate
			var caBundle []byte
			var err error
			switch {
			case selfSigned && service == "":
				return usageErr("--self-signed needs --service (the DNS name the API server calls)")
			case selfSigned:
				cert, caBundle, err = webhook.SelfSigned(strings.Split(service, ","))
			case certFile != "" && keyFile != "":
				cert, err = tls.LoadX509KeyPair(certFile, keyFile)
			default:
				return usageErr("give --tls-cert and --tls-key, or --self-signed")
			}
			if err != nil {
				return err
			}
			cfg, err := restConfig(kubecfg)
			if err != nil {
				return err
			}
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				return err
			}
			policies := agent.NewPolicyCache(dyn, slog.Default())
			if !policies.Start(cmd.Context()) {
				return errors.New("webhook: policies not listed")
			}
			if caBundle != nil && configName != "" {
				kube, err := kubernetes.NewForConfig(cfg)
				if err != nil {
					return err
				}
				if err := patchCABundle(cmd.Context(), kube, configName, caBundle); err != nil {
					return err
				}
			}
			srv := &http.Server{Addr: listen, Handler: &webhook.Handler{Policies: policies, Logger: slog.Default()},
				TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, ReadHeaderTimeout: 5 * time.Second}
			go func() {
				<-cmd.Context().Done()
				shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(shutdown)
			}()
			slog.Info("webhook serving", "listen", listen)
			if err := srv.ListenAndServeTLS("", ""); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", ":8443", "address to serve HTTPS on")
	f.StringVar(&certFile, "tls-cert", "", "serving certificate (PEM)")
	f.StringVar(&keyFile, "tls-key", "", "serving key (PEM)")
	f.BoolVar(&selfSigned, "self-signed", false, "make a CA and a serving certificate at start")
	f.StringVar(&service, "service", "", "with --self-signed: the names (comma-separated DNS names or IPs) the certificate is for")
	f.StringVar(&configName, "webhook-config", "kscmp", "MutatingWebhookConfiguration to patch the CA bundle into (with --self-signed)")
	f.StringVar(&kubecfg, "kubeconfig", "", "kubeconfig; default in-cluster, $KUBECONFIG, ~/.kube/config")
	return cmd
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
