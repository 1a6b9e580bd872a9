// Package escape makes text that came from input (a report's file name, a
// node name, an owner's name, anything a recorder or a person could have
// written) safe in the text files kscmp writes for people to review: YAML
// comment lines and Markdown.
//
// The danger is not odd characters but structure: a line break in a YAML
// comment ends the comment, and what follows is YAML — a second policy that
// passes review hidden among comments; a line break, a pipe or a backtick in
// Markdown makes a heading, a table cell or a code span the reviewer reads as
// kscmp's own words. Every writer of such files formats its lines with
// Comment or MD: the format is kscmp's own text, every string argument is
// input and is escaped, so no argument can add a line, a cell or markup.
package escape

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Line returns s as one line of printable text: as it is when it is one
// already (valid UTF-8 of runes unicode.IsPrint accepts) and holds no
// backslash; otherwise with every backslash doubled and every other rune
// that is not printable — line breaks of any kind (\n, \r, NEL, U+2028,
// U+2029), control and format characters (ESC, U+202E), tabs — written as
// Go writes it in a string literal (\n, \x1b, \u202e), and each byte of
// invalid UTF-8 as \xNN. The result is unambiguous (no two strings give
// the same line), and a string made of several parts can be escaped whole.
func Line(s string) string {
	if isPlain(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRune(r) // '\n', '\x1b', '\u2028'
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

func isPlain(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == '\\' || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// IsLine reports whether s is one line: no byte or rune that YAML, Markdown
// or a terminal takes as a line break (\n, \r, \f, \v, NEL, U+2028, U+2029).
func IsLine(s string) bool {
	return !strings.ContainsAny(s, "\n\r\f\v\u0085\u2028\u2029")
}

// args escapes the string arguments of a format call with esc.
func args(in []any, esc func(string) string, typed func(any) (string, bool)) []any {
	out := make([]any, len(in))
	for i, a := range in {
		if typed != nil {
			if s, ok := typed(a); ok {
				out[i] = s
				continue
			}
		}
		switch v := a.(type) {
		case string:
			out[i] = esc(v)
		case []string:
			q := make([]string, len(v))
			for j, s := range v {
				q[j] = esc(s)
			}
			out[i] = strings.Join(q, ", ")
		case fmt.Stringer:
			out[i] = esc(v.String())
		case error:
			out[i] = esc(v.Error())
		default:
			out[i] = a // numbers, booleans: their formatting holds no markup
		}
	}
	return out
}

// Comment returns one YAML comment line, "# " + the formatted text + "\n".
// format is the writer's own text; every string, []string (joined with
// ", "), fmt.Stringer and error argument is input and goes through Line. It panics when the result
// is not one line, which only a format (kscmp's own text) with a line break
// can cause: a programming error, never input.
func Comment(format string, a ...any) string {
	text := fmt.Sprintf(format, args(a, Line, nil)...)
	if !IsLine(text) {
		panic(fmt.Sprintf("escape.Comment: the format %q makes more than one line", format))
	}
	return "# " + text + "\n"
}
