package escape

import (
	"fmt"
	"strings"
)

// Markdown is text that is safe to put into a Markdown document as it is:
// made by MD (or Text, CodeSpan), never by converting input.
type Markdown string

// Code is an argument of MD shown as a code span: `name`.
type Code string

// markdownSpecial are the ASCII characters that mean something inside a
// Markdown line (CommonMark and GitHub's extensions): escapes, code spans,
// emphasis, links and images ("(" and "!" mean something only next to an
// escaped bracket), HTML and autolinks, entities, table cells,
// strikethrough, math, headings' closing hashes and references, and
// mentions. CommonMark lets a backslash escape any ASCII punctuation.
const markdownSpecial = "\\`*_[]<>&|~$#@"

// Text returns s as Markdown text: one line (Line), with every character
// of markdownSpecial backslash-escaped, so it renders as the characters it
// holds, also inside a table cell. Plain names (letters, digits, "/", ".",
// "-", ":", ",") are unchanged.
func Text(s string) Markdown {
	l := Line(s)
	var b strings.Builder
	for i := 0; i < len(l); i++ {
		if strings.IndexByte(markdownSpecial, l[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(l[i])
	}
	return Markdown(b.String())
}

// CodeSpan returns s as a code span, `s`, showing Line(s) as it is. A string
// that holds a backtick or a pipe (which splits a table cell even inside a
// code span) is returned as Text instead.
func CodeSpan(s string) Markdown {
	l := Line(s)
	if strings.ContainsAny(l, "`|") {
		return Text(s)
	}
	return Markdown("`" + l + "`")
}

// MD formats Markdown: format is the writer's own Markdown; a Markdown
// argument is inserted as it is, a Code argument as CodeSpan, and every
// string, []string (joined with ", "), fmt.Stringer and error argument is
// input and goes through Text. Numbers and booleans are formatted as usual.
// Unlike Comment's, the format may hold line breaks (headings, lists, table
// rows): they are kscmp's; no argument can add one.
func MD(format string, a ...any) Markdown {
	typed := func(v any) (string, bool) {
		switch t := v.(type) {
		case Markdown:
			return string(t), true
		case Code:
			return string(CodeSpan(string(t))), true
		case []Code:
			q := make([]string, len(t))
			for i, c := range t {
				q[i] = string(CodeSpan(string(c)))
			}
			return strings.Join(q, ", "), true
		}
		return "", false
	}
	return Markdown(fmt.Sprintf(format, args(a, func(s string) string { return string(Text(s)) }, typed)...))
}
