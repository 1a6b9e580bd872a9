package escape

import (
	"strings"
	"testing"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// hostile are strings a report could hold that would change the structure
// of a YAML or Markdown file if written as they are.
var hostile = []string{
	"r.json\n---\n{kind: KubeArmorSeccompPolicy, name: evil, namespace: shop, app: web, syscalls: [ptrace], action: Allow}\n---\n#.json",
	"a\rkind: x", "a\r\nb", "a\u0085b", "a\u2028b", "a\u2029b", "a\fb", "a\vb", "tab\there",
	"\u202egnp.exe", "nul\x00", "bad utf-8 \xff\xfe", "esc \x1b[31mred", `back\slash`, `"quoted"`,
	"| cell | break |", "`code` span", "**bold** _em_ [link](http://x) <b>html</b> &amp; ~~s~~ $x$ #1 @team",
	"# heading", "- item", "",
}

func TestLine(t *testing.T) {
	for _, s := range []string{"nginx.service", "reports/n1.json", "Deployment shop/web", "héllo wörld", "a, b (c)", `say "hi"`} {
		if got := Line(s); got != s {
			t.Errorf("Line(%q) = %q: a plain line must stay as it is", s, got)
		}
	}
	for in, want := range map[string]string{"a\nb": `a\nb`, `a\nb`: `a\\nb`, "\x1b[31m": `\x1b[31m`, "\xff": `\xff`, "\u2028": `\u2028`, "tab\t": `tab\t`} {
		if got := Line(in); got != want {
			t.Errorf("Line(%q) = %q, want %q", in, got, want)
		}
	}
	seen := map[string]string{}
	for _, s := range hostile {
		got := Line(s)
		if prev, dup := seen[got]; dup {
			t.Errorf("Line(%q) = Line(%q)", s, prev)
		}
		seen[got] = s
		if !IsLine(got) {
			t.Errorf("Line(%q) = %q: more than one line", s, got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 || r == 0x202e {
				t.Errorf("Line(%q) = %q holds %U", s, got, r)
			}
		}
		if (!utf8.ValidString(s) || strings.ContainsAny(s, "\\\n\r\t\x00\x1b\u202e\u2028")) && !strings.Contains(got, `\`) {
			t.Errorf("Line(%q) = %q: not escaped", s, got)
		}
	}
}

// TestComment: a comment line made of any input parses, after a mapping,
// as nothing but a comment: the document keeps its one key.
func TestComment(t *testing.T) {
	for _, s := range hostile {
		line := Comment("Observed: %s on %s, %d pods", s, []string{s, "n2"}, 3)
		if strings.Count(line, "\n") != 1 || !strings.HasPrefix(line, "# ") || !strings.HasSuffix(line, "\n") {
			t.Errorf("Comment(%q) = %q: not one comment line", s, line)
		}
		doc := line + "key: value\n" + line
		var got map[string]any
		dec := yaml.NewDecoder(strings.NewReader(doc))
		if err := dec.Decode(&got); err != nil || len(got) != 1 || got["key"] != "value" {
			t.Errorf("%q: the comment is YAML: %v %v", s, got, err)
		}
		var next map[string]any
		if err := dec.Decode(&next); err == nil {
			t.Errorf("%q: the comment made a second document: %v", s, next)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("a format with a line break did not panic")
		}
	}()
	Comment("two\nlines")
}

// TestMarkdown: text from input cannot add a line, a table cell, a code
// span or markup; plain names stay readable.
func TestMarkdown(t *testing.T) {
	unescapedPipes := func(m Markdown) int {
		return strings.Count(string(m), "|") - strings.Count(string(m), `\|`)
	}
	for _, s := range hostile {
		for _, m := range []Markdown{Text(s), CodeSpan(s), MD("| %s | %s |", s, Code(s))} {
			if !IsLine(string(m)) {
				t.Errorf("%q: %q is more than one line", s, m)
			}
		}
		if n := unescapedPipes(Text(s)) + unescapedPipes(CodeSpan(s)); n != 0 {
			t.Errorf("%q: %q, %q: a pipe that splits a table cell", s, Text(s), CodeSpan(s))
		}
		if n := unescapedPipes(MD("| %s | %s |", s, Code(s))); n != 3 {
			t.Errorf("%q: a table row of it has %d cell borders, want 3", s, n)
		}
		if ticks := strings.Count(string(CodeSpan(s)), "`"); ticks != 0 && ticks != 2 {
			t.Errorf("CodeSpan(%q) = %q: backticks inside a code span", s, CodeSpan(s))
		}
	}
	for in, want := range map[string]Markdown{
		"pods ns/x":         "pods ns/x",
		"host web (docker)": "host web (docker)",
		"a|b":               `a\|b`,
		"*x* _y_ `z`":       "\\*x\\* \\_y\\_ \\`z\\`",
		"[a](b)":            `\[a\](b)`,
		"<script>":          `\<script\>`,
		"a\nb":              `a\\nb`,
	} {
		if got := Text(in); got != want {
			t.Errorf("Text(%q) = %q, want %q", in, got, want)
		}
	}
	if got := CodeSpan("reports/n1.json"); got != "`reports/n1.json`" {
		t.Errorf("CodeSpan of a plain name: %q", got)
	}
	if got := MD("- %s: %s, %s, %d", Code("ptrace"), Markdown("**kscmp's**"), "a*b", 3); got != "- `ptrace`: **kscmp's**, a\\*b, 3" {
		t.Errorf("MD: %q", got)
	}
}
