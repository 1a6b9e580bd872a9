package api

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzParse checks that the parser never panics, that every policy it
// accepts is valid, that every error names the file, and that an accepted
// policy survives a round trip through its CRD form unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte(wordpressCRD))
	f.Add([]byte(wordpressFlat))
	f.Add([]byte(wordpressCRD + "---\n" + wordpressFlat))
	f.Add([]byte("kind: KubeArmorSeccompPolicy\nname: a\nnamespace: b\nlabels: {app: x, tier: y}\ncontainers: [c]\nrules:\n- {syscalls: [read], action: Allow}\n- {syscalls: [ptrace], action: Kill}\n"))
	f.Add([]byte("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: a, namespace: b}\nspec:\n  selector:\n    matchExpressions: [{key: app, operator: In, values: [a, b]}]\n  seccomp: {syscalls: [mkdir], action: Audit}\n"))
	f.Add([]byte(wordpressFlat + "defaultAction: Audit\n"))
	f.Add([]byte("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: a, namespace: b}\nspec:\n  selector: {systemdUnits: [x]}\n  seccomp: {rules: [{syscalls: [read], action: Allow}, {syscalls: [mkdir], action: Kill}], defaultAction: Audit}\n"))
	f.Add([]byte(argsFlat))
	f.Add([]byte("kind: KubeArmorSeccompPolicy\nname: a\nnamespace: b\napp: x\narch: [x86]\nrules:\n- {syscalls: [personality], action: Allow, args: [{index: 0, operator: LessEqual, value: \"0xffffffff\"}]}\n- {syscalls: [socket], action: Kill, args: [{index: 0, operator: NotEqual, value: AF_UNIX|AF_INET}, {index: 1, operator: MaskedEqual, mask: 18446744073709551615, value: 1}]}\n"))
	f.Add([]byte("- not a mapping\n"))
	f.Add([]byte("kind: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := Parse(bytes.NewReader(data), "fuzz.yaml")
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error is not a non-empty ErrorList: %v", err)
			}
			for _, e := range list {
				if e.File != "fuzz.yaml" || e.Detail == "" {
					t.Fatalf("error without file or detail: %#v", e)
				}
			}
		}
		for _, d := range docs {
			if errs := Validate(d.Policy); len(errs) > 0 {
				t.Fatalf("accepted an invalid policy: %v", errs)
			}
			out, err := yaml.Marshal(d.Policy)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Parse(bytes.NewReader(out), "again.yaml")
			if err != nil {
				t.Fatalf("CRD form of an accepted policy is refused: %v\n%s", err, out)
			}
			if len(again) != 1 || !reflect.DeepEqual(again[0].Policy.Spec, d.Policy.Spec) || again[0].Policy.Key() != d.Policy.Key() {
				t.Fatalf("round trip changed the policy:\n%s", out)
			}
			if strings.Contains(d.Policy.Name, "/") || strings.Contains(d.Policy.Namespace, "/") {
				t.Fatalf("a name with a slash was accepted: %q", d.Policy.Key())
			}
		}
	})
}
