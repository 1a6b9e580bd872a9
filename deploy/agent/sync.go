package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubearmor/kscmp/internal/fsutil"
)

// SyncResult counts what Sync did.
type SyncResult struct {
	Written, Unchanged, Removed, KeptInUse int
	// Changed are the paths (ProfilePath) of files that existed and were
	// rewritten with new content (a pod may run with the old one).
	Changed []string
}

// Sync makes seccompDir/kubearmor hold exactly the desired files (keyed by
// ProfilePath), plus files no longer desired that a pod still runs with
// (inUse). Every write is atomic and skipped when the content is already
// there, so a reader never sees half a profile and a crash at any point
// leaves only whole files. Files outside kubearmor/ are never touched, nor
// is OwnProfile, the agent's own profile; the directory is created when
// missing.
func Sync(seccompDir string, desired map[string][]byte, inUse map[string]bool) (SyncResult, error) {
	return SyncNamespace(seccompDir, "", desired, inUse)
}

// SyncNamespace is Sync for the profiles of one namespace: desired holds
// that namespace's files, and only kubearmor/<namespace>/ is touched. An
// empty namespace means all of kubearmor/.
func SyncNamespace(seccompDir, namespace string, desired map[string][]byte, inUse map[string]bool) (SyncResult, error) {
	var res SyncResult
	base := filepath.Join(seccompDir, ProfileDir)
	root, prefix := base, ProfileDir+"/"
	if namespace != "" {
		if !filepath.IsLocal(namespace) || strings.ContainsRune(namespace, '/') {
			return res, fmt.Errorf("sync: bad namespace %q", namespace)
		}
		root, prefix = filepath.Join(base, namespace), ProfileDir+"/"+namespace+"/"
	}
	for path, data := range desired {
		if !strings.HasPrefix(path, prefix) || !filepath.IsLocal(strings.TrimPrefix(path, ProfileDir+"/")) {
			return res, fmt.Errorf("sync: %q is not a path under %s", path, prefix)
		}
		if IsOwnProfile(path) {
			return res, fmt.Errorf("sync: %s is the agent's own profile, not made from policies", path)
		}
		full := filepath.Join(base, filepath.FromSlash(strings.TrimPrefix(path, ProfileDir+"/")))
		_, statErr := os.Stat(full)
		changed, err := fsutil.WriteManaged(full, data, 0o644)
		if err != nil {
			return res, fmt.Errorf("sync: %w", err)
		}
		if changed {
			res.Written++
			if statErr == nil {
				res.Changed = append(res.Changed, path)
			}
		} else {
			res.Unchanged++
		}
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return filepath.SkipDir
		}
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(seccompDir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case desired[rel] != nil:
		case IsOwnProfile(rel):
			// The agent's own: installed by its init container, needed
			// whenever its container (re)starts.
			res.KeptInUse++
		case fsutil.IsTemp(filepath.Base(p)):
			// A temporary file of a write that was killed: never a profile
			// (the rule deploy/host's cleanup uses too).
			return os.Remove(p)
		case inUse[rel]:
			res.KeptInUse++
		default:
			if err := os.Remove(p); err != nil {
				return err
			}
			res.Removed++
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("sync: %w", err)
	}
	// Namespace directories left empty go too (Remove fails when not empty).
	if namespace != "" {
		os.Remove(root)
	} else if entries, err := os.ReadDir(root); err == nil {
		for _, e := range entries {
			if e.IsDir() {
				os.Remove(filepath.Join(root, e.Name()))
			}
		}
	}
	return res, nil
}
