package violations

import (
	"os"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/api/violation"
	"github.com/kubearmor/kscmp/discover"
	"github.com/kubearmor/kscmp/internal/auditlog"
)

// TestFloodBounded: a flood of distinct calls keeps at most MaxEntries
// entries and counts the rest as overflow; repeats of one call are one
// entry with their count.
func TestFloodBounded(t *testing.T) {
	m := &monitor{opts: Options{MaxEntries: 10}.withDefaults(), entries: map[entryKey]*violation.Violation{}, pids: map[int]cachedPID{}}
	exe, _ := os.Executable()
	now := time.Now()
	for i := range 100_000 {
		m.addRecord(auditlog.Record{Time: now, PID: os.Getpid(), Exe: exe, ABI: "x86_64", Number: 83, Code: 0x50000}, now)
		if i < 20 {
			m.addRecord(auditlog.Record{Time: now, PID: os.Getpid(), Exe: exe, ABI: "x86_64", Number: 100 + i, Code: 0x7ffc0000}, now)
		}
	}
	r := m.report()
	if len(r.Violations) != 10 || r.Lost.Overflow != 11 {
		t.Fatalf("%d entries, overflow %d; want 10 and 11", len(r.Violations), r.Lost.Overflow)
	}
	for _, v := range r.Violations {
		if v.Syscall == "mkdir" {
			if v.Count != 100_000 || v.Action != violation.ActionBlock {
				t.Errorf("mkdir entry %+v, want Block counted 100000 times", v)
			}
			return
		}
	}
	t.Errorf("no mkdir entry: %+v", r.Violations)
}

// TestFilterAndGone: a record of a process that is gone is named by its
// executable and counted as unattributed; a filter drops what it does not
// select.
func TestFilterAndGone(t *testing.T) {
	m := &monitor{opts: Options{Filter: discover.Filter{Unit: "nope.service"}}.withDefaults(), entries: map[entryKey]*violation.Violation{}, pids: map[int]cachedPID{}}
	now := time.Now()
	m.addRecord(auditlog.Record{Time: now, PID: os.Getpid(), Exe: "/x", ABI: "x86_64", Number: 83, Code: 0x50000}, now)
	if len(m.entries) != 0 {
		t.Errorf("filtered record kept: %+v", m.report().Violations)
	}
	m = &monitor{opts: Options{}.withDefaults(), entries: map[entryKey]*violation.Violation{}, pids: map[int]cachedPID{}}
	m.addRecord(auditlog.Record{Time: now, PID: 1 << 30, Exe: "/gone", ABI: "x86_64", Number: 83, Code: 0x50000}, now)
	r := m.report()
	if len(r.Violations) != 1 || r.Violations[0].Identity.Exe != "/gone" || r.Lost.Unattributed != 1 {
		t.Errorf("got %+v lost %+v", r.Violations, r.Lost)
	}
}

// TestTakeReset: with reset, a report holds the interval's counts only and
// the next starts empty (the agent's per-interval Events); without, the
// counts go on.
func TestTakeReset(t *testing.T) {
	m := &monitor{opts: Options{}.withDefaults(), entries: map[entryKey]*violation.Violation{}, pids: map[int]cachedPID{}}
	now := time.Now()
	rec := auditlog.Record{Time: now, PID: 1 << 30, Exe: "/gone", ABI: "x86_64", Number: 83, Code: 0x50000}
	m.addRecord(rec, now)
	m.addRecord(rec, now)
	if r := m.take(false); len(r.Violations) != 1 || r.Violations[0].Count != 2 {
		t.Fatalf("take(false): %+v", r.Violations)
	}
	if r := m.take(true); len(r.Violations) != 1 || r.Violations[0].Count != 2 || r.Lost.Unattributed != 1 {
		t.Fatalf("take(true): %+v %+v", r.Violations, r.Lost)
	}
	m.addRecord(rec, now)
	if r := m.take(true); len(r.Violations) != 1 || r.Violations[0].Count != 1 || r.Lost.Unattributed != 0 {
		t.Errorf("after reset: %+v %+v, want the one new call", r.Violations, r.Lost)
	}
	if r := m.take(true); len(r.Violations) != 0 {
		t.Errorf("empty interval: %+v", r.Violations)
	}
}

// TestTakeResetExits: the exit-errors counts are the kernel's, cumulative;
// with reset each report gets only what is new since the previous one (the
// agent adds every report to its counts and Events), a pair with nothing
// new is left out, and so is overflow counted before; without reset the
// cumulative count stays.
func TestTakeResetExits(t *testing.T) {
	m := &monitor{opts: Options{}.withDefaults(), entries: map[entryKey]*violation.Violation{}, pids: map[int]cachedPID{},
		ex: &exitErrors{abi: "x86_64"}}
	t0 := time.Now().Add(-time.Minute)
	id := report.Identity{Kind: report.KindContainer, ContainerID: "c1", Container: "c1"}
	kernel := func(n uint64, lost uint64) {
		m.exits = []counted{{id: id, nr: 83, count: n, first: t0, last: time.Now(), action: violation.ActionBlock}}
		m.exitLost = lost
	}
	count := func(r *violation.Report) uint64 {
		if len(r.Violations) == 0 {
			return 0
		}
		if len(r.Violations) != 1 || r.Violations[0].Syscall != "mkdir" {
			t.Fatalf("violations %+v", r.Violations)
		}
		return r.Violations[0].Count
	}
	kernel(3, 1)
	if r := m.take(true); count(r) != 3 || r.Lost.Overflow != 1 {
		t.Fatalf("first interval: %d, overflow %d; want 3, 1", count(r), r.Lost.Overflow)
	}
	kernel(5, 1)
	if r := m.take(true); count(r) != 2 || r.Lost.Overflow != 0 || r.Violations[0].FirstSeen.Before(r.Start) {
		t.Fatalf("second interval: %+v, overflow %d; want 2 new since %v, 0", r.Violations, r.Lost.Overflow, r.Start)
	}
	if r := m.take(true); count(r) != 0 || r.Lost.Overflow != 0 {
		t.Fatalf("nothing new: %+v", r.Violations)
	}
	kernel(6, 2)
	if r := m.take(false); count(r) != 1 || r.Lost.Overflow != 1 {
		t.Fatalf("take(false) after reset: %d, overflow %d; want 1, 1", count(r), r.Lost.Overflow)
	}
	m2 := &monitor{opts: Options{}.withDefaults(), entries: map[entryKey]*violation.Violation{}, pids: map[int]cachedPID{},
		ex: &exitErrors{abi: "x86_64"}}
	m2.exits = []counted{{id: id, nr: 83, count: 4, first: t0, last: time.Now(), action: violation.ActionBlock}}
	for range 2 {
		if r := m2.take(false); count(r) != 4 {
			t.Fatalf("without reset: %d, want the cumulative 4", count(r))
		}
	}
}
