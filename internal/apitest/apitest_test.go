package apitest

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestServer(t *testing.T) {
	s := Start(t)
	ctx := testContext(t)

	info, err := s.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if info.GitVersion != version() {
		t.Errorf("server version %q, want %q", info.GitVersion, version())
	}

	t.Run("Pods", func(t *testing.T) {
		const ns = "apitest-pods"
		s.CreateNamespace(t, ns)
		cs := s.Client
		for _, node := range []string{"node-a", "node-b"} {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "on-" + node},
				Spec: corev1.PodSpec{
					NodeName:   node,
					Containers: []corev1.Container{{Name: "main", Image: "busybox"}},
				},
			}
			got, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("create pod on %s: %v", node, err)
			}
			if got.Spec.ServiceAccountName != "default" {
				t.Errorf("pod on %s: serviceAccountName %q, want default (set by the ServiceAccount admission plugin)", node, got.Spec.ServiceAccountName)
			}
		}
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-a"})
		if err != nil {
			t.Fatalf("list pods: %v", err)
		}
		if len(list.Items) != 1 || list.Items[0].Name != "on-node-a" {
			var names []string
			for _, p := range list.Items {
				names = append(names, p.Name)
			}
			t.Fatalf("pods with spec.nodeName=node-a: %v, want [on-node-a]", names)
		}
	})

	t.Run("CustomResource", func(t *testing.T) {
		crd := &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: "widgets.test.kscmp.io"},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: "test.kscmp.io",
				Names: apiextensionsv1.CustomResourceDefinitionNames{
					Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList",
				},
				Scope: apiextensionsv1.NamespaceScoped,
				Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
					Name: "v1alpha1", Served: true, Storage: true,
					Schema: &apiextensionsv1.CustomResourceValidation{
						OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
							Type: "object",
							Properties: map[string]apiextensionsv1.JSONSchemaProps{
								"spec": {
									Type: "object",
									Properties: map[string]apiextensionsv1.JSONSchemaProps{
										"size": {Type: "integer"},
									},
								},
							},
						},
					},
				}},
			},
		}
		ext, err := apiextensionsclient.NewForConfig(s.Config)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CRD: %v", err)
		}
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, c := range got.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("CRD not Established: %v", err)
		}

		const ns = "apitest-crd"
		s.CreateNamespace(t, ns)
		dyn, err := dynamic.NewForConfig(s.Config)
		if err != nil {
			t.Fatal(err)
		}
		gvr := schema.GroupVersionResource{Group: "test.kscmp.io", Version: "v1alpha1", Resource: "widgets"}
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "test.kscmp.io/v1alpha1",
			"kind":       "Widget",
			"metadata":   map[string]any{"name": "w1"},
			"spec":       map[string]any{"size": int64(3)},
		}}
		// Established means served, but the discovery and REST handlers of
		// a new CRD can still lag a moment: retry NotFound briefly.
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := dyn.Resource(gvr).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return err == nil, err
		})
		if err != nil {
			t.Fatalf("create widget: %v", err)
		}
		got, err := dyn.Resource(gvr).Namespace(ns).Get(ctx, "w1", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get widget: %v", err)
		}
		if size, _, _ := unstructured.NestedInt64(got.Object, "spec", "size"); size != 3 {
			t.Errorf("widget spec.size = %d, want 3", size)
		}
	})

	t.Run("RBAC", func(t *testing.T) {
		// A user without bindings is authenticated but may not list pods.
		cs, err := kubernetes.NewForConfig(s.UserConfig(t, "nobody"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = cs.CoreV1().Pods(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("list pods as an unbound user: %v, want Forbidden", err)
		}
	})

	t.Run("Kubeconfig", func(t *testing.T) {
		path := s.Kubeconfig(t)
		if _, err := os.Stat(path); err != nil {
			t.Fatal(err)
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			t.Fatalf("load kubeconfig: %v", err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{}); err != nil {
			t.Fatalf("get namespace default with the kubeconfig: %v", err)
		}
	})
}
