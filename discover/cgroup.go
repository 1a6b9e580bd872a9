package discover

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// cgroup2Mounts are where a cgroup v2 hierarchy is mounted: the unified
// layout, or the hybrid one's unified part.
var cgroup2Mounts = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}

// CgroupIDOf returns the cgroup v2 id (the inode of its directory, what
// bpf_get_current_cgroup_id returns) of the process whose /proc directory is
// procDir.
func CgroupIDOf(procDir string) (uint64, error) {
	f, err := os.Open(filepath.Join(procDir, "cgroup"))
	if err != nil {
		return 0, fmt.Errorf("cgroup id: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var path string
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			path = p
		}
	}
	if path == "" {
		return 0, fmt.Errorf("cgroup id of %s: no cgroup v2 line", procDir)
	}
	for _, m := range cgroup2Mounts {
		var fs syscall.Statfs_t
		if syscall.Statfs(m, &fs) != nil || fs.Type != 0x63677270 { // CGROUP2_SUPER_MAGIC
			continue
		}
		st, err := os.Stat(filepath.Join(m, path))
		if err != nil {
			return 0, fmt.Errorf("cgroup id of %s: %w", procDir, err)
		}
		return st.Sys().(*syscall.Stat_t).Ino, nil
	}
	return 0, fmt.Errorf("cgroup id of %s: no cgroup v2 hierarchy mounted", procDir)
}
