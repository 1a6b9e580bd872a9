package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/internal/apitest"
)

// TestAdmissionLatency is make bench-admission: the webhook with
// KSCMP_BENCH_POLICIES policies (1,000 by default) from a real API server,
// served over TLS, answers AdmissionReviews for pod creations at 50 a
// second for 10 s; each selects 20 policies. It prints the round trip's
// p50, p99 and maximum, as the API server's call would see it (TLS
// connection kept alive, as the API server keeps it). Skipped unless
// KSCMP_BENCH_ADMISSION is set.
func TestAdmissionLatency(t *testing.T) {
	if os.Getenv("KSCMP_BENCH_ADMISSION") == "" {
		t.Skip("make bench-admission runs it")
	}
	p, _ := strconv.Atoi(os.Getenv("KSCMP_BENCH_POLICIES"))
	if p <= 0 {
		p = 1000
	}
	srv := apitest.Start(t)
	srv.InstallPolicyCRD(t)
	srv.CreateNamespace(t, "shop")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg := *srv.Config
	cfg.QPS, cfg.Burst = 500, 1000
	dyn := dynamic.NewForConfigOrDie(&cfg)
	ri := dyn.Resource(agent.PolicyResource).Namespace("shop")
	sem, errs := make(chan struct{}, 8), make(chan error, p)
	var wg sync.WaitGroup
	for j := range p {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": agent.PolicyResource.GroupVersion().String(), "kind": "KubeArmorSeccompPolicy",
				"metadata": map[string]any{"name": fmt.Sprintf("p%04d", j), "namespace": "shop"},
				"spec": map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": fmt.Sprintf("web-%d", j%50)}},
					"seccomp": map[string]any{"syscalls": []any{"read", "write", "getpid", []string{"flock", "getppid", "futex"}[j%3]}, "action": "Allow"}}}}
			if _, err := ri.Create(ctx, u, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	policies := agent.NewPolicyCache(dyn, nil)
	if !policies.Start(ctx) {
		t.Fatal("policy cache not synced")
	}
	ts := httptest.NewTLSServer(&Handler{Policies: policies})
	defer ts.Close()
	client := ts.Client()

	const rate, seconds = 50, 10
	lat := make([]time.Duration, 0, rate*seconds)
	var mu sync.Mutex
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	for i := range rate * seconds {
		<-tick.C
		body := review(t, i)
		wg.Go(func() {
			start := time.Now()
			resp, err := client.Post(ts.URL+"/mutate-pods", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			var out admissionv1.AdmissionReview
			err = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			d := time.Since(start)
			if err != nil || out.Response == nil || out.Response.Patch == nil {
				t.Errorf("request %d: no patch (%v)", i, err)
				return
			}
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(lat)
	if len(lat) == 0 {
		t.Fatal("no answers")
	}
	q := func(f float64) time.Duration { return lat[int(f*float64(len(lat)-1))] }
	fmt.Printf("admission policies=%d rate=%d/s requests=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
		p, rate, len(lat), ms(q(0.5)), ms(q(0.99)), ms(lat[len(lat)-1]))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// review is the AdmissionReview of pod i's creation in shop: two
// containers, labelled app=web-<i%50> (20 policies select it).
func review(t *testing.T, i int) []byte {
	pod := corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i), Namespace: "shop", Labels: map[string]string{"app": fmt.Sprintf("web-%d", i%50)}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox"}, {Name: "side", Image: "busybox"}}}}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: types.UID(fmt.Sprint(i)), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Namespace: "shop", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}}})
	if err != nil {
		t.Fatal(err)
	}
	return data
}
