package violations

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/api/violation"
	"github.com/kubearmor/kscmp/discover"
)

const sampleRecord = `audit(1796105968.527:4): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=573 comm="mkdir" exe="/usr/bin/mkdir" sig=0 arch=c000003e syscall=83 compat=0 ip=0x7f7e04d7bf37 code=0x50000`

func TestParseRecord(t *testing.T) {
	r, err := ParseRecord(sampleRecord)
	if err != nil {
		t.Fatal(err)
	}
	want := Record{Time: time.Unix(1796105968, 527e6).UTC(), Serial: 4, PID: 573, Comm: "mkdir", Exe: "/usr/bin/mkdir", ABI: "x86_64", Number: 83, Code: 0x50000}
	if r != want {
		t.Errorf("got %+v\nwant %+v", r, want)
	}
	if a, ok := r.Action(); a != violation.ActionBlock || !ok {
		t.Errorf("action %q %v", a, ok)
	}
	// As the kernel log shows it, with a hex-encoded comm (it holds a
	// space), an x32 call and a kill.
	r, err = ParseRecord(`[ 10.1] audit: type=1326 audit(1.000:9): pid=7 comm=6D7920636D64 exe="/a b" sig=31 arch=c000003e syscall=1073741907 compat=0 ip=0x1 code=0x80000000`)
	if err != nil {
		t.Fatal(err)
	}
	if r.Comm != "my cmd" || r.Exe != "/a b" || r.ABI != "x32" || r.Number != 83 || r.Signal != 31 {
		t.Errorf("got %+v", r)
	}
	if a, _ := r.Action(); a != violation.ActionKill {
		t.Errorf("action %q", a)
	}
	for code, want := range map[uint32]string{0: "Kill", 0x30000: "Trap", 0x7fc00000: "Notify", 0x7ff00000: "Trace", 0x7ffc0000: "Audit", 0x7fff0000: ""} {
		if a, _ := (Record{Code: code}).Action(); a != want {
			t.Errorf("code %#x: %q, want %q", code, a, want)
		}
	}
	for _, tc := range []struct{ arch, nr, abi string }{{"40000003", "39", "i386"}, {"c00000b7", "34", "aarch64"}, {"40000028", "39", "arm"}} {
		r, err := ParseRecord(`audit(1.000:1): pid=1 sig=0 arch=` + tc.arch + ` syscall=` + tc.nr + ` code=0x7ffc0000`)
		if err != nil || r.ABI != tc.abi {
			t.Errorf("arch %s: %+v %v", tc.arch, r, err)
		}
	}
}

func TestParseRecordRefuses(t *testing.T) {
	for in, want := range map[string]string{
		`pid=1`:                       `unreadable seccomp audit record: no audit( stamp in "pid=1"`,
		`audit(1.5:1): pid=1`:         `unreadable seccomp audit record: audit(1.5:1): want audit(SECONDS.MILLIS:SERIAL)`,
		`audit(1.000:1): pid=1 sig=0`: `unreadable seccomp audit record: want pid, sig, arch, syscall and code in "audit(1.000:1): pid=1 sig=0"`,
		`audit(1.000:1): pid=x sig=0 arch=c000003e syscall=1 code=0x0`:  `unreadable seccomp audit record: pid="x": strconv.Atoi: parsing "x": invalid syntax`,
		`audit(1.000:1): pid=1 sig=0 arch=12345678 syscall=1 code=0x0`:  `unreadable seccomp audit record: arch=12345678 syscall=1: unknown architecture or number`,
		`audit(1.000:1): pid=1 sig=0 arch=c000003e syscall=-1 code=0x0`: `unreadable seccomp audit record: arch=c000003e syscall=-1: unknown architecture or number`,
	} {
		_, err := ParseRecord(in)
		if err == nil || err.Error() != want || !errors.Is(err, ErrRecord) {
			t.Errorf("%s:\n got %v\nwant %s", in, err, want)
		}
	}
}

// FuzzParseRecord: any text is read or refused with ErrRecord, never a
// panic, and a read record has a known ABI and a number in range.
func FuzzParseRecord(f *testing.F) {
	f.Add(sampleRecord)
	f.Add(`audit(1.000:9): pid=7 comm=6D79 exe="/a b" sig=31 arch=c000003e syscall=1073741907 code=0x80000000`)
	f.Fuzz(func(t *testing.T, in string) {
		r, err := ParseRecord(in)
		if err != nil {
			if !errors.Is(err, ErrRecord) {
				t.Fatalf("error without ErrRecord: %v", err)
			}
			return
		}
		if _, ok := report.ArchOf(r.ABI); !ok || r.Number < 0 {
			t.Fatalf("record %+v from %q", r, in)
		}
	})
}

// TestParseMessages: a datagram of two messages, one with the header's
// length and one with the payload's (the audit multicast quirk), reads as
// two payloads.
func TestParseMessages(t *testing.T) {
	msg := func(payload string, lenIsPayload bool) []byte {
		b := make([]byte, 16+len(payload))
		l := len(b)
		if lenIsPayload {
			l = len(payload)
		}
		binary.NativeEndian.PutUint32(b, uint32(l))
		binary.NativeEndian.PutUint16(b[4:], AuditSeccomp)
		copy(b[16:], payload)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	var got []string
	_ = parseMessages(append(msg("abcde", false), msg("xyz", true)...), func(typ uint16, p []byte) {
		got = append(got, string(p))
	})
	if strings.Join(got, ",") != "abcde,xyz" {
		t.Errorf("got %q", got)
	}
}

// TestFloodBounded: a flood of distinct calls keeps at most MaxEntries
// entries and counts the rest as overflow; repeats of one call are one
// entry with their count.
func TestFloodBounded(t *testing.T) {
	m := &monitor{opts: Options{MaxEntries: 10}.withDefaults(), entries: map[entryKey]*violation.Violation{}, pids: map[int]cachedPID{}}
	exe, _ := os.Executable()
	now := time.Now()
	for i := range 100_000 {
		m.addRecord(Record{Time: now, PID: os.Getpid(), Exe: exe, ABI: "x86_64", Number: 83, Code: 0x50000}, now)
		if i < 20 {
			m.addRecord(Record{Time: now, PID: os.Getpid(), Exe: exe, ABI: "x86_64", Number: 100 + i, Code: 0x7ffc0000}, now)
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
	m.addRecord(Record{Time: now, PID: os.Getpid(), Exe: "/x", ABI: "x86_64", Number: 83, Code: 0x50000}, now)
	if len(m.entries) != 0 {
		t.Errorf("filtered record kept: %+v", m.report().Violations)
	}
	m = &monitor{opts: Options{}.withDefaults(), entries: map[entryKey]*violation.Violation{}, pids: map[int]cachedPID{}}
	m.addRecord(Record{Time: now, PID: 1 << 30, Exe: "/gone", ABI: "x86_64", Number: 83, Code: 0x50000}, now)
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
	rec := Record{Time: now, PID: 1 << 30, Exe: "/gone", ABI: "x86_64", Number: 83, Code: 0x50000}
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
