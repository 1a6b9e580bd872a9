package auditlog

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/go-seccomp-bpf/arch"

	"github.com/kubearmor/kscmp/api/violation"
)

// TypeSeccomp is the audit record type of a seccomp decision the kernel
// logs (AUDIT_SECCOMP, linux/audit.h).
const TypeSeccomp = 1326

// ErrRecord is wrapped by every error that says an audit record could not
// be read.
var ErrRecord = errors.New("unreadable seccomp audit record")

// Record is one seccomp audit record: who made which call and what seccomp
// did about it.
type Record struct {
	// Time and Serial are the record's audit(TIME:SERIAL) stamp.
	Time   time.Time
	Serial uint64
	// PID is the process (thread group) id in the initial PID namespace.
	PID int
	// Comm and Exe are the task's name and executable, as the kernel saw
	// them ("" when it logged "(null)").
	Comm, Exe string
	// Signal is the signal the action delivers (SIGSYS for kills).
	Signal int
	// ABI is the system call table's name (x86_64, i386, x32, aarch64,
	// arm); Number the call's number in it (x32's bit cleared).
	ABI    string
	Number int
	// Code is the filter's return value: action and data.
	Code uint32
}

// The seccomp return actions (SECCOMP_RET_*) as the kernel logs them in
// code=, in the bits of SECCOMP_RET_ACTION_FULL.
const (
	retKillProcess = 0x80000000
	retKillThread  = 0x00000000
	retTrap        = 0x00030000
	retErrno       = 0x00050000
	retUserNotif   = 0x7fc00000
	retTrace       = 0x7ff00000
	retLog         = 0x7ffc0000
	retAllow       = 0x7fff0000
	retActionFull  = 0xffff0000
)

// Action returns the violation action of the record's code. ok is false
// for an action that is no violation (allow) or that kscmp does not know.
// The kernel logs the action alone (code=0x50000 for any errno), so a
// Block's errno is not known.
func (r Record) Action() (action string, ok bool) {
	switch r.Code & retActionFull {
	case retKillProcess, retKillThread:
		return violation.ActionKill, true
	case retTrap:
		return violation.ActionTrap, true
	case retErrno:
		return violation.ActionBlock, true
	case retUserNotif:
		return violation.ActionNotify, true
	case retTrace:
		return violation.ActionTrace, true
	case retLog:
		return violation.ActionAudit, true
	}
	return "", false
}

// x32Bit marks an x32 call's number on x86_64 (__X32_SYSCALL_BIT).
const x32Bit = 0x40000000

// abiOf names the table of an audit architecture (AUDIT_ARCH_*) and call
// number: the x86_64 architecture with the x32 bit set is x32.
func abiOf(auditArch uint32, nr int) (abi string, number int, ok bool) {
	for _, info := range []*arch.Info{arch.X86_64, arch.I386, arch.AARCH64, arch.ARM} {
		if uint32(info.ID) != auditArch {
			continue
		}
		if info == arch.X86_64 && nr&x32Bit != 0 {
			return arch.X32.Name, nr &^ x32Bit, true
		}
		return info.Name, nr, true
	}
	return "", 0, false
}

// ParseRecord reads the text of a type=1326 record, as the audit netlink
// socket delivers it ("audit(1764576000.123:42): auid=… pid=… comm=… exe=…
// sig=… arch=c000003e syscall=83 compat=0 ip=… code=0x50001"), or as the
// kernel log shows it, with anything before "audit(" ignored. Errors wrap
// ErrRecord and name the field and value.
func ParseRecord(text string) (Record, error) {
	var r Record
	i := strings.Index(text, "audit(")
	if i < 0 {
		return r, fmt.Errorf("%w: no audit( stamp in %.80q", ErrRecord, text)
	}
	stamp, rest, ok := strings.Cut(text[i+len("audit("):], "):")
	if !ok {
		return r, fmt.Errorf("%w: stamp not closed in %.80q", ErrRecord, text)
	}
	if err := r.parseStamp(stamp); err != nil {
		return r, err
	}
	fields := splitFields(rest)
	var auditArch uint64
	var nr int64
	seen := 0
	for _, f := range []struct {
		key string
		set func(string) error
	}{
		{"pid", func(v string) (err error) { r.PID, err = strconv.Atoi(v); return }},
		{"sig", func(v string) (err error) { r.Signal, err = strconv.Atoi(v); return }},
		{"arch", func(v string) (err error) { auditArch, err = strconv.ParseUint(v, 16, 32); return }},
		{"syscall", func(v string) (err error) { nr, err = strconv.ParseInt(v, 10, 32); return }},
		{"code", func(v string) error {
			c, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 32)
			r.Code = uint32(c)
			return err
		}},
	} {
		v, ok := fields[f.key]
		if !ok {
			continue
		}
		if err := f.set(v); err != nil {
			return r, fmt.Errorf("%w: %s=%.40q: %v", ErrRecord, f.key, v, err)
		}
		seen++
	}
	if seen != 5 {
		return r, fmt.Errorf("%w: want pid, sig, arch, syscall and code in %.120q", ErrRecord, text)
	}
	if r.ABI, r.Number, ok = abiOf(uint32(auditArch), int(nr)); !ok || r.Number < 0 {
		return r, fmt.Errorf("%w: arch=%x syscall=%d: unknown architecture or number", ErrRecord, auditArch, nr)
	}
	r.Comm, r.Exe = untrusted(fields["comm"]), untrusted(fields["exe"])
	return r, nil
}

// parseStamp reads "SECONDS.MILLIS:SERIAL".
func (r *Record) parseStamp(stamp string) error {
	ts, serial, ok := strings.Cut(stamp, ":")
	sec, ms, ok2 := strings.Cut(ts, ".")
	if !ok || !ok2 {
		return fmt.Errorf("%w: audit(%.40s): want audit(SECONDS.MILLIS:SERIAL)", ErrRecord, stamp)
	}
	s, err1 := strconv.ParseInt(sec, 10, 64)
	m, err2 := strconv.ParseInt(ms, 10, 64)
	n, err3 := strconv.ParseUint(serial, 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil || len(ms) != 3 || s < 0 {
		return fmt.Errorf("%w: audit(%.40s): want audit(SECONDS.MILLIS:SERIAL)", ErrRecord, stamp)
	}
	r.Time, r.Serial = time.Unix(s, m*int64(time.Millisecond)).UTC(), n
	return nil
}

// splitFields splits "k=v k2=\"v 2\"" into its fields; a quoted value may
// hold spaces (the kernel quotes only values without them, but a comm may
// be anything the process set).
func splitFields(s string) map[string]string {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		k, rest, ok := strings.Cut(s, "=")
		if !ok || strings.ContainsAny(k, " \"") {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				return out
			}
			s = s[end:]
			continue
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				v, rest = rest[1:], ""
			} else {
				v, rest = `"`+rest[1:end+1]+`"`, rest[end+2:]
			}
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		out[k] = v
		s = rest
	}
	return out
}

// untrusted decodes a value the kernel logged with audit_log_untrustedstring:
// quoted as it is, hex when it holds a quote, a space or a control
// character, "(null)" when absent.
func untrusted(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	if v == "(null)" || v == "?" {
		return ""
	}
	if b, err := hex.DecodeString(v); err == nil {
		return string(b)
	}
	return v
}
