// Package fsutil writes files the way every kscmp writer must: atomically
// (a temporary file in the same directory, fsync, rename) and not at all when
// the content is already there, without ever replacing or reading a file
// that is not a regular file.
//
// There are two entry points, for the two kinds of file kscmp writes:
//
//   - WriteFile, for outputs the user names (-o, --summary): "-" is standard
//     output, and a path that is not a regular file (a device such as
//     /dev/null, a FIFO, /dev/stdout or another symbolic link) is written in
//     place, the way a shell's ">" does, so it is never replaced.
//   - WriteManaged (and WriteAt, which safepath builds on), for files kscmp
//     manages (profiles in the kubelet's directory, drop-ins, --dir
//     profiles, manifests): anything but a regular file at the path is
//     refused with ErrNotRegular. Whether the regular file is kscmp's (its
//     marker, its manifest) is the caller's check.
//
// Comparing with the old content reads at most len(new)+1 bytes, and only
// from a regular file.
package fsutil

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// NameMax is the longest file name (one path component) Linux file systems
// take, in bytes.
const NameMax = 255

// tempRandLen is the number of random characters in a temporary name.
const tempRandLen = 8

// TempOverhead is how much longer than its file's name a temporary file's
// name is: "." + name + ".tmp-" + 8 random characters. A file name of at
// most NameMax-TempOverhead bytes can be written.
const TempOverhead = len(".") + len(".tmp-") + tempRandLen

// ErrNotRegular is wrapped by the errors of writers and readers that found
// something other than a regular file where a managed file belongs.
var ErrNotRegular = errors.New("not a regular file")

// TempName returns a new temporary name for a file named name, in the same
// directory: "." + name + ".tmp-" + 8 random hexadecimal digits.
func TempName(name string) string {
	var b [tempRandLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return "." + name + ".tmp-" + hex.EncodeToString(b[:])
}

// IsTemp reports whether name is the name of a temporary file that a kscmp
// writer makes (TempName, or the ".NAME.tmp-DIGITS" of earlier versions):
// what a killed run leaves behind. No file kscmp manages has such a name:
// profile, container and unit names never start with a dot.
func IsTemp(name string) bool {
	_, ok := TempOf(name)
	return ok
}

// TempOf returns the name of the file that tmp is a temporary file of, when
// tmp is one (IsTemp).
func TempOf(tmp string) (name string, ok bool) {
	i := strings.LastIndex(tmp, ".tmp-")
	if i < 2 || tmp[0] != '.' {
		return "", false
	}
	suffix := tmp[i+len(".tmp-"):]
	isHex, isDigits := len(suffix) == tempRandLen, len(suffix) > 0 && len(suffix) <= 10
	for _, c := range suffix {
		isHex = isHex && (c >= '0' && c <= '9' || c >= 'a' && c <= 'f')
		isDigits = isDigits && c >= '0' && c <= '9'
	}
	return tmp[1:i], isHex || isDigits
}

// Kind names the type of file mode m ("regular file", "symbolic link",
// "named pipe", ...), for error messages.
func Kind(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "regular file"
	case fs.ModeDir:
		return "directory"
	case fs.ModeSymlink:
		return "symbolic link"
	case fs.ModeNamedPipe:
		return "named pipe (FIFO)"
	case fs.ModeSocket:
		return "socket"
	case fs.ModeDevice | fs.ModeCharDevice:
		return "character device"
	case fs.ModeDevice:
		return "block device"
	}
	return "special file"
}

// NotRegular returns the error for path, which holds a file of mode m
// that is not a regular file and so is left as it is: it names the path and
// what it is, and wraps ErrNotRegular. verb says what was not done
// ("written", "read", "removed").
func NotRegular(path string, m fs.FileMode, verb string) error {
	return fmt.Errorf("%s is a %s, %w: not %s", path, Kind(m), ErrNotRegular, verb)
}

// WriteFile writes an output the user named. "-" writes to standard output.
// A path that does not exist or is a regular file is written atomically
// (WriteManaged: a reader sees the old content or the new, and nothing is
// written, changed is false, when the file holds data with mode perm
// already). Any other path that exists — a device, a FIFO, a socket, a
// symbolic link (to a file, to /dev/null, /dev/stdout is one) — is opened
// for writing and written in place, truncated first as a shell's ">" does
// (O_TRUNC has no effect on devices and FIFOs): it is never replaced and
// never read, except that when the final file is a regular file the
// content is compared first (reading at most len(data)+1 bytes) to skip an
// unchanged write. A directory is an error. Missing parent directories are
// created with mode 0755.
func WriteFile(path string, data []byte, perm fs.FileMode) (changed bool, err error) {
	if path == "-" {
		if _, err := os.Stdout.Write(data); err != nil {
			return false, fmt.Errorf("write standard output: %w", err)
		}
		return true, nil
	}
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) || err == nil && st.Mode().IsRegular():
		return WriteManaged(path, data, perm)
	case err != nil:
		return false, fmt.Errorf("write %s: %w", path, err)
	case st.IsDir():
		return false, fmt.Errorf("write %s: is a directory", path)
	}
	return writeInPlace(path, data, perm)
}

// writeInPlace writes data into the file path names (following symbolic
// links), as a shell's ">" does.
func writeInPlace(path string, data []byte, perm fs.FileMode) (bool, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return false, fmt.Errorf("write %s: is a directory", path)
	} else if err == nil && st.Mode().IsRegular() {
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
		if err != nil {
			return false, fmt.Errorf("write %s: %w", path, err)
		}
		same, err := sameContent(f, path, data, perm)
		f.Close()
		if err != nil || same {
			return false, err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOCTTY, perm)
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}

// WriteManaged makes path, a file kscmp manages, hold data with mode perm:
// atomically, and not at all (changed is false) when it holds data with
// mode perm already. Anything but a regular file at path (a symbolic link,
// a FIFO, a device, a directory) is refused with an error that wraps
// ErrNotRegular and is never opened. Missing parent directories are
// created with mode 0755; symbolic links among them are followed (a path
// inside a root that must confine them goes through safepath instead).
func WriteManaged(path string, data []byte, perm fs.FileMode) (changed bool, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	defer d.Close()
	return WriteAt(d, filepath.Base(path), data, perm)
}

// WriteAt is WriteManaged for the file name in the open directory dir (name
// is one path component; dir.Name() is used in messages). The temporary
// file is made in dir and renamed over name with renameat, so nothing
// between the name and dir is resolved again.
func WriteAt(dir *os.File, name string, data []byte, perm fs.FileMode) (changed bool, err error) {
	path := filepath.Join(dir.Name(), name)
	if err := checkName(name, path); err != nil {
		return false, err
	}
	same, err := sameAt(int(dir.Fd()), name, path, data, perm)
	if err != nil || same {
		return false, err
	}
	s, err := StageAt(dir, name, data, perm)
	if err != nil {
		return false, err
	}
	return true, s.Commit()
}

// checkName fails unless name is one path component whose temporary file
// name fits in NameMax.
func checkName(name, path string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("write %s: %q is not a file name", path, name)
	}
	if len(name)+TempOverhead > NameMax {
		return fmt.Errorf("write %s: the name is longer than %d bytes (the longest that leaves room for its temporary file)", path, NameMax-TempOverhead)
	}
	return nil
}

// Staged is the new content of a file, written and synced to a temporary
// file next to it but not yet renamed over it: a writer of many files
// stages them all first, so that running out of space changes none of
// them, and then commits each.
type Staged struct {
	dir       *os.File
	name, tmp string
	path      string
}

// StageAt writes data with mode perm to a new temporary file for name in
// the open directory dir (fsync'ed, not renamed). Anything but a regular
// file at name is refused (ErrNotRegular), as by WriteAt. The caller
// commits or aborts it, and keeps dir open until then.
func StageAt(dir *os.File, name string, data []byte, perm fs.FileMode) (_ *Staged, err error) {
	path := filepath.Join(dir.Name(), name)
	if err := checkName(name, path); err != nil {
		return nil, err
	}
	dfd := int(dir.Fd())
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && !FileMode(st.Mode).IsRegular() {
		return nil, NotRegular(path, FileMode(st.Mode), "written")
	} else if err != nil && !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("write %s: %w", path, &fs.PathError{Op: "stat", Path: path, Err: err})
	}
	tmp, f, err := createTemp(dfd, name, path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
			unix.Unlinkat(dfd, tmp, 0)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(perm); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &Staged{dir: dir, name: name, tmp: tmp, path: path}, nil
}

// Commit renames the temporary file over the file, atomically, and makes
// the rename durable. On failure the temporary file is removed.
func (s *Staged) Commit() error {
	dfd := int(s.dir.Fd())
	if err := unix.Renameat(dfd, s.tmp, dfd, s.name); err != nil {
		unix.Unlinkat(dfd, s.tmp, 0)
		return fmt.Errorf("write %s: rename: %w", s.path, err)
	}
	unix.Fsync(dfd)
	return nil
}

// Abort removes the temporary file: the file stays as it was.
func (s *Staged) Abort() { unix.Unlinkat(int(s.dir.Fd()), s.tmp, 0) }

// Name is the name of the file the staged content is for.
func (s *Staged) Name() string { return s.name }

// createTemp creates a new temporary file for name in the directory dfd.
func createTemp(dfd int, name, path string) (string, *os.File, error) {
	for range 100 {
		tmp := TempName(name)
		fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return "", nil, fmt.Errorf("write %s: temporary file: %w", path, err)
		}
		return tmp, os.NewFile(uintptr(fd), filepath.Join(filepath.Dir(path), tmp)), nil
	}
	return "", nil, fmt.Errorf("write %s: no free temporary name", path)
}

// sameAt reports whether name in the directory dfd is a regular file that
// holds data with mode perm. Anything but a regular file is an error; it is
// not opened.
func sameAt(dfd int, name, path string, data []byte, perm fs.FileMode) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, &fs.PathError{Op: "stat", Path: path, Err: err})
	}
	if m := FileMode(st.Mode); !m.IsRegular() {
		return false, NotRegular(path, m, "written")
	}
	if st.Size != int64(len(data)) || FileMode(st.Mode).Perm() != perm.Perm() {
		return false, nil
	}
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, &fs.PathError{Op: "open", Path: path, Err: err})
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	return sameContent(f, path, data, perm)
}

// sameContent reports whether the open file f is a regular file with mode
// perm that holds data, reading at most len(data)+1 bytes.
func sameContent(f *os.File, path string, data []byte, perm fs.FileMode) (bool, error) {
	st, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return false, NotRegular(path, st.Mode(), "written")
	}
	if st.Size() != int64(len(data)) || st.Mode().Perm() != perm.Perm() {
		return false, nil
	}
	old, err := io.ReadAll(io.LimitReader(f, int64(len(data))+1))
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return bytes.Equal(old, data), nil
}

// FileMode converts the st_mode of a stat(2) result to an fs.FileMode.
func FileMode(mode uint32) fs.FileMode {
	m := fs.FileMode(mode & 0o777)
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	}
	return m
}
