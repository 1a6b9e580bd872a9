package nspawntest

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kubearmor/kscmp/internal/procfs"
)

// cgroupPrefix starts the name of the cgroup that a Machine's systemd-nspawn
// runs in: kscmp-nspawn-<owner pid>-<owner start time>-<random>. The owner
// is the test process; a cgroup whose owner is gone is left over from a test
// binary that died without its cleanups and is removed by the next Start.
const cgroupPrefix = "kscmp-nspawn-"

// hierarchy is one cgroup hierarchy that systemd-nspawn uses: the cgroup v2
// hierarchy, or the v1 "name=systemd" one of a legacy or hybrid layout.
type hierarchy struct {
	v2  bool
	dir string // the directory of this process's own cgroup in the hierarchy
}

// ownHierarchies returns the cgroup directories of the calling process in
// the hierarchies systemd-nspawn tracks its machine in (v2 and, on a hybrid
// or legacy layout, v1 name=systemd), read from /proc/self/cgroup and
// /proc/self/mountinfo.
func ownHierarchies() ([]hierarchy, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("own cgroup: %w", err)
	}
	var v2Path, systemdPath string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2Path = parts[2]
		case parts[1] == "name=systemd":
			systemdPath = parts[2]
		}
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	var hs []hierarchy
	if v2Path != "" {
		if m, ok := mounts["cgroup2"]; ok {
			hs = append(hs, hierarchy{v2: true, dir: m.join(v2Path)})
		}
	}
	if systemdPath != "" {
		if m, ok := mounts["name=systemd"]; ok {
			hs = append(hs, hierarchy{dir: m.join(systemdPath)})
		}
	}
	if len(hs) == 0 {
		return nil, errors.New("own cgroup: neither a cgroup v2 nor a name=systemd hierarchy is mounted")
	}
	return hs, nil
}

// cgroupMount is where a cgroup hierarchy is mounted and which of its
// directories the mount shows.
type cgroupMount struct{ root, point string }

// join returns the directory of the cgroup path p (as in /proc/PID/cgroup).
func (m cgroupMount) join(p string) string {
	rel := strings.TrimPrefix(p, m.root)
	return filepath.Join(m.point, rel)
}

// cgroupMounts maps "cgroup2" and "name=systemd" to their first mount in
// /proc/self/mountinfo.
func cgroupMounts() (map[string]cgroupMount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroup mounts: %w", err)
	}
	defer f.Close()
	mounts := map[string]cgroupMount{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f1, f2 := strings.Fields(pre), strings.Fields(post)
		if len(f1) < 5 || len(f2) < 3 {
			continue
		}
		m := cgroupMount{root: unescapeMountinfo(f1[3]), point: unescapeMountinfo(f1[4])}
		key := ""
		switch {
		case f2[0] == "cgroup2":
			key = "cgroup2"
		case f2[0] == "cgroup" && slices.Contains(strings.Split(f2[2], ","), "name=systemd"):
			key = "name=systemd"
		}
		if _, seen := mounts[key]; key != "" && !seen {
			mounts[key] = m
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cgroup mounts: %w", err)
	}
	return mounts, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, ...) of a
// mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// procStartTime returns the start time of process pid (clock ticks since
// boot).
func procStartTime(pid int) (uint64, error) {
	return procfs.StartTicks(fmt.Sprintf("/proc/%d/stat", pid))
}

// cgroupName returns the name of a new machine cgroup owned by this process.
func cgroupName(suffix string) (string, error) {
	pid := os.Getpid()
	start, err := procStartTime(pid)
	if err != nil {
		return "", fmt.Errorf("own start time: %w", err)
	}
	return fmt.Sprintf("%s%d-%d-%s", cgroupPrefix, pid, start, suffix), nil
}

// ownerAlive reports whether the process that created the machine cgroup
// called name still runs (a pid with another start time is another process).
func ownerAlive(name string) bool {
	parts := strings.Split(strings.TrimPrefix(name, cgroupPrefix), "-")
	if len(parts) != 3 {
		return true // not ours to judge
	}
	pid, err1 := strconv.Atoi(parts[0])
	start, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return true
	}
	got, err := procStartTime(pid)
	return err == nil && got == start
}

// staleCgroups returns the machine cgroups under the hierarchies' own
// directories whose owner process is gone, grouped by name.
func staleCgroups(hs []hierarchy) map[string][]string {
	stale := map[string][]string{}
	for _, h := range hs {
		entries, err := os.ReadDir(h.dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), cgroupPrefix) && !ownerAlive(e.Name()) {
				stale[e.Name()] = append(stale[e.Name()], filepath.Join(h.dir, e.Name()))
			}
		}
	}
	return stale
}

// cgroupDirs returns dir and every cgroup below it, parents first.
func cgroupDirs(dir string) []string {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone meanwhile
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	return dirs
}

// cgroupPids returns the processes in the cgroups dirs and below.
func cgroupPids(dirs []string) []int {
	var pids []int
	for _, top := range dirs {
		for _, d := range cgroupDirs(top) {
			data, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}

// killCgroups kills every process in the cgroups dirs and below (cgroup.kill
// where the kernel has it, SIGKILL to each listed process otherwise) and
// waits up to timeout until none is left.
func killCgroups(dirs []string, timeout time.Duration) error {
	for _, d := range dirs {
		_ = os.WriteFile(filepath.Join(d, "cgroup.kill"), []byte("1"), 0) // v2, Linux ≥ 5.14
	}
	deadline := time.Now().Add(timeout)
	for {
		pids := cgroupPids(dirs)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still in %s after %v", pids, strings.Join(dirs, ", "), timeout)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeCgroups removes the cgroups dirs and everything below them, children
// first. It retries for up to timeout while a cgroup is still busy (its last
// processes are being released).
func removeCgroups(dirs []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var errs []error
		for _, top := range dirs {
			sub := cgroupDirs(top)
			for i := len(sub) - 1; i >= 0; i-- {
				if err := os.Remove(sub[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
		if len(errs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("removing cgroups: %w", errors.Join(errs...))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
