package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/kubearmor/kscmp/internal/fsutil"
)

// Document is one parsed, valid policy and where it came from.
type Document struct {
	Policy *KubeArmorSeccompPolicy
	File   string // file name as given
	Index  int    // 1-based index of the YAML document in File
	Line   int    // first line of the document
	Flat   bool   // written in the flat form (fields at the top level, flat.go)
}

// Parse reads every YAML document in r (a file named file, for messages)
// and returns the valid policies and, as an ErrorList, every problem of the
// others. A document with any problem is refused whole. Empty documents are
// skipped.
func Parse(r io.Reader, file string) ([]Document, error) {
	var (
		docs []Document
		errs ErrorList
	)
	dec := yaml.NewDecoder(r)
	for index := 1; ; index++ {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, &FieldError{File: file, Doc: index, Detail: "not valid YAML: " + err.Error()})
			break // the decoder cannot resynchronise after a syntax error
		}
		doc, derrs := parseNode(&node, file, index)
		errs = append(errs, derrs...)
		if len(derrs) == 0 && doc != nil {
			docs = append(docs, *doc)
		}
	}
	return docs, errs.Err()
}

// parseNode decodes and validates one YAML document. It returns nil and no
// errors for an empty document.
func parseNode(node *yaml.Node, file string, index int) (*Document, ErrorList) {
	root := node
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	docLine := root.Line
	fail := func(field, value, detail string) ErrorList {
		return ErrorList{{File: file, Doc: index, Line: docLine, Field: field, Value: value, Detail: detail}}
	}
	if root.Kind == yaml.DocumentNode || (root.Kind == yaml.ScalarNode && root.Tag == "!!null") {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fail("", "", "a policy must be a YAML mapping")
	}
	var raw map[string]any
	if err := root.Decode(&raw); err != nil {
		return nil, fail("", "", "cannot decode: "+err.Error())
	}
	lines := lineIndex(root)

	// Every problem is collected: unknown fields and type errors do not stop
	// the checks of the rest of the document.
	var probs []fieldProblem
	flat := isFlat(raw)
	pathOf := func(p string) string { return p }
	if flat {
		raw, probs = flatToCRD(raw)
		pathOf = flatPath
	}
	unknownFields(raw, reflect.TypeFor[KubeArmorSeccompPolicy](), "", &probs)
	buf, err := json.Marshal(raw)
	if err != nil {
		return nil, fail("", "", "cannot convert to JSON: "+err.Error())
	}
	p := new(KubeArmorSeccompPolicy)
	typeErr := false
	if err := json.Unmarshal(buf, p); err != nil {
		typeErr = true
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			probs = append(probs, fieldProblem{te.Field, "", fmt.Sprintf("wrong type: got a %s, want %s", te.Value, typeName(te.Type))})
		} else {
			probs = append(probs, fieldProblem{"", "", "cannot decode: " + err.Error()})
		}
	}
	if flat && p.APIVersion == "" {
		p.APIVersion = APIVersion
	}
	canonical(p)
	errs := locate(probs, file, index, docLine, policyKey(raw), lines, pathOf)
	if !typeErr {
		for _, e := range Validate(p) {
			e.File, e.Doc, e.Policy = file, index, p.Key()
			e.Line = lineFor(lines, e.Field, docLine)
			e.Field = pathOf(e.Field)
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *FieldError) int { return a.Line - b.Line })
		return nil, errs
	}
	return &Document{Policy: p, File: file, Index: index, Line: docLine, Flat: flat}, nil
}

// Load reads policies from files and directories. Directories are walked for
// *.yaml, *.yml and *.json files, in lexical order. It returns the valid
// policies and, as an ErrorList, every problem found, including a policy
// (namespace/name) defined twice. A path that cannot be read is an error too,
// and so is a file that is not a regular file (a FIFO, a device: wrapping
// fsutil.ErrNotRegular) or larger than fsutil.DefaultMaxInput (wrapping
// fsutil.ErrTooLarge); LoadLimit takes another limit.
func Load(paths ...string) ([]Document, error) { return LoadLimit(0, paths...) }

// LoadLimit is Load with a limit of max bytes per file (max <= 0 means
// fsutil.DefaultMaxInput).
func LoadLimit(max int64, paths ...string) ([]Document, error) {
	var (
		docs []Document
		errs ErrorList
	)
	for _, p := range paths {
		files, err := policyFiles(p)
		if err != nil {
			errs = append(errs, &FieldError{File: p, Detail: err.Error(), Err: err})
			continue
		}
		for _, f := range files {
			d, err := parseFile(f, max)
			docs = append(docs, d...)
			var l ErrorList
			if errors.As(err, &l) {
				errs = append(errs, l...)
			} else if err != nil {
				errs = append(errs, readError(f, err))
			}
		}
	}
	docs, dupErrs := dropDuplicates(docs)
	errs = append(errs, dupErrs...)
	return docs, errs.Err()
}

// readError is the problem of a file that could not be read. The refusals
// of the input reader (not a regular file, too large) name the file
// already, so File is not repeated before them.
func readError(file string, err error) *FieldError {
	if errors.Is(err, fsutil.ErrNotRegular) || errors.Is(err, fsutil.ErrTooLarge) {
		return &FieldError{Detail: err.Error(), Err: err}
	}
	return &FieldError{File: file, Detail: err.Error(), Err: err}
}

// parseFile reads the file name through the one reader of input files
// (fsutil.ReadRegular: regular files only, at most max bytes) and parses it.
func parseFile(name string, max int64) ([]Document, error) {
	data, err := fsutil.ReadRegular(name, max)
	if err != nil {
		return nil, err
	}
	return Parse(bytes.NewReader(data), name)
}

func policyFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != path && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(p) {
		case ".yaml", ".yml", ".json":
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, ErrNoPolicyFiles
	}
	return files, nil
}

// dropDuplicates refuses every definition of a policy name after its first.
func dropDuplicates(docs []Document) ([]Document, ErrorList) {
	var errs ErrorList
	first := make(map[string]Document, len(docs))
	out := docs[:0]
	for _, d := range docs {
		k := d.Policy.Key()
		if f, dup := first[k]; dup {
			field := "metadata.name"
			if d.Flat {
				field = flatPath(field)
			}
			errs = append(errs, &FieldError{File: d.File, Doc: d.Index, Line: d.Line, Policy: k, Field: field,
				Value: d.Policy.Name, Detail: fmt.Sprintf("policy defined twice: first in %s document %d", f.File, f.Index)})
			continue
		}
		first[k] = d
		out = append(out, d)
	}
	return out, errs
}

// fieldProblem is a problem before the file and line are known.
type fieldProblem struct{ field, value, detail string }

func locate(probs []fieldProblem, file string, index, docLine int, key string, lines map[string]int, pathOf func(string) string) ErrorList {
	errs := make(ErrorList, len(probs))
	for i, p := range probs {
		errs[i] = &FieldError{File: file, Doc: index, Line: lineFor(lines, p.field, docLine), Policy: key,
			Field: pathOf(p.field), Value: p.value, Detail: p.detail}
	}
	return errs
}

func policyKey(raw map[string]any) string {
	md, _ := raw["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	ns, _ := md["namespace"].(string)
	if name == "" {
		return ""
	}
	return ns + "/" + name
}

// lineIndex maps CRD-form field paths to the lines they are written on.
func lineIndex(root *yaml.Node) map[string]int {
	lines := make(map[string]int)
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if path != "" {
			lines[path] = n.Line
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				p := k
				if path != "" {
					p = path + "." + k
				}
				lines[p] = n.Content[i].Line
				walk(n.Content[i+1], p)
				lines[p] = n.Content[i].Line
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, path+"["+strconv.Itoa(i)+"]")
			}
		}
	}
	walk(root, "")
	return lines
}

// lineFor finds the line of field, or of its closest written parent. Flat
// documents are indexed under their flat paths, so both are tried.
func lineFor(lines map[string]int, field string, fallback int) int {
	for _, f := range []string{field, flatPath(field)} {
		for p := f; p != ""; p = parentPath(p) {
			if l, ok := lines[p]; ok {
				return l
			}
		}
	}
	return fallback
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// unknownFields reports every key of v that t has no JSON field for.
func unknownFields(v any, t reflect.Type, path string, out *[]fieldProblem) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return
	}
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return // a type error, reported by the JSON decoder
		}
		fields := jsonFields(t)
		for _, k := range sortedAnyKeys(m) {
			ft, ok := fields[k]
			if !ok {
				*out = append(*out, fieldProblem{join(k), "", "unknown field" + suggest(k, fields)})
				continue
			}
			unknownFields(m[k], ft, join(k), out)
		}
	case reflect.Map:
		if m, ok := v.(map[string]any); ok {
			for _, k := range sortedAnyKeys(m) {
				unknownFields(m[k], t.Elem(), join(k), out)
			}
		}
	case reflect.Slice:
		if s, ok := v.([]any); ok {
			for i, e := range s {
				unknownFields(e, t.Elem(), path+"["+strconv.Itoa(i)+"]", out)
			}
		}
	}
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// jsonFields maps the JSON names of t's fields (inline structs flattened) to
// their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type)
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous && (name == "" || strings.Contains(opts, "inline")) && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				fields[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}

func suggest(k string, fields map[string]reflect.Type) string {
	for f := range fields {
		if strings.EqualFold(f, k) {
			return fmt.Sprintf(" (did you mean %q?)", f)
		}
	}
	return ""
}

func sortedAnyKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Bool:
		return "a boolean"
	}
	return t.String()
}

// canonical drops the empty lists and maps of a decoded policy. An empty list
// means what an absent one does ("arch: []" is the node's family,
// "containers: []" is every container), and the CRD form omits both, so a
// policy written back and read again is the same policy (FuzzParse found
// "arch: []" surviving as an empty, not a nil, list).
func canonical(p *KubeArmorSeccompPolicy) {
	s := &p.Spec
	if len(s.Containers) == 0 {
		s.Containers = nil
	}
	if len(s.Seccomp.Arch) == 0 {
		s.Seccomp.Arch = nil
	}
	if len(s.Seccomp.Syscalls) == 0 {
		s.Seccomp.Syscalls = nil
	}
	if len(s.Seccomp.Rules) == 0 {
		s.Seccomp.Rules = nil
	}
	for i := range s.Seccomp.Rules {
		if len(s.Seccomp.Rules[i].Args) == 0 {
			s.Seccomp.Rules[i].Args = nil
		}
	}
	sel := &s.Selector
	if len(sel.MatchLabels) == 0 {
		sel.MatchLabels = nil
	}
	if len(sel.MatchExpressions) == 0 {
		sel.MatchExpressions = nil
	}
	for i := range sel.MatchExpressions {
		if len(sel.MatchExpressions[i].Values) == 0 {
			sel.MatchExpressions[i].Values = nil
		}
	}
	if len(sel.SystemdUnits) == 0 {
		sel.SystemdUnits = nil
	}
	if len(sel.ContainerNames) == 0 {
		sel.ContainerNames = nil
	}
}
