// Package safepath reads, writes and removes files inside a root directory
// without ever leaving it, whatever the tree below the root holds.
//
// Every path is resolved by the kernel, from a file descriptor of the root,
// with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS): ".." stops at the
// root, and a symbolic link — an absolute one too — is resolved as if the
// root were "/". That is what --root means (an image or a machine's tree,
// whose links name paths of that tree): a link inside the tree is followed
// the way the tree's own systemd follows it, and can never lead out of it.
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS was the other choice; it refuses every
// link, also the ordinary ones of a real image (/etc/systemd/system linked
// into /usr, say), and confines no better.
//
// The file itself (the last component) is never followed: writes replace
// only a regular file (fsutil.WriteAt, temporary file and renameat in the
// directory's descriptor), reads and removals refuse anything else, and a
// directory is removed only when it is a real, empty directory, never a
// link to one.
package safepath

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kubearmor/kscmp/internal/fsutil"
)

// ErrTooLarge is wrapped by ReadFile's error for a file larger than asked:
// fsutil.ErrTooLarge, as every reader's.
var ErrTooLarge = fsutil.ErrTooLarge

// Root is an open directory that paths are resolved inside. Paths given to
// its methods are relative to it ("/" and ".." both mean at most the root).
type Root struct {
	dir  *os.File
	path string
}

// Open opens the directory dir as a root ("" is "/"). dir itself is
// resolved as usual: the caller named it.
func Open(dir string) (*Root, error) {
	if dir == "" {
		dir = "/"
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w", dir, &fs.PathError{Op: "open", Path: dir, Err: err})
	}
	return &Root{dir: os.NewFile(uintptr(fd), dir), path: dir}, nil
}

// OpenOrCreate is Open that first creates dir (and its parents, mode 0755)
// when it does not exist.
func OpenOrCreate(dir string) (*Root, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("root %s: %w", dir, err)
		}
	}
	return Open(dir)
}

// Close closes the root's descriptor.
func (r *Root) Close() error { return r.dir.Close() }

// Join returns the path of rel below the root as the user sees it, for
// messages and reports.
func (r *Root) Join(rel string) string { return filepath.Join(r.path, rel) }

// open resolves rel inside the root with openat2 and opens it with flags.
func (r *Root) open(rel string, flags int) (*os.File, error) {
	if rel == "" {
		rel = "."
	}
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(int(r.dir.Fd()), rel, &how)
		// EAGAIN: a rename elsewhere in the tree raced the lookup.
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: r.Join(rel), Err: err}
		}
		return os.NewFile(uintptr(fd), r.Join(rel)), nil
	}
}

// OpenDir opens the directory rel (following links inside the root).
func (r *Root) OpenDir(rel string) (*os.File, error) {
	return r.open(rel, unix.O_RDONLY|unix.O_DIRECTORY)
}

// MkdirAll opens the directory rel, creating it and the missing
// directories above it (mode 0755) first, each with mkdirat in its
// parent's descriptor.
func (r *Root) MkdirAll(rel string) (*os.File, error) {
	if d, err := r.OpenDir(rel); !errors.Is(err, fs.ErrNotExist) {
		return d, err
	}
	var parts []string
	for _, p := range strings.Split(rel, "/") {
		if p != "" && p != "." {
			parts = append(parts, p)
		}
	}
	for i := range parts {
		sub := strings.Join(parts[:i+1], "/")
		if d, err := r.OpenDir(sub); err == nil {
			d.Close()
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		parent, err := r.OpenDir(strings.Join(parts[:i], "/"))
		if err != nil {
			return nil, err
		}
		err = unix.Mkdirat(int(parent.Fd()), parts[i], 0o755)
		if errors.Is(err, unix.EEXIST) {
			// Made meanwhile, or a link that leads to nothing in the root.
			err = danglingAt(parent, parts[i], r.path)
		}
		parent.Close()
		if err != nil {
			return nil, err
		}
	}
	return r.OpenDir(rel)
}

// danglingAt returns an error when name in the directory d is a symbolic
// link (which mkdir found in the way and which does not resolve inside
// the root), saying where it leads.
func danglingAt(d *os.File, name, root string) error {
	target, err := readlinkAt(d, name)
	if err != nil {
		return nil // not a link: a directory made meanwhile
	}
	return fmt.Errorf("%s is a symbolic link to %s, which does not exist inside the root %s: %w",
		filepath.Join(d.Name(), name), target, root, fs.ErrNotExist)
}

func readlinkAt(d *os.File, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(int(d.Fd()), name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// split returns the directory and the file name of rel, failing when rel
// does not end in a file name.
func (r *Root) split(rel string) (dir, name string, err error) {
	dir, name = path.Split(path.Clean("/" + rel))
	if name == "" || name == "." || name == ".." {
		return "", "", fmt.Errorf("%s: not a file name", r.Join(rel))
	}
	return dir, name, nil
}

// Lstat returns the mode of rel, not following rel itself when it is a
// symbolic link. A missing file is an error that wraps fs.ErrNotExist.
func (r *Root) Lstat(rel string) (fs.FileMode, error) {
	dir, name, err := r.split(rel)
	if err != nil {
		return 0, err
	}
	d, err := r.OpenDir(dir)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	return lstatAt(d, name)
}

func lstatAt(d *os.File, name string) (fs.FileMode, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, &fs.PathError{Op: "stat", Path: filepath.Join(d.Name(), name), Err: err}
	}
	return fsutil.FileMode(st.Mode), nil
}

// ReadFile returns the content of the regular file rel, of at most max
// bytes. A missing file is an error that wraps fs.ErrNotExist, anything but
// a regular file one that wraps fsutil.ErrNotRegular (it is not opened),
// and a larger file one that wraps ErrTooLarge.
func (r *Root) ReadFile(rel string, max int) ([]byte, error) {
	dir, name, err := r.split(rel)
	if err != nil {
		return nil, err
	}
	d, err := r.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	p := filepath.Join(d.Name(), name)
	m, err := lstatAt(d, name)
	if err != nil {
		return nil, err
	}
	if !m.IsRegular() {
		return nil, fsutil.NotRegular(p, m, "read")
	}
	fd, err := unix.Openat(int(d.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	return fsutil.ReadOpened(f, p, int64(max))
}

// Same reports whether rel exists and whether it is a regular file that
// holds data, reading at most len(data)+1 bytes. Anything but a regular
// file is an error (fsutil.ErrNotRegular).
func (r *Root) Same(rel string, data []byte) (exists, same bool, err error) {
	old, err := r.ReadFile(rel, len(data))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, false, nil
	case errors.Is(err, ErrTooLarge):
		return true, false, nil
	case err != nil:
		return false, false, err
	}
	return true, bytes.Equal(old, data), nil
}

// WriteFile makes rel hold data with mode perm, creating missing
// directories: fsutil.WriteAt in the directory's descriptor (atomic,
// skipped when unchanged, refused when rel is not a regular file).
func (r *Root) WriteFile(rel string, data []byte, perm fs.FileMode) (changed bool, err error) {
	dir, name, err := r.split(rel)
	if err != nil {
		return false, err
	}
	d, err := r.MkdirAll(dir)
	if err != nil {
		return false, fmt.Errorf("write %s: %w", r.Join(rel), err)
	}
	defer d.Close()
	return fsutil.WriteAt(d, name, data, perm)
}

// Remove removes the regular file rel. A missing file is an error that
// wraps fs.ErrNotExist; anything but a regular file is left and is an error
// that wraps fsutil.ErrNotRegular.
func (r *Root) Remove(rel string) error {
	dir, name, err := r.split(rel)
	if err != nil {
		return err
	}
	d, err := r.OpenDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	m, err := lstatAt(d, name)
	if err != nil {
		return err
	}
	if !m.IsRegular() {
		return fsutil.NotRegular(filepath.Join(d.Name(), name), m, "removed")
	}
	if err := unix.Unlinkat(int(d.Fd()), name, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: filepath.Join(d.Name(), name), Err: err}
	}
	return nil
}

// RemoveEmptyDir removes rel when it is a directory with nothing in it
// (unlinkat AT_REMOVEDIR: a symbolic link to a directory is never
// removed, nor a directory that is not empty), and reports whether it did.
func (r *Root) RemoveEmptyDir(rel string) (bool, error) {
	dir, name, err := r.split(rel)
	if err != nil {
		return false, err
	}
	d, err := r.OpenDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer d.Close()
	err = unix.Unlinkat(int(d.Fd()), name, unix.AT_REMOVEDIR)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ENOENT):
		return false, nil
	}
	return false, &fs.PathError{Op: "remove", Path: filepath.Join(d.Name(), name), Err: err}
}

// ReadDir returns the entries of the directory rel, sorted by name.
func (r *Root) ReadDir(rel string) ([]fs.DirEntry, error) {
	d, err := r.OpenDir(rel)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, err
}

// RemoveTemps removes, in the directory rel, the temporary files
// (fsutil.IsTemp) that writes killed before their rename left behind, of
// the files for which of returns true (of gets the file's name, without
// the temporary suffix), and returns their names. Only regular files are
// removed. A missing directory has none.
func (r *Root) RemoveTemps(rel string, of func(name string) bool) ([]string, error) {
	d, err := r.OpenDir(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		name, ok := fsutil.TempOf(e.Name())
		if !ok || !e.Type().IsRegular() || !of(name) {
			continue
		}
		if err := unix.Unlinkat(int(d.Fd()), e.Name(), 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return removed, &fs.PathError{Op: "remove", Path: filepath.Join(d.Name(), e.Name()), Err: err}
		}
		removed = append(removed, e.Name())
	}
	slices.Sort(removed)
	return removed, nil
}

// Lock takes an exclusive lock (flock) on the directory rel, so that two
// runs managing it do not interleave (one's cleanup removing the other's
// temporary file). The lock holds until unlock is called or the process
// ends, killed or not.
func (r *Root) Lock(rel string) (unlock func(), err error) {
	d, err := r.OpenDir(rel)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(d.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("lock %s: %w", d.Name(), err)
	}
	return func() { d.Close() }, nil
}
