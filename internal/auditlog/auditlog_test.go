package auditlog

import (
	"encoding/binary"
	"testing"
)

// TestParse reads a record as the kernel sends it: one message whose length
// is not padded to netlink's 4-byte alignment.
func TestParse(t *testing.T) {
	text := `audit(1796106193.455:6): auid=4294967295 uid=0 pid=25565 comm="mkdir" exe="/usr/bin/mkdir" sig=0 arch=c000003e syscall=83 compat=0 code=0x7ffc0000`
	b := make([]byte, 16+len(text))
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], TypeSeccomp)
	copy(b[16:], text)
	rec, ok := parse(b)
	if !ok || rec.Type != TypeSeccomp || rec.Text != text {
		t.Fatalf("parse: %v %+v", ok, rec)
	}
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
	if _, ok := parse(b[:10]); ok {
		t.Error("a short message parsed")
	}
}
