package api

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// argsFlat is a flat policy with argument conditions: clone and unshare
// without new user or network namespaces, socket for three families.
const argsFlat = `kind: KubeArmorSeccompPolicy
name: no-userns
namespace: demo
app: web
rules:
- syscalls: [clone, unshare]
  action: Allow
  args: [{index: 0, operator: MaskedEqual, mask: CLONE_NEWUSER|CLONE_NEWNET, value: 0}]
- syscalls: [socket]
  action: Allow
  args: [{index: 0, operator: Equal, value: AF_INET}]
- syscalls: [socket]
  action: Allow
  args: [{index: 0, operator: Equal, value: 10}]
- syscalls: [read, write]
  action: Allow
- syscalls: [write]
  action: Block
  args: [{index: 0, operator: GreaterThan, value: "0x100"}]
`

// TestParseArgs reads conditions in the flat form, resolves their symbols
// and numbers, and writes them back in the CRD form the same.
func TestParseArgs(t *testing.T) {
	docs, err := Parse(strings.NewReader(argsFlat), "args.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rules := docs[0].Policy.Spec.Seccomp.Rules
	got := rules[0].Args[0].Resolve()
	if got != (Resolved{Index: 0, Operator: OpMaskedEqual, Mask: 0x50000000, Value: 0}) {
		t.Errorf("clone condition: %+v", got)
	}
	if v := rules[2].Args[0].Resolve().Value; v != 10 {
		t.Errorf("numeric value: %d", v)
	}
	if v := rules[4].Args[0].Resolve(); v.Value != 0x100 || v.String() != "arg0 > 0x100" {
		t.Errorf("hex value: %+v %s", v, v)
	}
	out, err := yaml.Marshal(docs[0].Policy)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("value: 0\n")) || !bytes.Contains(out, []byte("mask: CLONE_NEWUSER|CLONE_NEWNET")) {
		t.Errorf("CRD form:\n%s", out)
	}
	again, err := Parse(bytes.NewReader(out), "again.yaml")
	if err != nil || len(again[0].Policy.Spec.Seccomp.Rules[0].Args) != 1 {
		t.Fatalf("round trip: %v\n%s", err, out)
	}
	big, _ := json.Marshal(ArgValue("18446744073709551615"))
	if string(big) != `"18446744073709551615"` {
		t.Errorf("a value beyond int64 must be a string for Kubernetes: %s", big)
	}
}

// TestParseArgsRefused checks every refusal of a condition names the field
// and the value.
func TestParseArgsRefused(t *testing.T) {
	head := "kind: KubeArmorSeccompPolicy\nname: a\nnamespace: b\napp: x\n"
	for _, tc := range []struct{ rules, want string }{
		{"- {syscalls: [clone], action: Allow, args: [{index: 6, operator: Equal, value: 0}]}\n",
			`rules[0].args[0].index: "6": must be between 0 and 5`},
		{"- {syscalls: [clone], action: Allow, args: [{index: 0, operator: BitsSet, value: 0}]}\n",
			`rules[0].args[0].operator: "BitsSet": unknown operator`},
		{"- {syscalls: [clone], action: Allow, args: [{index: 0, operator: Equal, value: CLONE_NEWFOO}]}\n",
			`rules[0].args[0].value: "CLONE_NEWFOO": "CLONE_NEWFOO" is neither a number`},
		{"- {syscalls: [clone], action: Allow, args: [{index: 0, operator: Equal, value: -1}]}\n",
			`rules[0].args[0].value: "-1": "-1" is negative`},
		{"- {syscalls: [clone], action: Allow, args: [{index: 0, operator: Equal, value: \"0x1ffffffffffffffff\"}]}\n",
			`rules[0].args[0].value: "0x1ffffffffffffffff"`},
		{"- {syscalls: [clone], action: Allow, args: [{index: 0, operator: MaskedEqual, value: 1}]}\n",
			`rules[0].args[0].mask: missing`},
		{"- {syscalls: [clone], action: Allow, args: [{index: 0, operator: Equal, mask: 1, value: 1}]}\n",
			`rules[0].args[0].mask: "1": only operator MaskedEqual takes a mask`},
		{"- {syscalls: [clone], action: Allow, args: [{index: 0, operator: MaskedEqual, mask: 1, value: 3}]}\n",
			`rules[0].args[0].value: "3": has bits outside mask 1`},
		{"- {syscalls: [clone], action: Allow, args: [{index: 1, operator: Equal, value: 1}, {index: 1, operator: Equal, value: 2}]}\n",
			`rules[0].args[1].index: "1": argument already has a condition in args[0] of this rule`},
		{"- {syscalls: [clone], action: Allow}\n- {syscalls: [clone], action: Block}\n",
			`rules[1].syscalls[0]: "clone": system call has two actions in one policy`},
	} {
		_, err := Parse(strings.NewReader(head+"rules:\n"+tc.rules), "bad.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want %q, got %v", tc.rules, tc.want, err)
		}
	}
	_, err := Parse(strings.NewReader(head+"arch: [x86]\nrules:\n- {syscalls: [clone], action: Allow, args: [{index: 0, operator: Equal, value: \"0x100000000\"}]}\n"), "bad.yaml")
	if err == nil || !strings.Contains(err.Error(), "does not fit the 32-bit arguments of x86") {
		t.Errorf("32-bit ABI: %v", err)
	}
	// A conditional rule may give a call another action than an
	// unconditional one: that is how a flag is refused.
	ok := head + "rules:\n- {syscalls: [clone], action: Allow}\n- {syscalls: [clone], action: Block, args: [{index: 0, operator: MaskedEqual, mask: CLONE_NEWUSER, value: CLONE_NEWUSER}]}\n"
	if _, err := Parse(strings.NewReader(ok), "ok.yaml"); err != nil {
		t.Errorf("conditional refinement refused: %v", err)
	}
}
