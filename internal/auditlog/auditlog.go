// Package auditlog lets tests see the kernel's audit records: the seccomp
// records (type 1326, AUDIT_SECCOMP) that a filter's log action
// (SCMP_ACT_LOG, systemd's SystemCallLog=) makes.
//
// It listens on the audit netlink socket's read-only multicast group
// (AUDIT_NLGRP_READLOG) rather than reading /dev/kmsg: every record reaches
// the group, whether or not an audit daemon runs, while the kernel prints a
// record to its log only when no daemon is registered and only as often as
// printk's rate limit lets it (a busy machine loses some). Root (or
// CAP_AUDIT_READ) is needed, and the records are the host's: a container or
// a systemd-nspawn machine in its own namespaces logs to the same kernel.
package auditlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// TypeSeccomp is the audit record type of a seccomp action that logs.
const TypeSeccomp = 1326

// groupReadLog is the bind mask of AUDIT_NLGRP_READLOG (linux/audit.h),
// group 1: bit 1-1.
const groupReadLog = 1

// Record is one audit record: its type and its text
// ("audit(1764576000.123:45): ... syscall=83 ...").
type Record struct {
	Type uint16
	Text string
}

// Field returns the value of key in the record ("comm" → "mkdir", quotes
// removed), or "" when the record has no such field.
func (r Record) Field(key string) string {
	for _, f := range strings.Fields(r.Text) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// Listener receives the audit records made after Listen.
type Listener struct{ fd int }

// Listen joins the audit read-log multicast group.
func Listen() (*Listener, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		return nil, fmt.Errorf("audit netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groupReadLog}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("join the audit read-log group (needs CAP_AUDIT_READ): %w", err)
	}
	// A bounded wait per receive, so Wait notices its context ending.
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("audit netlink socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	return &Listener{fd: fd}, nil
}

// Close leaves the group.
func (l *Listener) Close() error { return unix.Close(l.fd) }

// Wait returns the first record for which match is true, or the context's
// error together with the records seen, for the failure message.
func (l *Listener) Wait(ctx context.Context, match func(Record) bool) (Record, []Record, error) {
	var seen []Record
	buf := make([]byte, 1<<16)
	for {
		if err := ctx.Err(); err != nil {
			return Record{}, seen, err
		}
		n, _, err := unix.Recvfrom(l.fd, buf, 0)
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOBUFS):
			continue // records were dropped; the one wanted may still come
		case err != nil:
			return Record{}, seen, fmt.Errorf("receive audit records: %w", err)
		}
		rec, ok := parse(buf[:n])
		if !ok {
			continue
		}
		if match(rec) {
			return rec, seen, nil
		}
		seen = append(seen, rec)
	}
}

// parse reads the one record of a datagram. The kernel sends one record
// per message, and its length is not padded to netlink's alignment, which
// syscall.ParseNetlinkMessage refuses.
func parse(b []byte) (Record, bool) {
	if len(b) < unix.SizeofNlMsghdr {
		return Record{}, false
	}
	// struct nlmsghdr: u32 length, u16 type, u16 flags, u32 seq, u32 pid.
	end := min(int(binary.NativeEndian.Uint32(b[0:4])), len(b))
	if end < unix.SizeofNlMsghdr {
		return Record{}, false
	}
	return Record{Type: binary.NativeEndian.Uint16(b[4:6]), Text: strings.TrimRight(string(b[unix.SizeofNlMsghdr:end]), "\x00\n")}, true
}

// SeccompLogged matches a seccomp record of a log action (code
// 0x7ffc0000, SECCOMP_RET_LOG) for one of the system call numbers, made by
// a process whose comm is comm ("" for any).
func SeccompLogged(comm string, nrs ...int) func(Record) bool {
	return func(r Record) bool {
		if r.Type != TypeSeccomp || r.Field("code") != "0x7ffc0000" || (comm != "" && r.Field("comm") != comm) {
			return false
		}
		for _, nr := range nrs {
			if r.Field("syscall") == fmt.Sprint(nr) {
				return true
			}
		}
		return false
	}
}
