package violation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/internal/fsutil"
)

// ErrInvalid is wrapped by every error that says a violation report is
// malformed: not JSON, an unknown field, the wrong version or kind, an
// unknown identity kind, ABI or action, a name not in its ABI's table.
// Check it with errors.Is; the message says file, field and value.
var ErrInvalid = errors.New("invalid violation report")

// marked is err, with its message, that also is the sentinel kind.
type marked struct{ err, kind error }

func (e marked) Error() string   { return e.err.Error() }
func (e marked) Unwrap() []error { return []error{e.err, e.kind} }

func invalid(format string, args ...any) error {
	return marked{fmt.Errorf(format, args...), ErrInvalid}
}

// IsReport reports whether data looks like a violation report (its kind is
// ViolationReport), so a reader of several formats can tell which one to
// parse without parsing twice.
func IsReport(data []byte) bool {
	var head struct {
		Kind string `json:"kind"`
	}
	return json.Unmarshal(data, &head) == nil && head.Kind == Kind
}

// Read parses a report and validates it (see Validate). name is used in
// errors.
func Read(rd io.Reader, name string) (*Report, error) {
	dec := json.NewDecoder(rd)
	dec.DisallowUnknownFields()
	var r Report
	if err := dec.Decode(&r); err != nil {
		return nil, invalid("%s: not a violation report: %w", name, err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if r.Violations == nil {
		r.Violations = []Violation{}
	}
	return &r, nil
}

// ReadFile reads the report in the file path through fsutil.ReadRegular
// (regular files only, at most fsutil.DefaultMaxInput bytes).
func ReadFile(path string) (*Report, error) {
	data, err := fsutil.ReadRegular(path, 0)
	if err != nil {
		return nil, err
	}
	return Read(bytes.NewReader(data), path)
}

// Validate checks the version and kind, and per violation the identity
// kind, the ABI, that the name is the ABI table's name of the number, the
// action and the count. It returns the first problem, wrapping ErrInvalid.
func (r *Report) Validate() error {
	if r.APIVersion != APIVersion || r.Kind != Kind {
		return invalid("apiVersion %q kind %q: want %s %s", r.APIVersion, r.Kind, APIVersion, Kind)
	}
	for i, v := range r.Violations {
		if !slices.Contains(report.Kinds[:], v.Identity.Kind) {
			return invalid("violations[%d].identity.kind: %q: want pod, container, systemd or process", i, v.Identity.Kind)
		}
		a, ok := report.ArchOf(v.ABI)
		if !ok {
			return invalid("violations[%d].abi: %q: unknown ABI", i, v.ABI)
		}
		if v.Number < 0 {
			return invalid("violations[%d].number: %d: negative", i, v.Number)
		}
		if name, known := a.Table().SyscallNumbers[v.Number]; (known || v.Syscall != "") && name != v.Syscall {
			return invalid("violations[%d].syscall: %q: number %d of %s is %q", i, v.Syscall, v.Number, v.ABI, name)
		}
		if !slices.Contains(Actions[:], v.Action) {
			return invalid("violations[%d].action: %q: want Audit, Block, Kill, Trap, Trace or Notify", i, v.Action)
		}
		if v.Count == 0 {
			return invalid("violations[%d].count: 0: an entry counts at least one record", i)
		}
	}
	return nil
}
