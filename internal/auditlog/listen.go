package auditlog

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kubearmor/kscmp/api/violation"
)

// Message is one audit message as the tests see it: its type and its text
// ("audit(1764576000.123:45): ... syscall=83 ...").
type Message struct {
	Type uint16
	Text string
}

// Field returns the value of key in the message ("comm" → "mkdir", quotes
// removed), or "" when the message has no such field.
func (m Message) Field(key string) string {
	return strings.Trim(splitFields(m.Text)[key], `"`)
}

// Listener receives the audit messages made after Listen: the complain-mode
// proofs' view of the same socket the violations monitor reads.
type Listener struct{ sock *Socket }

// listenRcvBuf is the test listener's receive buffer: a proof waits for a
// handful of records, not a flood.
const listenRcvBuf = 1 << 20

// Listen joins the audit read-log multicast group.
func Listen() (*Listener, error) {
	s, err := Open(listenRcvBuf)
	if err != nil {
		return nil, err
	}
	return &Listener{sock: s}, nil
}

// Close leaves the group.
func (l *Listener) Close() error { return l.sock.Close() }

// Wait returns the first message for which match is true, or the context's
// error together with the messages seen, for the failure message. Dropped
// records (ErrOverflow) do not end it: the one wanted may still come.
func (l *Listener) Wait(ctx context.Context, match func(Message) bool) (Message, []Message, error) {
	var seen []Message
	for {
		if err := ctx.Err(); err != nil {
			return Message{}, seen, err
		}
		var found *Message
		err := l.sock.Read(func(typ uint16, payload []byte) {
			m := Message{Type: typ, Text: strings.TrimRight(string(payload), "\x00\n")}
			switch {
			case found != nil:
			case match(m):
				found = &m
			default:
				seen = append(seen, m)
			}
		})
		if found != nil {
			return *found, seen, nil
		}
		if err != nil && !errors.Is(err, ErrOverflow) {
			return Message{}, seen, err
		}
	}
}

// SeccompLogged matches a seccomp record of a log action (SECCOMP_RET_LOG,
// Action Audit) for one of the system call numbers, made by a process whose
// comm is comm ("" for any).
func SeccompLogged(comm string, nrs ...int) func(Message) bool {
	return func(m Message) bool {
		if m.Type != TypeSeccomp {
			return false
		}
		r, err := ParseRecord(m.Text)
		if err != nil || (comm != "" && r.Comm != comm) {
			return false
		}
		if a, _ := r.Action(); a != violation.ActionAudit {
			return false
		}
		for _, nr := range nrs {
			if r.Number == nr {
				return true
			}
		}
		return false
	}
}

// String is the message's text, for failure messages.
func (m Message) String() string { return fmt.Sprintf("type=%d %s", m.Type, m.Text) }
