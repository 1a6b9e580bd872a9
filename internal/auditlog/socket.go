package auditlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnsupported is wrapped when this system cannot deliver audit records:
// no audit netlink (a kernel without CONFIG_AUDIT), no
// CAP_AUDIT_READ, or audit disabled (audit=0). The message names the probe
// that failed.
var ErrUnsupported = errors.New("audit netlink multicast not available")

// auditNLGroupReadlog is AUDIT_NLGRP_READLOG, the multicast group every
// audit record is copied to, beside auditd's unicast socket: a reader needs
// CAP_AUDIT_READ and takes nothing from auditd, and the kernel does not pass
// these copies through the rate-limited printk it uses when no auditd runs.
const auditNLGroupReadlog = 1

// auditGet is AUDIT_GET: ask the kernel for its audit status.
const auditGet = 1000

// Socket is a subscription to the audit multicast group.
type Socket struct {
	fd  int
	buf []byte
}

// Open subscribes to the audit multicast group with a receive buffer of
// rcvbuf bytes (forced past rmem_max: root may), so a burst waits in the
// socket rather than being dropped; what is dropped anyway is reported by
// Read (ErrOverflow). It is the named feature probe "audit netlink
// multicast": its errors wrap ErrUnsupported.
func Open(rcvbuf int) (*Socket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		return nil, fmt.Errorf("%w: probe audit netlink multicast: socket(AF_NETLINK, NETLINK_AUDIT): %w", ErrUnsupported, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (auditNLGroupReadlog - 1)}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: probe audit netlink multicast: join group AUDIT_NLGRP_READLOG (needs CAP_AUDIT_READ): %w", ErrUnsupported, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	}
	// A bounded wait, so the reader sees its context end.
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("audit socket: SO_RCVTIMEO: %w", err)
	}
	return &Socket{fd: fd, buf: make([]byte, 1<<16)}, nil
}

// ErrOverflow is what Read returns when the kernel dropped records because
// the socket's buffer was full.
var ErrOverflow = errors.New("audit socket overflowed (ENOBUFS)")

// Read hands the next datagram's netlink messages as (type, payload) pairs
// to fn; it returns nil after a timeout (200ms) without messages, so a
// caller can check its context, and ErrOverflow when records were dropped.
func (s *Socket) Read(fn func(typ uint16, payload []byte)) error {
	n, _, err := unix.Recvfrom(s.fd, s.buf, 0)
	switch {
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return nil
	case errors.Is(err, unix.ENOBUFS):
		return ErrOverflow
	case err != nil:
		return fmt.Errorf("read audit socket: %w", err)
	}
	return ParseMessages(s.buf[:n], fn)
}

// ParseMessages splits a datagram into netlink messages. The audit
// subsystem has set nlmsg_len to the payload's length instead of the
// message's in some kernels' multicast copies (a quirk its code comments
// on), and pads nothing: a length that does not cover the header is taken
// as the payload's, and a short last message as what is there.
func ParseMessages(b []byte, fn func(typ uint16, payload []byte)) error {
	for len(b) >= syscall.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:]))
		typ := binary.NativeEndian.Uint16(b[4:])
		if l < syscall.NLMSG_HDRLEN {
			l += syscall.NLMSG_HDRLEN
		}
		if l > len(b) {
			l = len(b)
		}
		fn(typ, b[syscall.NLMSG_HDRLEN:l])
		next := (l + syscall.NLMSG_ALIGNTO - 1) &^ (syscall.NLMSG_ALIGNTO - 1)
		if next >= len(b) {
			return nil
		}
		b = b[next:]
	}
	return nil
}

// Close leaves the group.
func (s *Socket) Close() error { return unix.Close(s.fd) }

// Status is what the kernel says of its audit subsystem (the leading
// fields of struct audit_status).
type Status struct {
	Enabled uint32
	Lost    uint32
	Backlog uint32
}

// ReadStatus asks the kernel for its audit status on a unicast socket of
// its own (AUDIT_GET needs CAP_AUDIT_CONTROL; it changes nothing).
func ReadStatus() (Status, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		return Status{}, fmt.Errorf("audit status: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	req := make([]byte, unix.NLMSG_HDRLEN)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], auditGet)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], 1)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return Status{}, fmt.Errorf("audit status: AUDIT_GET: %w", err)
	}
	buf := make([]byte, 1<<12)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return Status{}, fmt.Errorf("audit status: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return Status{}, fmt.Errorf("audit status: %w", err)
		}
		for _, m := range msgs {
			switch {
			case m.Header.Type == auditGet && len(m.Data) >= 32:
				// mask, enabled, failure, pid, rate_limit, backlog_limit,
				// lost, backlog: u32 each.
				u := func(i int) uint32 { return binary.NativeEndian.Uint32(m.Data[4*i:]) }
				return Status{Enabled: u(1), Lost: u(6), Backlog: u(7)}, nil
			case m.Header.Type == syscall.NLMSG_ERROR && len(m.Data) >= 4:
				if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
					return Status{}, fmt.Errorf("audit status: AUDIT_GET: %w", unix.Errno(-e))
				}
			}
		}
	}
}
