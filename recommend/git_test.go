package recommend

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// newRepo makes a git repository with the identity commits need, and a
// helper that runs git in it and fails the test on error.
func newRepo(t *testing.T) (string, func(args ...string) string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Missing(t, "git (apt-get install git)")
	}
	for _, k := range []string{"GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"} {
		t.Setenv(k, "t")
	}
	for _, k := range []string{"GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"} {
		t.Setenv(k, "t@example.com")
	}
	repo := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main")
	return repo, git
}

// branches lists the repository's branches.
func branches(git func(...string) string) string {
	return git("for-each-ref", "--format=%(refname:short)", "refs/heads")
}

// TestGitRestoresCheckout: whenever Commit makes no commit — nothing to
// commit, a write that fails — the checkout is as it was: on its branch,
// on its commit when HEAD was detached, on its unborn branch in a
// repository without commits; no branch is left (#12 item 9). Before the
// fix a detached HEAD was left on the new branch, and a repository without
// commits or an empty recommendation failed.
func TestGitRestoresCheckout(t *testing.T) {
	ctx := context.Background()
	res, err := Recommend([]report.Source{reportOf("a", pod("ns", "p", "c", map[string]string{"app": "x"}, nil, "read"))}, Options{})
	if err != nil {
		t.Fatal(err)
	}

	// A repository without commits: the first commit is made.
	repo, git := newRepo(t)
	if id, err := res.Commit(ctx, repo, "seccomp", "kscmp/first"); err != nil || id == "" {
		t.Fatalf("first commit in an empty repository: %q %v", id, err)
	}
	if b := git("symbolic-ref", "--short", "HEAD"); b != "kscmp/first" {
		t.Errorf("after the commit: on %s", b)
	}

	// Detached HEAD, nothing to commit: still detached on the same commit.
	commit := git("rev-parse", "HEAD")
	git("checkout", "-q", "--detach", commit)
	if id, err := res.Commit(ctx, repo, "seccomp", "kscmp/again"); err != nil || id != "" {
		t.Errorf("nothing to commit: %q %v", id, err)
	}
	if _, err := exec.Command("git", "-C", repo, "symbolic-ref", "-q", "HEAD").Output(); err == nil || git("rev-parse", "HEAD") != commit {
		t.Errorf("the detached HEAD was not restored: %s", git("status", "--short", "--branch"))
	}
	if b := branches(git); b != "kscmp/first" {
		t.Errorf("branches %q: a branch was left", b)
	}

	// A write that fails (a file where a directory must be), detached and
	// on a branch: the checkout as it was, the file untouched, no branch.
	git("checkout", "-q", "-b", "main")
	os.MkdirAll(filepath.Join(repo, "other"), 0o755)
	os.WriteFile(filepath.Join(repo, "other", "ns"), []byte("in the way\n"), 0o644)
	git("add", "other")
	git("commit", "-q", "-m", "a file in the way")
	commit = git("rev-parse", "HEAD")
	for _, detached := range []bool{false, true} {
		if detached {
			git("checkout", "-q", "--detach", "main")
		}
		if _, err := res.Commit(ctx, repo, "other", "kscmp/fails"); err == nil || strings.Contains(err.Error(), "could not be restored") {
			t.Errorf("detached %v: a failing write: %v", detached, err)
		}
		ref, _ := exec.Command("git", "-C", repo, "symbolic-ref", "-q", "--short", "HEAD").Output()
		if want := map[bool]string{false: "main", true: ""}[detached]; strings.TrimSpace(string(ref)) != want || git("rev-parse", "HEAD") != commit {
			t.Errorf("detached %v: HEAD %q %s, want %q %s", detached, ref, git("rev-parse", "HEAD"), want, commit)
		}
		if st := git("status", "--porcelain"); st != "" {
			t.Errorf("detached %v: the work tree changed: %q", detached, st)
		}
		if b := branches(git); b != "kscmp/first\nmain" {
			t.Errorf("detached %v: branches %q", detached, b)
		}
	}

	// A failure in a repository without commits leaves its branch unborn
	// (the file in the way is ignored, so the directory counts as clean).
	empty, egit := newRepo(t)
	os.WriteFile(filepath.Join(empty, ".gitignore"), []byte("/other\n"), 0o644)
	os.WriteFile(filepath.Join(empty, "other"), []byte("a file where the directory goes\n"), 0o644)
	egit("add", ".gitignore")
	if _, err := res.Commit(ctx, empty, "other", "kscmp/fails"); err == nil || !strings.Contains(err.Error(), "not a directory") || strings.Contains(err.Error(), "could not be restored") {
		t.Errorf("a failing write in an empty repository: %v", err)
	}
	if b := egit("symbolic-ref", "HEAD"); b != "refs/heads/main" || branches(egit) != "" {
		t.Errorf("empty repository: HEAD %s, branches %q", b, branches(egit))
	}
	if st := egit("status", "--porcelain"); st != "A  .gitignore" {
		t.Errorf("empty repository: the user's staged file: %q", st)
	}

	// An empty recommendation: nothing to commit, no branch, no directory.
	none, err := Recommend(nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := none.Commit(ctx, repo, "seccomp-new", "kscmp/none"); err != nil || id != "" {
		t.Errorf("an empty recommendation: %q %v", id, err)
	}
	if _, err := os.Stat(filepath.Join(repo, "seccomp-new")); err == nil || strings.Contains(branches(git), "kscmp/none") {
		t.Errorf("an empty recommendation left %q, branches %q", "seccomp-new", branches(git))
	}
}
