package report

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// argsReport is a report whose one workload made calls with recorded
// arguments (x86_64) and clone without (i386: not recorded there).
const argsReport = `{"apiVersion":"kscmp/v1","kind":"ObservationReport","workloads":[{"identity":{"kind":"process","exe":"/bin/sh"},
"syscalls":{"x86_64":["clone","unshare","setns","socket","socketpair","personality","prctl","read"],"i386":["clone"]},
"args":{"x86_64":{"clone":{},"unshare":{"namespaces":["CLONE_NEWUSER","CLONE_NEWNS","CLONE_NEWUSER"]},"setns":{"namespaces":["CLONE_NEWNET"],"anyNamespace":true},
"socket":{"families":["AF_NETLINK","AF_INET","50"],"types":["SOCK_RAW","SOCK_STREAM"]},"socketpair":{"families":["AF_UNIX"],"types":["SOCK_STREAM"]},
"personality":{"values":[4294967295,0]},"prctl":{"options":["PR_SET_NAME","1000000","79"],"overflow":true}}}}]}`

// TestArgsRead: recorded arguments survive a read with sorted, distinct
// names, and every malformed entry is refused with its field named.
func TestArgsRead(t *testing.T) {
	r, err := Read(strings.NewReader(argsReport), "r.json")
	if err != nil {
		t.Fatal(err)
	}
	args := r.Workloads[0].Args["x86_64"]
	for call, want := range map[string]CallArgs{
		"clone":       {},
		"unshare":     {Namespaces: []string{"CLONE_NEWNS", "CLONE_NEWUSER"}},
		"setns":       {Namespaces: []string{"CLONE_NEWNET"}, AnyNamespace: true},
		"socket":      {Families: []string{"50", "AF_INET", "AF_NETLINK"}, Types: []string{"SOCK_RAW", "SOCK_STREAM"}},
		"personality": {Values: []uint32{0, 0xffffffff}},
		"prctl":       {Options: []string{"1000000", "79", "PR_SET_NAME"}, Overflow: true},
	} {
		if got, ok := args[call]; !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("args.x86_64.%s = %+v, %v; want %+v", call, got, ok, want)
		}
	}
	bad := map[string]string{
		`"args":{"x86_64":{"read":{}}}`:                                    `"read": arguments are recorded only for`,
		`"args":{"mips":{"clone":{}}}`:                                     `"mips": unknown ABI`,
		`"args":{"x86_64":{"setns":{}}}`:                                   `args.x86_64.setns: not in syscalls.x86_64`,
		`"args":{"x86_64":{"clone":{"families":["AF_INET"]}}}`:             `fields another call's ([families])`,
		`"args":{"x86_64":{"clone":{"namespaces":["CLONE_NEWFOO"]}}}`:      `"CLONE_NEWFOO": not a namespace flag`,
		`"args":{"x86_64":{"clone":{"namespaces":["268435456"]}}}`:         `"268435456": not a namespace flag`,
		`"args":{"x86_64":{"socket":{"families":["63"]}}}`:                 `families[0]: "63": not a name`,
		`"args":{"x86_64":{"socket":{"families":["2"]}}}`:                  `families[0]: "2": not a name`, // AF_INET is written by name
		`"args":{"x86_64":{"socket":{"types":["16"]}}}`:                    `types[0]: "16"`,
		`"args":{"x86_64":{"prctl":{"options":["4294967296"]}}}`:           `options[0]: "4294967296"`,
		`"args":{"x86_64":{"prctl":{"options":["015"]}}}`:                  `options[0]: "015"`,
		`"args":{"x86_64":{"personality":{"values":[-1]}}}`:                `cannot unmarshal`,
		`"args":{"x86_64":{"personality":{"namespaces":["CLONE_NEWNS"]}}}`: `fields another call's ([namespaces])`,
	}
	for args, want := range bad {
		in := `{"apiVersion":"kscmp/v1","kind":"ObservationReport","workloads":[{"identity":{"kind":"process"},` +
			`"syscalls":{"x86_64":["clone","socket","prctl","personality","read"]},` + args + `}]}`
		_, err := Read(strings.NewReader(in), "r.json")
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", args, err, want)
		}
	}
}

// TestArgsMerge: Add unions recorded arguments; a side that made a call
// without recorded arguments (any) leaves the union unrecorded.
func TestArgsMerge(t *testing.T) {
	id := Identity{Kind: KindProcess, Exe: "/bin/sh"}
	r := New()
	r.Add(Workload{Identity: id, Syscalls: map[string][]string{"x86_64": {"socket", "clone", "prctl"}},
		Args: map[string]map[string]CallArgs{"x86_64": {
			"socket": {Families: []string{"AF_INET"}, Types: []string{"SOCK_STREAM"}},
			"clone":  {},
			"prctl":  {Options: []string{"PR_SET_NAME"}},
		}}})
	r.Add(Workload{Identity: id, Syscalls: map[string][]string{"x86_64": {"socket", "clone", "unshare", "prctl"}},
		Args: map[string]map[string]CallArgs{"x86_64": {
			"socket":  {Families: []string{"AF_UNIX", "AF_INET"}, Types: []string{"SOCK_DGRAM"}},
			"clone":   {Namespaces: []string{"CLONE_NEWUSER"}},
			"unshare": {Namespaces: []string{"CLONE_NEWNET"}},
			// prctl made, arguments not recorded: any
		}}})
	got := r.Workloads[0].Args["x86_64"]
	want := map[string]CallArgs{
		"socket":  {Families: []string{"AF_INET", "AF_UNIX"}, Types: []string{"SOCK_DGRAM", "SOCK_STREAM"}},
		"clone":   {Namespaces: []string{"CLONE_NEWUSER"}},
		"unshare": {Namespaces: []string{"CLONE_NEWNET"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merged args %+v, want %+v", got, want)
	}
	// A merged report is still valid and stable.
	data, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Read(bytes.NewReader(data), "m.json")
	if err != nil {
		t.Fatalf("merged report refused: %v\n%s", err, data)
	}
	if again, _ := back.Marshal(); !bytes.Equal(again, data) {
		t.Errorf("merged report not stable:\n%s\n%s", data, again)
	}
}

// TestArgNameValue: names and numbers go both ways; a named value is never
// written as its number.
func TestArgNameValue(t *testing.T) {
	for _, tc := range []struct {
		table map[uint64]string
		v     uint64
		name  string
	}{
		{SocketFamilies, 16, "AF_NETLINK"}, {SocketFamilies, 50, "50"}, {SocketTypes, 3, "SOCK_RAW"},
		{PrctlOptions, 15, "PR_SET_NAME"}, {PrctlOptions, 0x59616d61, "PR_SET_PTRACER"}, {NamespaceFlags, 0x10000000, "CLONE_NEWUSER"},
	} {
		if got := ArgName(tc.table, tc.v); got != tc.name {
			t.Errorf("ArgName(%d) = %q, want %q", tc.v, got, tc.name)
		}
		if v, ok := ArgValue(tc.table, tc.name, 1<<32-1); !ok || v != tc.v {
			t.Errorf("ArgValue(%q) = %d, %v; want %d", tc.name, v, ok, tc.v)
		}
	}
	if _, ok := ArgValue(SocketFamilies, "16", 62); ok {
		t.Error(`ArgValue("16") accepted a named family as a number`)
	}
}
