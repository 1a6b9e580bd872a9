package violation

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api/report"
)

func sample() *Report {
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	r := New()
	r.Node, r.Kernel, r.Arch, r.Source, r.Start, r.End = "n", "6.18", "x86_64", "audit", t0, t0.Add(time.Minute)
	pod := report.Identity{Kind: report.KindPod, Namespace: "shop", Pod: "web-1", Container: "nginx", Labels: map[string]string{"app": "web"}}
	r.Add(Violation{Identity: pod, Syscall: "mkdir", Number: 83, ABI: "x86_64", Action: ActionBlock, Count: 2, FirstSeen: t0, LastSeen: t0, Profile: "localhost/kscmp/shop-web.json"})
	r.Add(Violation{Identity: report.Identity{Kind: report.KindSystemd, Unit: "a.service"}, Syscall: "ptrace", Number: 101, ABI: "x86_64", Action: ActionKill, Count: 1, FirstSeen: t0, LastSeen: t0})
	r.Add(Violation{Identity: pod, Syscall: "mkdir", Number: 83, ABI: "x86_64", Action: ActionBlock, Count: 3, FirstSeen: t0.Add(-time.Second), LastSeen: t0.Add(time.Second)})
	r.Add(Violation{Identity: pod, Number: 4000, ABI: "x86_64", Action: ActionAudit, Count: 1, FirstSeen: t0, LastSeen: t0})
	r.Lost = Lost{Audit: 1, Overflow: 2}
	return r
}

// TestAddSums: a second record of one (workload, call, ABI, action) adds
// its count and widens the time span instead of making a second entry.
func TestAddSums(t *testing.T) {
	r := sample()
	if len(r.Violations) != 3 {
		t.Fatalf("%d entries, want 3: %+v", len(r.Violations), r.Violations)
	}
	v := r.Violations[0]
	if v.Count != 5 || !v.FirstSeen.Equal(time.Date(2026, 12, 1, 7, 59, 59, 0, time.UTC)) || !v.LastSeen.Equal(time.Date(2026, 12, 1, 8, 0, 1, 0, time.UTC)) {
		t.Errorf("merged entry %+v", v)
	}
}

// TestRoundTrip: a written report reads back to the same bytes, and the
// bytes do not depend on the order entries were added in.
func TestRoundTrip(t *testing.T) {
	r := sample()
	data, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Read(bytes.NewReader(data), "v.json")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.Marshal()
	if !bytes.Equal(data, again) {
		t.Errorf("changed in a round trip:\n%s\n%s", data, again)
	}
	rev := sample()
	for i, j := 0, len(rev.Violations)-1; i < j; i, j = i+1, j-1 {
		rev.Violations[i], rev.Violations[j] = rev.Violations[j], rev.Violations[i]
	}
	if b, _ := rev.Marshal(); !bytes.Equal(b, data) {
		t.Errorf("order of entries changed the bytes")
	}
	if !IsReport(data) || IsReport([]byte(`{"kind":"ObservationReport"}`)) {
		t.Error("IsReport does not tell the kinds apart")
	}
	p := filepath.Join(t.TempDir(), "v.json")
	if changed, err := r.WriteFile(p); err != nil || !changed {
		t.Fatalf("WriteFile: %v %v", changed, err)
	}
	if changed, err := r.WriteFile(p); err != nil || changed {
		t.Errorf("unchanged report rewritten: %v %v", changed, err)
	}
	if _, err := ReadFile(p); err != nil {
		t.Error(err)
	}
}

func TestReadRefusesWithSentinel(t *testing.T) {
	const head = `{"apiVersion":"kscmp/v1","kind":"ViolationReport","violations":[`
	for in, want := range map[string]string{
		`nope`: `v.json: not a violation report: invalid character 'o' in literal null (expecting 'u')`,
		`{"apiVersion":"kscmp/v1","kind":"ObservationReport"}`:                                                        `v.json: apiVersion "kscmp/v1" kind "ObservationReport": want kscmp/v1 ViolationReport`,
		head + `{"identity":{"kind":"vm"},"abi":"x86_64","action":"Block","count":1}]}`:                               `v.json: violations[0].identity.kind: "vm": want pod, container, systemd or process`,
		head + `{"identity":{"kind":"pod"},"abi":"native","action":"Block","count":1}]}`:                              `v.json: violations[0].abi: "native": unknown ABI`,
		head + `{"identity":{"kind":"pod"},"syscall":"mkdir","number":1,"abi":"x86_64","action":"Block","count":1}]}`: `v.json: violations[0].syscall: "mkdir": number 1 of x86_64 is "write"`,
		head + `{"identity":{"kind":"pod"},"syscall":"write","number":1,"abi":"x86_64","action":"Allow","count":1}]}`: `v.json: violations[0].action: "Allow": want Audit, Block, Kill, Trap, Trace or Notify`,
		head + `{"identity":{"kind":"pod"},"syscall":"write","number":1,"abi":"x86_64","action":"Block","count":0}]}`: `v.json: violations[0].count: 0: an entry counts at least one record`,
		head + `{"identity":{"kind":"pod"},"number":-1,"abi":"x86_64","action":"Block","count":1}]}`:                  `v.json: violations[0].number: -1: negative`,
	} {
		_, err := Read(strings.NewReader(in), "v.json")
		if err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s:\n got %v (ErrInvalid: %v)\nwant %s", in, err, errors.Is(err, ErrInvalid), want)
		}
	}
}

// FuzzRead: any input is refused with ErrInvalid or read into a report
// that validates and survives a round trip byte for byte.
func FuzzRead(f *testing.F) {
	data, _ := sample().Marshal()
	f.Add(data)
	f.Add([]byte(`{"apiVersion":"kscmp/v1","kind":"ViolationReport","violations":null}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := Read(bytes.NewReader(in), "f.json")
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		out, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Read(bytes.NewReader(out), "f.json")
		if err != nil {
			t.Fatalf("written report does not read back: %v\n%s", err, out)
		}
		again, _ := back.Marshal()
		if !bytes.Equal(out, again) {
			t.Fatalf("not stable:\n%s\n%s", out, again)
		}
	})
}

// TestUnionIsAdd: Union of reports equals adding their entries one by one
// (counts summed, spans widened), with the lost counters summed, the span
// of all reports, and the node kept only when the reports agree on it.
func TestUnionIsAdd(t *testing.T) {
	a, b := sample(), sample()
	b.Node, b.Start, b.End = "m", b.Start.Add(-time.Hour), b.End.Add(time.Hour)
	b.Violations[0].LastSeen = b.Violations[0].LastSeen.Add(time.Hour)
	u := Union(a, b)
	want := sample()
	for _, v := range b.Violations {
		want.Add(v)
	}
	want.Sort()
	if len(u.Violations) != len(want.Violations) {
		t.Fatalf("%d entries, want %d", len(u.Violations), len(want.Violations))
	}
	for i := range u.Violations {
		g, w := u.Violations[i], want.Violations[i]
		if g.Key() != w.Key() || g.Count != w.Count || !g.FirstSeen.Equal(w.FirstSeen) || !g.LastSeen.Equal(w.LastSeen) || g.Profile != w.Profile {
			t.Errorf("entry %d: %+v, want %+v", i, g, w)
		}
	}
	if u.Node != "" || u.Kernel != "6.18" || !u.Start.Equal(b.Start) || !u.End.Equal(b.End) || u.Lost != (Lost{Audit: 2, Overflow: 4}) {
		t.Errorf("node %q kernel %q span %v–%v lost %+v", u.Node, u.Kernel, u.Start, u.End, u.Lost)
	}
	if a.Violations[0].Count != 5 {
		t.Errorf("Union changed its input: %+v", a.Violations[0])
	}
	if u := Union(); u.Violations == nil || len(u.Violations) != 0 {
		t.Errorf("Union() = %+v, want an empty report", u)
	}
}
