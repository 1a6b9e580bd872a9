package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// TestKustomizationImage: deploy/manifests names the image through
// kustomize's images: (name kscmp), and every container of every resource
// runs an image of that name, so `kustomize edit set image kscmp=…`
// repoints them all; the default is the image `make image` builds,
// kscmp:latest.
func TestKustomizationImage(t *testing.T) {
	dir := filepath.Join(testenv.ModuleRoot(t), "deploy", "manifests")
	var k struct {
		Resources []string `json:"resources"`
		Images    []struct {
			Name    string `json:"name"`
			NewName string `json:"newName"`
			NewTag  string `json:"newTag"`
		} `json:"images"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatal(err)
	}
	if len(k.Images) != 1 || k.Images[0].Name != "kscmp" || k.Images[0].NewName != "kscmp" || k.Images[0].NewTag != "latest" {
		t.Errorf("kustomization.yaml images: %+v; want one: name kscmp, newName kscmp, newTag latest", k.Images)
	}
	type container struct {
		Name  string `json:"name"`
		Image string `json:"image"`
	}
	containers := 0
	for _, r := range k.Resources {
		data, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(data), "\n---") {
			var obj struct {
				Kind string `json:"kind"`
				Spec struct {
					Template struct {
						Spec struct {
							Containers     []container `json:"containers"`
							InitContainers []container `json:"initContainers"`
						} `json:"spec"`
					} `json:"template"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatalf("%s document %d: %v", r, i+1, err)
			}
			pod := obj.Spec.Template.Spec
			for _, c := range append(pod.InitContainers, pod.Containers...) {
				containers++
				if repo, _, _ := strings.Cut(c.Image, ":"); repo != "kscmp" {
					t.Errorf("%s %s container %s: image %q is not named kscmp: kustomize's images: would miss it", r, obj.Kind, c.Name, c.Image)
				}
			}
		}
	}
	if containers < 3 {
		t.Errorf("only %d containers in the manifests (agent init, agent, webhook)", containers)
	}
}
