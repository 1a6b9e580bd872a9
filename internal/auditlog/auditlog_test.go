package auditlog

import (
	"encoding/binary"
	"testing"
)

// TestParse reads a record as the kernel sends it: one message whose length
// is not padded to netlink's 4-byte alignment; the test listener's Field
// and SeccompLogged read it.
func TestParse(t *testing.T) {
	text := `audit(1796106193.455:6): auid=4294967295 uid=0 pid=25565 comm="mkdir" exe="/usr/bin/mkdir" sig=0 arch=c000003e syscall=83 compat=0 code=0x7ffc0000`
	b := make([]byte, 16+len(text))
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], TypeSeccomp)
	copy(b[16:], text)
	var msgs []Message
	_ = ParseMessages(b, func(typ uint16, p []byte) { msgs = append(msgs, Message{Type: typ, Text: string(p)}) })
	if len(msgs) != 1 || msgs[0].Type != TypeSeccomp || msgs[0].Text != text {
		t.Fatalf("parse: %+v", msgs)
	}
	rec := msgs[0]
	if rec.Field("comm") != "mkdir" || rec.Field("syscall") != "83" || rec.Field("none") != "" {
		t.Errorf("fields: comm %q syscall %q", rec.Field("comm"), rec.Field("syscall"))
	}
	if !SeccompLogged("mkdir", 258, 83)(rec) || SeccompLogged("ls", 83)(rec) || SeccompLogged("", 84)(rec) {
		t.Error("SeccompLogged matches the wrong records")
	}
	rec.Text = rec.Text[:len(rec.Text)-len("0x7ffc0000")] + "0x7fff0000" // SECCOMP_RET_ALLOW logged: not a log action
	if SeccompLogged("mkdir", 83)(rec) {
		t.Error("matched a record of another action")
	}
	msgs = nil
	_ = ParseMessages(b[:10], func(typ uint16, p []byte) { msgs = append(msgs, Message{}) })
	if len(msgs) != 0 {
		t.Error("a short message parsed")
	}
}
