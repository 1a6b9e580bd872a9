package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/deploy/webhook"
)

// webhookFlags are the flags of kscmp webhook.
type webhookFlags struct {
	listen, certFile, keyFile, kubeconfig, configName, service, secret, leaseNamespace string
	selfSigned, aggregate                                                              bool
}

const webhookLong = `Webhook sets securityContext.seccompProfile {type: Localhost, localhostProfile:
kubearmor/<namespace>/<profile>.json} on each container of a pod that policies
select, with the names the agent writes; a profile the user set is left alone
(the API server shows a warning). TLS from --tls-cert/--tls-key, or
--self-signed: a CA and a serving certificate for --service, valid ten years,
kept in the Secret --tls-secret so that every replica serves the same one (the
first replica creates it, the others read it), and the CA patched into the
MutatingWebhookConfiguration --webhook-config. To renew the certificate, delete
the Secret and restart every replica.`

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
	f.BoolVar(&fl.selfSigned, "self-signed", false, "serve a self-signed certificate kept in --tls-secret (made by the first replica)")
	f.StringVar(&fl.service, "service", "", "with --self-signed: the names (comma-separated DNS names or IPs) the certificate is for")
	f.StringVar(&fl.secret, "tls-secret", "kscmp-system/kscmp-webhook-tls", "with --self-signed: the Secret (NAMESPACE/NAME) that holds the CA and serving certificate every replica shares")
	f.StringVar(&fl.configName, "webhook-config", "kscmp", "MutatingWebhookConfiguration to patch the CA bundle into (with --self-signed)")
	f.StringVar(&fl.kubeconfig, "kubeconfig", "", "kubeconfig; default in-cluster, $KUBECONFIG, ~/.kube/config")
	f.BoolVar(&fl.aggregate, "aggregate", true, "summarise the agents' per-node status objects into the policies' status (one replica at a time, elected through a Lease)")
	f.StringVar(&fl.leaseNamespace, "lease-namespace", "", "the namespace of the aggregator's Lease; default $POD_NAMESPACE, else kscmp-system")
	return cmd
}

// run serves the webhook until ctx is done: the certificate, the policy
// cache, the CA bundle in the webhook configuration, then HTTPS.
func (fl *webhookFlags) run(ctx context.Context) error {
	if err := fl.check(); err != nil {
		return err
	}
	cfg, err := restConfig(fl.kubeconfig)
	if err != nil {
		return usageErr("%w", err)
	}
	// The aggregator (leader) writes every policy's status once at a
	// first start: at client-go's default 5 a second, 10,000 policies
	// took about half an hour; at 50, as the agent, 200 s. One client per
	// cluster; admission makes no API calls.
	cfg.QPS, cfg.Burst = 50, 100
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	cert, caBundle, err := fl.certificate(ctx, kube)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	policies := agent.NewPolicyCache(dyn, slog.Default())
	if !policies.Start(ctx) {
		return errors.New("webhook: policies not listed")
	}
	if fl.aggregate {
		agg := agent.NewAggregator(kube, dyn, policies, agent.AggregatorOptions{
			Namespace: envDefault(fl.leaseNamespace, "POD_NAMESPACE", "kscmp-system"), Identity: os.Getenv("POD_NAME")})
		go agg.Run(ctx)
	}
	if caBundle != nil && fl.configName != "" {
		changed, err := webhook.PublishCABundle(ctx, kube, fl.configName, caBundle)
		if err != nil {
			return err
		}
		slog.Info("webhook CA bundle", "webhookConfiguration", fl.configName, "patched", changed)
	}
	return serve(ctx, &http.Server{Addr: fl.listen, Handler: &webhook.Handler{Policies: policies, Logger: slog.Default()},
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, ReadHeaderTimeout: 5 * time.Second})
}

// check refuses flag combinations before anything talks to the API server.
func (fl *webhookFlags) check() error {
	switch {
	case fl.selfSigned && fl.service == "":
		return usageErr("--self-signed needs --service (the DNS name the API server calls)")
	case fl.selfSigned:
		if ns, name, ok := strings.Cut(fl.secret, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return usageErr("--tls-secret %q: want NAMESPACE/NAME", fl.secret)
		}
	case fl.certFile == "" || fl.keyFile == "":
		return usageErr("give --tls-cert and --tls-key, or --self-signed")
	}
	return nil
}

// certificate is the serving certificate: with --self-signed the one all
// replicas share through the Secret --tls-secret (with the CA bundle to
// publish), else read from --tls-cert and --tls-key.
func (fl *webhookFlags) certificate(ctx context.Context, kube kubernetes.Interface) (tls.Certificate, []byte, error) {
	if fl.selfSigned {
		ns, name, _ := strings.Cut(fl.secret, "/")
		return webhook.SharedCertificate(ctx, kube, ns, name, strings.Split(fl.service, ","), slog.Default())
	}
	cert, err := tls.LoadX509KeyPair(fl.certFile, fl.keyFile)
	if err != nil {
		return cert, nil, invalidErr(fmt.Errorf("--tls-cert %s, --tls-key %s: %w", fl.certFile, fl.keyFile, err))
	}
	return cert, nil, nil
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
