package api

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNoPolicyFiles means a directory given to Load holds no policy file.
// Load reports it as a FieldError of that directory; check it with
// errors.Is.
var ErrNoPolicyFiles = errors.New("no *.yaml, *.yml or *.json files in directory")

// FieldError is one problem in one policy document: where it is (file,
// document, line), which field, which value, and what is wrong. It is not
// an API type: no deepcopy is generated for it.
//
// +kubebuilder:object:generate=false
type FieldError struct {
	File   string // file name, "" when the policy did not come from a file
	Doc    int    // 1-based index of the YAML document in File, 0 when unknown
	Line   int    // line of the field (or the document) in File, 0 when unknown
	Policy string // "namespace/name" when known
	Field  string // field path, e.g. "spec.seccomp.syscalls[2]"
	Value  string // the offending value as written, "" when absent
	Detail string // what is wrong
	// Err is the cause when the problem is an error of its own (a file
	// that cannot be read, ErrNoPolicyFiles), for errors.Is; Detail is
	// then its message.
	Err error
}

// Unwrap returns the cause, or nil.
func (e *FieldError) Unwrap() error { return e.Err }

// Error formats the problem as "file:line: document N (ns/name): field: value: detail".
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Doc > 0 {
		fmt.Fprintf(&b, "document %d", e.Doc)
		if e.Policy != "" {
			fmt.Fprintf(&b, " (%s)", e.Policy)
		}
		b.WriteString(": ")
	} else if e.Policy != "" {
		fmt.Fprintf(&b, "%s: ", e.Policy)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	if e.Value != "" {
		fmt.Fprintf(&b, "%q: ", e.Value)
	}
	b.WriteString(e.Detail)
	return b.String()
}

// ErrorList is every problem found in a set of policy documents. It is an
// error; its message has one problem per line. Not an API type either.
//
// +kubebuilder:object:generate=false
type ErrorList []*FieldError

// Error joins the problems, one per line.
func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the problems, so errors.Is and errors.As see each one.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// Err returns l as an error, or nil when l is empty.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}
