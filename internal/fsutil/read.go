package fsutil

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// DefaultMaxInput is the largest input file kscmp reads when not told
// otherwise (--max-input-size): 16 MiB. A policy file of that size holds
// tens of thousands of policies and a report hundreds of thousands of
// workloads; parsing YAML takes about 50 times the file's size in memory,
// so a limit keeps a hostile or mistaken input from exhausting the machine.
const DefaultMaxInput = 16 << 20

// ErrTooLarge is wrapped by the errors of the readers for a file larger than
// the limit they were given.
var ErrTooLarge = errors.New("file too large")

// ReadRegular returns the content of the input file path (a policy, a
// report, a profile the user named; a symbolic link is followed, as the
// user named it). Input files are regular files only: a FIFO (whose open
// blocks until a writer comes), a device (/dev/zero never ends), a socket or
// a directory is refused with an error that names the path and what it is
// and wraps ErrNotRegular, without being opened. A file of more than max
// bytes (max <= 0 means DefaultMaxInput) is refused with an error that
// wraps ErrTooLarge, and at most max+1 bytes are ever read. Every reader of
// input goes through here, or through ReadOpened for a file it opened.
func ReadRegular(path string, max int64) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxInput
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, NotRegular(path, st.Mode(), "read")
	}
	if st.Size() > max {
		return nil, tooLarge(path, st.Size(), max)
	}
	// O_NONBLOCK: should a FIFO have replaced the file since the Stat, its
	// open does not wait for a writer (ReadOpened then refuses it).
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadOpened(f, path, max)
}

// ReadOpened returns the content of the open file f (named path in
// errors): refused unless it is a regular file (ErrNotRegular), or when it
// holds more than max bytes (ErrTooLarge), reading at most max+1 bytes.
func ReadOpened(f *os.File, path string, max int64) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, NotRegular(path, st.Mode(), "read")
	}
	if st.Size() > max {
		return nil, tooLarge(path, st.Size(), max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, tooLarge(path, -1, max) // it grew while read
	}
	return data, nil
}

// tooLarge is the error for path, of size bytes (-1 when unknown), over the
// limit max.
func tooLarge(path string, size, max int64) error {
	if size < 0 {
		return fmt.Errorf("%s: %w: more than %d bytes, the limit", path, ErrTooLarge, max)
	}
	return fmt.Errorf("%s: %w: %d bytes, more than the limit of %d", path, ErrTooLarge, size, max)
}
