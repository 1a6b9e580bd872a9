package discover

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/kubearmor/kscmp/bpf"
)

// MaxKeysLimit is the most keys (workloads) RecorderOptions.MaxKeys may ask
// the kernel map to hold: NewRecorder refuses more.
const MaxKeysLimit = 1 << 24

// KeyKind says what a Key's id is.
type KeyKind uint8

// The kinds of keys.
const (
	// KeyMountNS: the id is the unique id of a mount namespace other than
	// the host's (a container, or any task that unshared its mounts). It is
	// the id ioctl(NS_GET_MNTNS_ID) returns (see MountNSID), not the inode:
	// the kernel hands a dead namespace's inode to the next new one at once,
	// while the id is never reused. NewKey and KeySet carry the inode.
	KeyMountNS KeyKind = 1
	// KeyCgroup: the id is the cgroup v2 id of a task in the host mount
	// namespace (recorded only with RecorderOptions.IncludeHost).
	KeyCgroup KeyKind = 2
)

// String returns "mntns" or "cgroup".
func (k KeyKind) String() string {
	switch k {
	case KeyMountNS:
		return "mntns"
	case KeyCgroup:
		return "cgroup"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Key identifies one recorded workload: the kernel's map key, the kind in the
// top two bits and the id below.
type Key uint64

// MountNSKey returns the key of tasks in the mount namespace with unique id
// id (see MountNSID).
func MountNSKey(id uint64) Key {
	return Key(bpf.KeyMountNS | id&bpf.KeyIDMask)
}

// CgroupKey returns the key of host-namespace tasks in the cgroup with id id.
func CgroupKey(id uint64) Key {
	return Key(bpf.KeyCgroup | id&bpf.KeyIDMask)
}

// Kind returns what the key's id is.
func (k Key) Kind() KeyKind {
	return KeyKind(uint64(k) >> bpf.KeyKindShift)
}

// ID returns the mount namespace's unique id or the cgroup id.
func (k Key) ID() uint64 {
	return uint64(k) & bpf.KeyIDMask
}

// String returns "mntns:<id>" or "cgroup:<id>".
func (k Key) String() string {
	return fmt.Sprintf("%s:%d", k.Kind(), k.ID())
}

// PIDKey returns the key the recorder records the process pid under: its
// mount namespace's when that is not the host's (hostNS; this process's when
// 0), else its cgroup's, and then host is true (the recorder must include
// the host to see it). It is how a user's --pid becomes a filter: a process
// id does not last, its workload's key does.
func PIDKey(pid int, hostNS uint32) (key Key, host bool, err error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	mine := hostNS
	if mine == 0 {
		if mine, err = MountNSOf("/proc/self"); err != nil {
			return 0, false, err
		}
	}
	theirs, err := MountNSOf(dir)
	if err != nil {
		return 0, false, err
	}
	if theirs != mine {
		id, err := MountNSID(dir)
		return MountNSKey(id), false, err
	}
	id, err := CgroupIDOf(dir)
	return CgroupKey(id), true, err
}
