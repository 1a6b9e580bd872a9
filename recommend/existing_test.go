package recommend

import (
	"os"
	"path/filepath"
	"testing"
)

// TestExisting: a target directory that is not there yet, or has no policy
// file, has no reviewed policies; one with policies has them; a broken
// policy is an error, not "none" (a new recording must not replace it).
func TestExisting(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{filepath.Join(dir, "missing"), dir} {
		if docs, err := Existing(d, 0); err != nil || docs != nil {
			t.Errorf("%s: %v, %v; want none", d, docs, err)
		}
	}
	policy := "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  seccomp: {syscalls: [read], action: Allow}\n"
	os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(policy), 0o644)
	if docs, err := Existing(dir, 0); err != nil || len(docs) != 1 || docs[0].Policy.Key() != "shop/web" {
		t.Errorf("one policy: %v, %v", docs, err)
	}
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("kind: KubeArmorSeccompPolicy\nname: x\n"), 0o644)
	if _, err := Existing(dir, 0); err == nil {
		t.Error("a broken policy is not reported")
	}
}
