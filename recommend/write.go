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
	"github.com/kubearmor/kscmp/internal/safepath"
)

// Write writes the files under dir, each atomically and only when changed,
// and returns how many changed. The files are managed files confined to
// dir: their paths are resolved inside it (safepath: a link in the tree,
// such as a namespace directory linked to /etc, is followed as if dir were
// "/", never out of it), only a regular file is replaced (a FIFO or device
// placed where a policy goes is refused, never opened), and the temporary
// files a killed earlier run left beside them are removed.
func (r *Result) Write(dir string) (changed int, err error) {
	return r.writeIn(dir, "")
}

// writeIn is Write into the directory sub of the root dir, resolved inside
// dir: Commit confines a checkout's policies to the checkout, so that a
// link committed for sub cannot lead the writes out of it.
func (r *Result) writeIn(dir, sub string) (changed int, err error) {
	root, err := safepath.OpenOrCreate(dir)
	if err != nil {
		return 0, fmt.Errorf("recommend: %w", err)
	}
	defer root.Close()
	if err := r.check(root, sub); err != nil {
		return 0, fmt.Errorf("recommend: nothing written: %w", err)
	}
	ours := map[string]map[string]bool{} // directory → the file names written there
	for _, f := range r.Files {
		rel := filepath.Join(sub, filepath.FromSlash(f.Path))
		c, err := root.WriteFile(rel, f.Data, 0o644)
		if err != nil {
			return changed, fmt.Errorf("recommend: %w", err)
		}
		if c {
			changed++
		}
		d, name := filepath.Split(rel)
		if ours[d] == nil {
			ours[d] = map[string]bool{}
		}
		ours[d][name] = true
	}
	for d, names := range ours {
		if _, err := root.RemoveTemps(d, func(name string) bool { return names[name] }); err != nil {
			return changed, fmt.Errorf("recommend: %w", err)
		}
	}
	return changed, nil
}

// check refuses, before anything is written, what would stop a write
// half-way: a directory that cannot be made (a file or a link leading
// nowhere inside the root in its place) or a policy's place taken by
// anything but a regular file. The directories are made here.
func (r *Result) check(root *safepath.Root, sub string) error {
	for _, f := range r.Files {
		rel := filepath.Join(sub, filepath.FromSlash(f.Path))
		d, err := root.MkdirAll(filepath.Dir(rel))
		if err != nil {
			return err
		}
		d.Close()
		m, err := root.Lstat(rel)
		if err == nil && !m.IsRegular() {
			return fsutil.NotRegular(root.Join(rel), m, "written")
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Commit writes the result into the git checkout repo, under dir (relative
// to repo), on a new branch, and commits it with the summary as the message:
// the pull request a person then opens. The branch must not exist yet. It
// returns the new commit's id, and leaves the checkout on the new branch.
// It returns "" when there is nothing to commit (no file recommended, or
// every file as committed already): then, and on any failure, no branch is
// left behind and the checkout is as it was — on its branch, on the same
// commit when HEAD was detached, on its unborn branch in a repository
// without commits — with dir as it was.
func (r *Result) Commit(ctx context.Context, repo, dir, branch string) (string, error) {
	g := gitIn(ctx, repo)
	if filepath.IsAbs(dir) || strings.HasPrefix(filepath.Clean(dir), "..") {
		return "", errors.New("recommend: with --git, -o must be a directory inside the repository, relative to it")
	}
	if _, err := g.run("rev-parse", "--is-inside-work-tree"); err != nil {
		return "", fmt.Errorf("recommend: %s is not a git checkout: %w", repo, err)
	}
	if st, err := g.run("status", "--porcelain", "--", dir); err != nil {
		return "", err
	} else if st != "" {
		return "", fmt.Errorf("recommend: %s has uncommitted changes under %s; commit or stash them first", repo, dir)
	}
	if len(r.Files) == 0 {
		return "", nil
	}
	prev, err := g.head()
	if err != nil {
		return "", err
	}
	if _, err := g.run("checkout", "-q", "-b", branch); err != nil {
		return "", fmt.Errorf("recommend: new branch %s: %w", branch, err)
	}
	fail := func(err error) (string, error) {
		if uerr := g.undo(prev, dir, branch); uerr != nil {
			return "", errors.Join(err, uerr)
		}
		return "", err
	}
	if _, err := r.writeIn(repo, dir); err != nil {
		return fail(err)
	}
	if _, err := g.run("add", "--", dir); err != nil {
		return fail(err)
	}
	if st, err := g.run("diff", "--cached", "--name-only", "--", dir); err != nil {
		return fail(err)
	} else if st == "" {
		return fail(nil)
	}
	msg, err := os.CreateTemp("", "kscmp-commit-*.md")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(msg.Name())
	fmt.Fprintf(msg, "kscmp: recommended seccomp policies\n\n%s", r.Summary)
	if err := msg.Close(); err != nil {
		return fail(err)
	}
	// Only dir is committed, whatever else the user had staged.
	if _, err := g.run("commit", "-q", "-F", msg.Name(), "--", dir); err != nil {
		return fail(err)
	}
	return g.run("rev-parse", "HEAD")
}

// git runs git in one checkout.
type git struct {
	ctx  context.Context
	repo string
}

func gitIn(ctx context.Context, repo string) git { return git{ctx, repo} }

// run runs git with args and returns its trimmed output; an error carries
// git's own message.
func (g git) run(args ...string) (string, error) {
	cmd := exec.CommandContext(g.ctx, "git", append([]string{"-C", g.repo}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// head is where a checkout's HEAD is: a branch (ref, refs/heads/…) and its
// commit ("" while the branch is unborn), or a detached commit (ref "").
type head struct{ ref, commit string }

// head reads HEAD without resolving it through the branch name alone: a
// detached HEAD has no branch to go back to, only its commit.
func (g git) head() (head, error) {
	ref, err := g.run("symbolic-ref", "-q", "HEAD")
	if err != nil {
		ref = "" // detached (exit 1, no output)
	}
	commit, err := g.run("rev-parse", "--verify", "-q", "HEAD")
	if err != nil {
		commit = "" // unborn: a repository without commits
	}
	if ref == "" && commit == "" {
		return head{}, fmt.Errorf("recommend: %s: HEAD is neither a branch nor a commit", g.repo)
	}
	return head{ref, commit}, nil
}

// undo puts the checkout back to prev and dir to its committed state, and
// deletes branch: dir was clean (Commit checked it), so this touches only
// what Commit wrote, never the rest of the user's work tree or index.
func (g git) undo(prev head, dir, branch string) error {
	var errs []error
	try := func(args ...string) {
		if _, err := g.run(args...); err != nil {
			errs = append(errs, err)
		}
	}
	if prev.commit != "" {
		try("reset", "-q", "--", dir)
	} else {
		try("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", dir)
	}
	if tracked, _ := g.run("ls-files", "--", dir); tracked != "" {
		try("checkout", "-q", "--", dir)
	}
	try("clean", "-q", "-f", "-d", "--", dir)
	switch {
	case prev.ref == "":
		try("checkout", "-q", "--detach", prev.commit)
	case prev.commit == "":
		try("symbolic-ref", "HEAD", prev.ref)
	default:
		try("checkout", "-q", strings.TrimPrefix(prev.ref, "refs/heads/"), "--")
	}
	if _, err := g.run("rev-parse", "--verify", "-q", "refs/heads/"+branch); err == nil {
		try("branch", "-q", "-D", branch)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("recommend: the checkout %s could not be restored: %w", g.repo, err)
	}
	return nil
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
