package discover

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kubearmor/kscmp/bpf"
	"github.com/kubearmor/kscmp/internal/procfs"
)

// NewKey tells who made the first recorded syscall of a new key. The kernel
// sends it once per key, from that first syscall; the Recorder adds what
// /proc/<pid> says at the time the event is read, while the process most
// likely still lives.
type NewKey struct {
	// Key is the new key.
	Key Key
	// MountNS is the task's mount namespace inode.
	MountNS uint32
	// CgroupID is the task's cgroup v2 id.
	CgroupID uint64
	// PID is the process (thread group) id, TID the thread id, both as seen
	// from the initial PID namespace.
	PID, TID int
	// Comm is the thread's name (at most 15 bytes).
	Comm string
	// ABI and Syscall are the first recorded call.
	ABI     ABI
	Syscall int
	// Start is the thread's start time since boot (CLOCK_BOOTTIME), which
	// tells a reused PID apart.
	Start time.Duration

	// KernelExe and KernelCgroup are the executable path (relative to the
	// task's mount namespace root) and the cgroup v2 path, as the kernel
	// walked them at the first syscall. A path too deep or long for the event
	// is cut and marked by KernelExeTruncated or KernelCgroupTruncated.
	KernelExe, KernelCgroup                   string
	KernelExeTruncated, KernelCgroupTruncated bool

	// ProcExe and ProcCgroup are /proc/<pid>/exe and the cgroup v2 (or
	// systemd hierarchy) path of /proc/<pid>/cgroup, read when the event was
	// read. They are empty if ProcErr is set: the process was gone, or its
	// PID was already reused.
	ProcExe, ProcCgroup string
	ProcErr             error
}

// Exe returns ProcExe when /proc was read, KernelExe otherwise.
func (e NewKey) Exe() string {
	if e.ProcErr == nil && e.ProcExe != "" {
		return e.ProcExe
	}
	return e.KernelExe
}

// Cgroup returns ProcCgroup when /proc was read, KernelCgroup otherwise.
func (e NewKey) Cgroup() string {
	if e.ProcErr == nil && e.ProcCgroup != "" {
		return e.ProcCgroup
	}
	return e.KernelCgroup
}

// decodeNewKey parses one ring buffer record.
func decodeNewKey(raw []byte) (NewKey, error) {
	var ev bpf.RecorderNewKeyEvent
	if len(raw) < binary.Size(ev) {
		return NewKey{}, fmt.Errorf("new-key event: %d bytes, want %d", len(raw), binary.Size(ev))
	}
	if _, err := binary.Decode(raw, binary.NativeEndian, &ev); err != nil {
		return NewKey{}, fmt.Errorf("new-key event: %w", err)
	}
	return NewKey{
		Key:                   Key(ev.Key),
		MountNS:               ev.Mntns,
		CgroupID:              ev.CgroupId,
		PID:                   int(ev.Tgid),
		TID:                   int(ev.Pid),
		Comm:                  cString(ev.Comm[:]),
		ABI:                   ABI(ev.Abi),
		Syscall:               int(ev.Nr),
		Start:                 time.Duration(ev.StartBoottime),
		KernelExe:             LeafFirstPath(ev.Exe[:], int(ev.ExeLen)),
		KernelCgroup:          LeafFirstPath(ev.Cgroup[:], int(ev.CgroupLen)),
		KernelExeTruncated:    ev.Flags&bpf.EventExeTruncated != 0,
		KernelCgroupTruncated: ev.Flags&bpf.EventCgroupTruncated != 0,
	}, nil
}

func int8sToBytes(s []int8) []byte {
	b := make([]byte, len(s))
	for i, c := range s {
		b[i] = byte(c)
	}
	return b
}

func cString(s []int8) string {
	b := int8sToBytes(s)
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// LeafFirstPath turns the first n bytes of s, NUL-terminated path components
// stored leaf first as the kernel programs walk them (bpf/c/cgpath.h), into
// "/a/b/c".
func LeafFirstPath(s []int8, n int) string {
	n = min(max(n, 0), len(s))
	parts := strings.Split(strings.TrimSuffix(string(int8sToBytes(s[:n])), "\x00"), "\x00")
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		if parts[i] == "" {
			continue
		}
		b.WriteByte('/')
		b.WriteString(parts[i])
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// ErrPIDReused is NewKey.ProcErr when /proc/<pid> belongs to another process
// than the one that made the event (the PID was reused).
var ErrPIDReused = errors.New("pid reused")

// readProc fills ProcExe and ProcCgroup from procRoot/<pid>, checking that the
// thread's start time matches the event's.
func readProc(procRoot string, ev *NewKey) {
	exe, cg, err := procIdentity(procRoot, ev.PID, ev.TID, ev.Start)
	ev.ProcExe, ev.ProcCgroup, ev.ProcErr = exe, cg, err
}

func procIdentity(procRoot string, pid, tid int, start time.Duration) (exe, cgroup string, err error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	exe, err = os.Readlink(filepath.Join(dir, "exe"))
	if err != nil {
		return "", "", fmt.Errorf("read exe of pid %d: %w", pid, err)
	}
	cgroup, err = readCgroupFile(filepath.Join(dir, "cgroup"))
	if err != nil {
		return "", "", fmt.Errorf("read cgroup of pid %d: %w", pid, err)
	}
	// Read after exe and cgroup: if the thread still has the event's start
	// time now, what was read before belongs to it.
	ticks, err := procfs.StartTicks(filepath.Join(dir, "task", strconv.Itoa(tid), "stat"))
	if err != nil {
		return "", "", fmt.Errorf("read start time of pid %d: %w", pid, err)
	}
	if ticks != uint64(start/(time.Second/userHZ)) {
		return "", "", fmt.Errorf("pid %d: %w", pid, ErrPIDReused)
	}
	return exe, cgroup, nil
}

// userHZ is the unit of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const userHZ = 100

// ProcCgroup returns the cgroup v2 path of the process whose /proc
// directory is procDir (the systemd hierarchy's on a v1-only system), as
// discover reads it to name a workload.
func ProcCgroup(procDir string) (string, error) {
	return readCgroupFile(filepath.Join(procDir, "cgroup"))
}

// readCgroupFile returns the cgroup v2 path ("0::/path") of a /proc cgroup
// file, or the systemd hierarchy's path on a v1-only system.
func readCgroupFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var systemd string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		ctrl, p, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		switch {
		case id == "0" && ctrl == "":
			return p, nil
		case ctrl == "name=systemd":
			systemd = p
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if systemd == "" {
		return "", fmt.Errorf("%s: no cgroup v2 or systemd line", path)
	}
	return systemd, nil
}
