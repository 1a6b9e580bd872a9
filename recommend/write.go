package recommend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/internal/fsutil"
)

// Write writes the files under dir, each atomically and only when changed,
// and returns how many changed.
func (r *Result) Write(dir string) (changed int, err error) {
	for _, f := range r.Files {
		c, err := fsutil.WriteFile(filepath.Join(dir, filepath.FromSlash(f.Path)), f.Data, 0o644)
		if err != nil {
			return changed, fmt.Errorf("recommend: %w", err)
		}
		if c {
			changed++
		}
	}
	return changed, nil
}

// Commit writes the result into the git checkout repo, under dir (relative
// to repo), on a new branch, and commits it with the summary as the message:
// the pull request a person then opens. The branch must not exist yet. It
// returns the new commit's id, or "" when nothing changed (then no branch
// is left behind).
func (r *Result) Commit(ctx context.Context, repo, dir, branch string) (string, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", repo}, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
		}
		return strings.TrimSpace(out.String()), nil
	}
	if filepath.IsAbs(dir) || strings.HasPrefix(filepath.Clean(dir), "..") {
		return "", errors.New("recommend: with --git, -o must be a directory inside the repository, relative to it")
	}
	if _, err := git("rev-parse", "--is-inside-work-tree"); err != nil {
		return "", fmt.Errorf("recommend: %s is not a git checkout: %w", repo, err)
	}
	if st, err := git("status", "--porcelain", "--", dir); err != nil {
		return "", err
	} else if st != "" {
		return "", fmt.Errorf("recommend: %s has uncommitted changes under %s; commit or stash them first", repo, dir)
	}
	prev, err := git("rev-parse", "--abbrev-ref", "HEAD")
	if err != nil {
		return "", err
	}
	if _, err := git("checkout", "-q", "-b", branch); err != nil {
		return "", fmt.Errorf("recommend: new branch %s: %w", branch, err)
	}
	// dir was clean (checked above): undoing touches only dir, never the
	// rest of the user's work tree or index.
	undo := func() {
		git("reset", "-q", "--", dir)
		git("checkout", "-q", "--", dir)
		git("clean", "-q", "-f", "-d", "--", dir)
		git("checkout", "-q", prev)
		git("branch", "-q", "-D", branch)
	}
	if _, err := r.Write(filepath.Join(repo, dir)); err != nil {
		undo()
		return "", err
	}
	if _, err := git("add", "--", dir); err != nil {
		undo()
		return "", err
	}
	if st, _ := git("diff", "--cached", "--name-only", "--", dir); st == "" {
		undo()
		return "", nil
	}
	msg, err := os.CreateTemp("", "kscmp-commit-*.md")
	if err != nil {
		undo()
		return "", err
	}
	defer os.Remove(msg.Name())
	fmt.Fprintf(msg, "kscmp: recommended seccomp policies\n\n%s", r.Summary)
	msg.Close()
	// Only dir is committed, whatever else the user had staged.
	if _, err := git("commit", "-q", "-F", msg.Name(), "--", dir); err != nil {
		undo()
		return "", err
	}
	return git("rev-parse", "HEAD")
}

// Existing reads the reviewed policies in dir, for Options.Existing: a
// directory that does not exist yet (nor can: a file is in the way, which
// writing then reports), or holds no policy file, has none. Each file is
// read as api.LoadLimit reads it, with the limit max.
func Existing(dir string, max int64) ([]api.Document, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	docs, err := api.LoadLimit(max, dir)
	if errors.Is(err, api.ErrNoPolicyFiles) {
		return nil, nil
	}
	return docs, err
}
