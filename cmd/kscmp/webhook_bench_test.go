package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// BenchmarkWebhook is the webhook under BenchmarkAgent's load (newBenchLoad)
// as the Deployment runs it: kscmp webhook --self-signed with its shared
// Secret and webhook configuration, and the aggregator (the only
// candidate, so the leader), whose node-a status object lists the 1,000
// policies that select pods. Per op: a start until /readyz answers, a burst
// of one AdmissionReview per pod (16 at a time, as the API server's calls
// come in parallel), then until the aggregator has written every policy's
// status for its generation. Reported: ready-ms, burst-ms, status-ms,
// rss-MiB (the webhook's peak resident memory).
func BenchmarkWebhook(b *testing.B) {
	l := newBenchLoad(b)
	ctx, srv := l.ctx, l.srv
	srv.CreateNamespace(b, "kscmp-system")
	none, path := admregv1.SideEffectClassNone, "/mutate-pods"
	if _, err := srv.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "kscmp"},
		Webhooks: []admregv1.MutatingWebhook{{Name: "pods.kscmp.kubearmor.com", AdmissionReviewVersions: []string{"v1"}, SideEffects: &none,
			// No namespace of the load opts in: the API server never calls it.
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kscmp.kubearmor.com/enforce": "true"}},
			ClientConfig:      admregv1.WebhookClientConfig{Service: &admregv1.ServiceReference{Namespace: "kscmp-system", Name: "kscmp-webhook", Path: &path}}}},
	}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	// node-a's agent has installed the 1,000 policies that select its pods.
	st := api.KubeArmorSeccompNodeStatus{}
	for i := range 1000 {
		st.Policies = append(st.Policies, api.NodePolicy{Policy: fmt.Sprintf("bench/p%d", i), Generation: 1})
	}
	st.Installed = int32(len(st.Policies))
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
	if err != nil {
		b.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(api.APIVersion)
	u.SetKind(api.NodeStatusKind)
	u.SetName("node-a")
	dyn := dynamic.NewForConfigOrDie(srv.Config)
	if _, err := dyn.Resource(agent.NodeStatusResource).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}

	reviews := make([][]byte, len(l.pods))
	for i, p := range l.pods {
		p.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
		raw, err := json.Marshal(p)
		if err != nil {
			b.Fatal(err)
		}
		reviews[i], err = json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: types.UID(fmt.Sprint(i)), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: "bench", Operation: admissionv1.Create,
				Object: runtime.RawExtension{Raw: raw}}})
		if err != nil {
			b.Fatal(err)
		}
	}
	// Every policy's status is written for its generation.
	statused := func() int {
		n, cont := 0, ""
		for {
			list, err := l.policies.List(ctx, metav1.ListOptions{Limit: 1000, Continue: cont})
			if err != nil {
				b.Fatal(err)
			}
			for _, p := range list.Items {
				if g, ok, _ := unstructured.NestedInt64(p.Object, "status", "observedGeneration"); ok && g == p.GetGeneration() {
					n++
				}
			}
			if cont = list.GetContinue(); cont == "" {
				return n
			}
		}
	}

	kubeconfig := srv.Kubeconfig(b)
	run := func(b *testing.B, bin string, env []string) {
		var ready, burst, status, rss float64
		b.ResetTimer()
		for b.Loop() {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			start := time.Now()
			cmd := exec.CommandContext(ctx, bin, "webhook", "--kubeconfig", kubeconfig, "--listen", addr,
				"--self-signed", "--tls-secret", "kscmp-system/kscmp-webhook-tls", "--webhook-config", "kscmp", "--service", "127.0.0.1")
			cmd.Env = append(append(cmd.Environ(), "POD_NAMESPACE=kscmp-system", "POD_NAME=kscmp-webhook-bench"), env...)
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			// The CA bundle is published before the server listens.
			var client *http.Client
			for {
				if time.Since(start) > 2*time.Minute {
					b.Fatal("webhook not ready")
				}
				time.Sleep(5 * time.Millisecond)
				if client == nil {
					whc, err := srv.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "kscmp", metav1.GetOptions{})
					if err != nil || len(whc.Webhooks[0].ClientConfig.CABundle) == 0 {
						continue
					}
					pool := x509.NewCertPool()
					pool.AppendCertsFromPEM(whc.Webhooks[0].ClientConfig.CABundle)
					client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16,
						TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
				}
				if resp, err := client.Get("https://" + addr + "/readyz"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
			}
			ready += float64(time.Since(start).Milliseconds())

			start = time.Now()
			testenv.Parallel(b, len(reviews), 16, func(i int) error {
				resp, err := client.Post("https://"+addr+"/mutate-pods", "application/json", bytes.NewReader(reviews[i]))
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					return err
				}
				var out admissionv1.AdmissionReview
				if err := json.Unmarshal(body, &out); err != nil || out.Response == nil || len(out.Response.Patch) == 0 {
					return fmt.Errorf("pod-%d: no patch in the answer (%v): %s", i, err, body)
				}
				return nil
			})
			burst += float64(time.Since(start).Milliseconds())

			// The aggregator writes the statuses at the client's default rate
			// (5 a second): 10,000 take half an hour. Counted over 30 s.
			before := statused()
			time.Sleep(30 * time.Second)
			status += float64(statused()-before) / 30
			rss = max(rss, peakRSS(b, cmd.Process.Pid))
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
		b.ReportMetric(ready/float64(b.N), "ready-ms")
		b.ReportMetric(burst/float64(b.N), "burst-ms")
		b.ReportMetric(status/float64(b.N), "statuses-per-s")
		b.ReportMetric(rss, "rss-MiB")
	}
	deployed := webhookEnv(b)
	if rev := os.Getenv("KSCMP_BENCH_BEFORE"); rev != "" {
		before := buildKscmpAt(b, rev)
		b.Run("before="+rev, func(b *testing.B) { run(b, before, nil) })
	}
	bin := buildKscmp(b)
	b.Run("no-GOMEMLIMIT", func(b *testing.B) { run(b, bin, nil) })
	b.Run("deployed", func(b *testing.B) { run(b, bin, deployed) })
}

// webhookEnv is the webhook container's literal environment in the
// Deployment (deploy/manifests/webhook/deployment.yaml), as NAME=value.
func webhookEnv(tb testing.TB) []string {
	path := filepath.Join(testenv.ModuleRoot(tb), "deploy/manifests/webhook/deployment.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var d appsv1.Deployment
	if err := yaml.Unmarshal(bytes.SplitN(data, []byte("\n---"), 2)[0], &d); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	var env []string
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom == nil {
			env = append(env, e.Name+"="+e.Value)
		}
	}
	return env
}

// buildKscmpAt builds kscmp from the repository's commit rev (git archive),
// to compare with the tree under test.
func buildKscmpAt(tb testing.TB, rev string) string {
	dir := tb.TempDir()
	archive := exec.Command("sh", "-c", `git archive "$1" | tar -x -C "$2"`, "sh", rev, dir)
	archive.Dir = testenv.ModuleRoot(tb)
	if out, err := archive.CombinedOutput(); err != nil {
		tb.Fatalf("git archive %s: %v\n%s", rev, err, out)
	}
	bin := filepath.Join(dir, "kscmp.bin")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kscmp")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("go build at %s: %v\n%s", rev, err, out)
	}
	return bin
}
