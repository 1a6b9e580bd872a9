package recommend

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
)

// tableNames are the system call names of each ABI's table, sorted, for
// the fuzzer to pick from.
var tableNames = func() map[api.Arch][]string {
	out := map[api.Arch][]string{}
	for _, a := range api.Arches {
		out[a] = slices.Sorted(maps.Keys(a.Table().SyscallNames))
	}
	return out
}()

// fuzzReport builds a report of four workloads, one of each identity kind,
// from fuzzed text, and their calls from sel: each pair of bytes picks an
// ABI and a name of its table (or, for an odd pick, the text b itself, which
// the reader must refuse unless it is a real name). Each workload is a group
// of its own (kinds differ; the pod's owner kind starts with "Kind"), so
// each gives one file or one skip.
func fuzzReport(node, a, b, c, d string, sel []byte) *report.Report {
	t0 := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	calls := func(salt byte) map[string][]string {
		m := map[string][]string{}
		for i := 0; i+1 < len(sel); i += 2 {
			arch := api.Arches[int(sel[i]^salt)%len(api.Arches)]
			names := tableNames[arch]
			name := names[int(sel[i+1])%len(names)]
			if sel[i]&0x80 != 0 && sel[i+1]%7 == 0 {
				name = b
			}
			m[report.ABIName(arch)] = append(m[report.ABIName(arch)], name)
		}
		return m
	}
	pod := calls(0)
	r := report.New()
	r.Node, r.Kernel, r.Arch, r.Start, r.End = node, "6.18", "x86_64", t0, t0.Add(time.Minute)
	r.Workloads = []report.Workload{
		{Identity: report.Identity{Kind: report.KindPod, Namespace: a, Pod: "p" + b, Container: c,
			Labels: map[string]string{"app": d, c: a}, Owner: &report.Owner{Kind: "Kind" + b, Name: d}}, Syscalls: pod, Args: fuzzArgs(pod, sel)},
		{Identity: report.Identity{Kind: report.KindContainer, ContainerID: "c" + a, Runtime: b}, Syscalls: calls(1)},
		{Identity: report.Identity{Kind: report.KindSystemd, Unit: d + ".service"}, Syscalls: calls(2)},
		{Identity: report.Identity{Kind: report.KindProcess, Exe: c}, Syscalls: calls(3)},
	}
	return r
}

// fuzzArgs records arguments, picked by sel, for some of the recorded
// calls among calls' x86_64 ones (the others stay unrecorded).
func fuzzArgs(calls map[string][]string, sel []byte) map[string]map[string]report.CallArgs {
	ns := slices.Sorted(maps.Values(report.NamespaceFlags))
	fam := []string{"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK", "AF_PACKET", "50"}
	out := map[string]report.CallArgs{}
	for i, n := range slices.Sorted(slices.Values(calls["x86_64"])) {
		if !slices.Contains(report.ArgCalls(), n) || len(sel) == 0 {
			continue
		}
		k := sel[i%len(sel)]
		if k%5 == 0 {
			continue
		}
		var c report.CallArgs
		switch n {
		case "clone", "unshare", "setns":
			for j, f := range ns {
				if k&(1<<j) != 0 && k&0x40 != 0 {
					c.Namespaces = append(c.Namespaces, f)
				}
			}
			c.AnyNamespace = n == "setns" && k%3 == 0
		case "socket", "socketpair":
			c.Families = []string{fam[int(k)%len(fam)], fam[int(k/7)%len(fam)]}
			c.Overflow = k%11 == 0
		case "personality":
			c.Values = []uint32{uint32(k) << 16}
		case "prctl":
			c.Options = []string{"PR_SET_NAME", strconv.Itoa(int(k) + 100)}
		}
		out[n] = c
	}
	if len(out) == 0 {
		return nil
	}
	return map[string]map[string]report.CallArgs{"x86_64": out}
}

// FuzzRecommend: whatever reports the reader accepts, recommend writes
// files that parse as exactly one policy each, one per workload it does not
// skip; each policy allows only calls the report observed or the documented
// portable equivalents of them (portable.go); the summary's risky calls are
// those of the files; and no comment or summary line carries input
// unescaped (checkFiles).
func FuzzRecommend(f *testing.F) {
	f.Add("n1", "shop", "web-1", "nginx", "web", "r.json", []byte{0, 1, 0, 200, 3, 7}, true)
	f.Add(evil, evil, evil, evil, evil, evil, []byte{0x80, 0, 1, 5}, false)
	f.Add("n1\nx: y", "web..1", "a\rkind: x", "a\u2028b", "| cell | `code` |", "\x1b[31m.json", []byte{2, 9, 4, 30}, true)
	f.Add("", "", "", "", "", "", []byte{}, false)
	f.Add("node", "Bad_NS", "x/../y", "C", "A.B", "rep[1].json", []byte{0x85, 14, 1, 0}, true)
	f.Add("n", "web", "b", "c", "cweb", "r.json", []byte{0, 3, 0, 4}, false) // container cweb and unit cweb.service
	f.Fuzz(func(t *testing.T, node, a, b, c, d, name string, sel []byte, portable bool) {
		data, err := json.Marshal(fuzzReport(node, a, b, c, d, sel))
		if err != nil {
			return // not UTF-8 JSON can carry; the reader is fuzzed apart (FuzzRead)
		}
		rep, err := report.Read(bytes.NewReader(data), name)
		if err != nil {
			return // refused at the door: nothing to recommend
		}
		complain := len(sel) > 0 && sel[0]&1 == 1 // --complain, from the input without a new argument
		res, err := Recommend([]report.Source{{Name: name, Report: rep}}, Options{Portable: portable, Complain: complain})
		if err != nil {
			t.Fatalf("recommend: %v", err)
		}
		checkFiles(t, res)
		if n := len(res.Files) + len(res.Skipped); n != len(rep.Workloads) {
			t.Fatalf("%d files and %d skipped for %d workloads: %v %q", len(res.Files), len(res.Skipped), len(rep.Workloads), paths(res), res.Skipped)
		}
		may := mayAllow(rep.Workloads, portable)
		seen := map[string]bool{}
		for _, file := range res.Files {
			if seen[file.Path] || seen[file.Policy.Key()] {
				t.Fatalf("two files for %s %s", file.Path, file.Policy.Key())
			}
			seen[file.Path], seen[file.Policy.Key()] = true, true
			for _, r := range file.Policy.Spec.Seccomp.AllRules() {
				for _, n := range r.Syscalls {
					if !may[n] {
						t.Fatalf("%s allows %s, which no workload made and is no portable equivalent", file.Path, n)
					}
					if len(r.Args) > 0 {
						checkCondition(t, rep, file.Path, n, r.Args[0].Resolve())
					}
				}
			}
			if got := file.Policy.Spec.Seccomp.DefaultAction == api.ActionAudit; got != complain || file.Complain != complain {
				t.Fatalf("%s: complain mode %v (file says %v), want %v", file.Path, got, file.Complain, complain)
			}
			if !strings.HasPrefix(file.Path, file.Policy.Namespace+"/") && !strings.HasPrefix(file.Path, "_host/") {
				t.Fatalf("%s is not in the directory of namespace %s", file.Path, file.Policy.Namespace)
			}
		}
		// Per workload: each written policy is what its workload alone
		// gives, and that allows only what this workload made (not what
		// another workload of the report made).
		alone := map[string]bool{} // the rules each workload alone gives, as JSON
		for _, w := range rep.Workloads {
			one := *rep
			one.Workloads = []report.Workload{w}
			r1, err := Recommend([]report.Source{{Name: name, Report: &one}}, Options{Portable: portable, Complain: complain})
			if err != nil {
				t.Fatalf("recommend of one workload: %v", err)
			}
			mine := mayAllow(one.Workloads, portable)
			for _, file := range r1.Files {
				for _, r := range file.Policy.Spec.Seccomp.AllRules() {
					for _, n := range r.Syscalls {
						if !mine[n] {
							t.Fatalf("%s allows %s, which its workload %s did not make and is no portable equivalent", file.Path, n, w.Identity)
						}
						if len(r.Args) > 0 {
							checkCondition(t, &one, file.Path, n, r.Args[0].Resolve())
						}
					}
				}
				alone[rulesJSON(t, file)] = true
			}
		}
		for _, file := range res.Files {
			if !alone[rulesJSON(t, file)] {
				t.Fatalf("%s allows other calls than any one workload alone gives", file.Path)
			}
		}
	})
}

// mayAllow is what a policy recommended for ws may allow: what ws made,
// and with portable the equivalents of it for the other family.
func mayAllow(ws []report.Workload, portable bool) map[string]bool {
	may := map[string]bool{}
	for _, w := range ws {
		for abi, names := range w.Syscalls {
			for _, n := range names {
				may[n] = true
				// clone for clone3, whose ENOSYS falls back to it
				// (clone3Fallback).
				may["clone"] = may["clone"] || n == "clone3"
			}
			from, _ := report.ArchOf(abi)
			if to, ok := otherFamily(from); ok && portable {
				eq, _ := Equivalents(from, to, names)
				for _, e := range eq {
					may[e.Name] = true
				}
			}
		}
	}
	return may
}

// rulesJSON is a file's seccomp section, for comparing what two files allow.
func rulesJSON(t *testing.T, f File) string {
	b, err := json.Marshal(f.Policy.Spec.Seccomp)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkCondition: a recommended condition on call allows only arguments
// the report recorded for it: an Equal value was recorded, a MaskedEqual
// leaves free only namespace flags that were recorded.
func checkCondition(t *testing.T, rep *report.Report, path, call string, c api.Resolved) {
	t.Helper()
	var rec report.CallArgs
	for _, w := range rep.Workloads {
		if a, ok := w.Args["x86_64"][call]; ok {
			rec = a
		}
	}
	switch c.Operator {
	case api.OpMaskedEqual:
		for _, b := range bitsOf(allNamespaces &^ c.Mask) {
			if n := report.NamespaceFlags[b]; !slices.Contains(rec.Namespaces, n) && !(call == "clone" && b == 0x80) {
				t.Fatalf("%s: %s may pass %s, never recorded (%+v)", path, call, n, rec)
			}
		}
	case api.OpEqual:
		names := slices.Concat(rec.Families, rec.Options, rec.Namespaces)
		for _, v := range rec.Values {
			names = append(names, strconv.FormatUint(uint64(v), 10))
		}
		var tables []map[uint64]string
		switch call {
		case "socket", "socketpair":
			tables = append(tables, report.SocketFamilies)
		case "prctl":
			tables = append(tables, report.PrctlOptions)
		case "setns":
			tables = append(tables, report.NamespaceFlags)
		}
		if !slices.ContainsFunc(names, func(n string) bool {
			return n == strconv.FormatUint(c.Value, 10) || len(tables) > 0 && n == report.ArgName(tables[0], c.Value)
		}) {
			t.Fatalf("%s: %s allowed with %s, never recorded (%+v)", path, call, c, rec)
		}
	default:
		t.Fatalf("%s: %s: unexpected condition %s", path, call, c)
	}
}
