package fsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// CheckWritable reports, before a long piece of work, whether WriteFile
// will be able to write path, without changing it: a command that records
// for ten minutes must not find out only at the end that its output is
// under a file or in a read-only directory. "-" (standard output) is
// always writable. A regular file, or a path that does not exist, is
// written by a rename in its directory, so the directory (or the nearest
// one that exists, which WriteFile would create the rest below) is probed
// by creating and removing a temporary file in it (named as TempName names
// them, so a run killed meanwhile leaves nothing its cleanup would not
// recognise). Anything else is written in place, so the file itself is
// checked with access(2) for writing — never opened, since opening a
// device or a FIFO can block or act. A directory is an error, and so is a
// path below a file. The errors read like WriteFile's.
func CheckWritable(path string) error {
	return checkWritable(path, 0)
}

// maxLinks bounds the symbolic links followed, as the kernel does (ELOOP).
const maxLinks = 40

func checkWritable(path string, links int) error {
	if path == "-" {
		return nil
	}
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return probeDir(path)
	case err != nil:
		return fmt.Errorf("write %s: %w", path, err)
	case st.IsDir():
		return fmt.Errorf("write %s: is a directory", path)
	case st.Mode().IsRegular():
		return probeDir(path)
	case st.Mode()&fs.ModeSymlink != 0:
		target, err := os.Stat(path)
		if err == nil {
			if target.IsDir() {
				return fmt.Errorf("write %s: is a directory", path)
			}
			return access(path)
		}
		if !errors.Is(err, fs.ErrNotExist) || links >= maxLinks {
			return fmt.Errorf("write %s: %w", path, err)
		}
		// A dangling link: writing creates its target.
		dest, err := os.Readlink(path)
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if !filepath.IsAbs(dest) {
			dest = filepath.Join(filepath.Dir(path), dest)
		}
		return checkWritable(dest, links+1)
	}
	return access(path)
}

// access checks that the file path (a device, a FIFO, a socket, a link to
// one) may be opened for writing, without opening it.
func access(path string) error {
	if err := unix.Faccessat(unix.AT_FDCWD, path, unix.W_OK, unix.AT_EACCESS); err != nil {
		return fmt.Errorf("write %s: %w", path, &fs.PathError{Op: "access", Path: path, Err: err})
	}
	return nil
}

// probeDir checks that a file can be created next to path: in its
// directory, or in the nearest ancestor that exists when the directory is
// still to be made (which must be a directory).
func probeDir(path string) error {
	dir := filepath.Dir(path)
	for {
		st, err := os.Stat(dir)
		if err == nil && !st.IsDir() {
			return fmt.Errorf("write %s: %s is not a directory: %w", path, dir, syscall.ENOTDIR)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || filepath.Dir(dir) == dir {
			return fmt.Errorf("write %s: %w", path, err)
		}
		dir = filepath.Dir(dir)
	}
	tmp := filepath.Join(dir, TempName(filepath.Base(path)))
	fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: cannot create a file in %s: %w", path, dir, err)
	}
	unix.Close(fd)
	if err := unix.Unlink(tmp); err != nil {
		return fmt.Errorf("write %s: %w", path, &fs.PathError{Op: "remove", Path: tmp, Err: err})
	}
	return nil
}
