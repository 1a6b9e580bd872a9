package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kubearmor/kscmp/internal/fsutil"
)

// ErrInvalid is wrapped by every error that says a report is malformed: not
// JSON, an unknown field, the wrong version or kind, an unknown identity
// kind or ABI. Check it with errors.Is; the message says file, field and
// value.
var ErrInvalid = errors.New("invalid observation report")

// ErrNoReports means a path given to ReadAll named no report: a pattern
// matched no file, or a directory holds no *.json file.
var ErrNoReports = errors.New("no observation report")

// marked is err, with its message, that also is the sentinel kind for
// errors.Is: the message says the problem once, the sentinel its class.
type marked struct{ err, kind error }

func (e marked) Error() string   { return e.err.Error() }
func (e marked) Unwrap() []error { return []error{e.err, e.kind} }

func invalid(format string, args ...any) error {
	return marked{fmt.Errorf(format, args...), ErrInvalid}
}

// Source is one report and where it was read from.
type Source struct {
	Name   string // file name, for comments and messages
	Report *Report
}

// Read parses a report and validates it (see Validate); names and numbers
// are sorted and deduplicated. name is used in errors.
func Read(rd io.Reader, name string) (*Report, error) {
	dec := json.NewDecoder(rd)
	dec.DisallowUnknownFields()
	var r Report
	if err := dec.Decode(&r); err != nil {
		return nil, invalid("%s: not an observation report: %w", name, err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for i := range r.Workloads {
		r.Workloads[i].normalize()
	}
	return &r, nil
}

// Validate checks the report's version and kind, that every workload has a
// known identity kind, that its ABI names are known (see ArchOf) and that
// every system call name is in its ABI's table, and that recorded arguments
// (Workload.Args) are of calls made, with known names. It returns the first
// problem, wrapping ErrInvalid.
func (r *Report) Validate() error {
	if r.APIVersion != APIVersion || r.Kind != Kind {
		return invalid("apiVersion %q kind %q: want %s %s", r.APIVersion, r.Kind, APIVersion, Kind)
	}
	for i, w := range r.Workloads {
		if !slices.Contains(Kinds[:], w.Identity.Kind) {
			return invalid("workloads[%d].identity.kind: %q: want pod, container, systemd or process", i, w.Identity.Kind)
		}
		for _, abi := range slices.Sorted(maps.Keys(w.Syscalls)) {
			a, ok := ArchOf(abi)
			if !ok {
				return invalid("workloads[%d].syscalls: %q: unknown ABI (want %s)", i, abi, abiNames())
			}
			for j, n := range w.Syscalls[abi] {
				if !a.Has(n) {
					return invalid("workloads[%d].syscalls.%s[%d]: %q: not a system call of %s (a recorder writes only names of the ABI's own table, and numbers it has no name for under unknown)", i, abi, j, n, abi)
				}
			}
		}
		if err := validateArgs(i, w); err != nil {
			return err
		}
	}
	for i, n := range r.Nodes {
		switch n.State {
		case NodeCollected, NodeFailed, NodeNotStarted, NodeIncomplete:
		default:
			return invalid("nodes[%d].state: %q: want %s, %s, %s or %s", i, n.State, NodeCollected, NodeFailed, NodeNotStarted, NodeIncomplete)
		}
		if n.Name == "" {
			return invalid("nodes[%d].name: empty", i)
		}
	}
	return nil
}

// ReadFile reads the report in the file path, through the one reader of
// input files (fsutil.ReadRegular): anything but a regular file is refused
// (fsutil.ErrNotRegular), and so is a file larger than
// fsutil.DefaultMaxInput (fsutil.ErrTooLarge).
func ReadFile(path string) (*Report, error) { return ReadFileLimit(path, 0) }

// ReadFileLimit is ReadFile with a limit of max bytes (max <= 0 means
// fsutil.DefaultMaxInput).
func ReadFileLimit(path string, max int64) (*Report, error) {
	data, err := fsutil.ReadRegular(path, max)
	if err != nil {
		return nil, err
	}
	return Read(bytes.NewReader(data), path)
}

// ReadAll reads the reports that paths name: files, globs (as
// filepath.Glob takes them; a path that names an existing file is that
// file, even when it could be a pattern) and directories (their *.json
// files), each file once, sorted by name. A path that names no report is an error wrapping
// ErrNoReports; so is a directory without *.json files. Each file is read
// as ReadFile reads it.
func ReadAll(paths []string) ([]Source, error) { return ReadAllLimit(paths, 0) }

// ReadAllLimit is ReadAll with a limit of max bytes per file (max <= 0
// means fsutil.DefaultMaxInput).
func ReadAllLimit(paths []string, max int64) ([]Source, error) {
	files, err := reportFiles(paths)
	if err != nil {
		return nil, err
	}
	out := make([]Source, 0, len(files))
	for _, f := range files {
		r, err := ReadFileLimit(f, max)
		if err != nil {
			return nil, err
		}
		out = append(out, Source{Name: f, Report: r})
	}
	return out, nil
}

// reportFiles expands paths into the sorted, distinct report files they
// name.
func reportFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		matches, err := expand(p)
		if err != nil {
			return nil, err
		}
		for _, m := range matches {
			st, err := os.Stat(m)
			if err != nil {
				return nil, err
			}
			if !st.IsDir() {
				files = append(files, m)
				continue
			}
			in, err := filepath.Glob(filepath.Join(globEscape(m), "*.json"))
			if err != nil {
				return nil, fmt.Errorf("%q: %w", m, err)
			}
			if len(in) == 0 {
				return nil, marked{fmt.Errorf("%q: no *.json reports in the directory", m), ErrNoReports}
			}
			files = append(files, in...)
		}
	}
	slices.Sort(files)
	return slices.Compact(files), nil
}

// expand returns what the path p names: p itself when a file or directory
// of that very name exists (a report may be called "rep[1].json": a name is
// never taken for a pattern when the file is there), else the matches of p
// as a glob. No match is an error wrapping ErrNoReports.
func expand(p string) ([]string, error) {
	if _, err := os.Lstat(p); err == nil {
		return []string{p}, nil
	}
	matches, err := filepath.Glob(p)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", p, err)
	}
	if len(matches) == 0 {
		return nil, marked{fmt.Errorf("%q: no such file", p), ErrNoReports}
	}
	return matches, nil
}

// globEscape quotes the characters filepath.Glob treats specially, so a
// directory's own name matches only itself.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
