package api

import (
	"reflect"
	"testing"
)

func TestParseLabels(t *testing.T) {
	for in, want := range map[string]map[string]string{
		"":                      {},
		"  ":                    {},
		"app=web":               {"app": "web"},
		" app=web , tier=db ":   {"app": "web", "tier": "db"},
		"app=":                  {"app": ""},
		"a.b/c=x=y,pod-hash=12": {"a.b/c": "x=y", "pod-hash": "12"},
	} {
		got, err := ParseLabels(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseLabels(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"app":         `"app": want key=value`,
		"=web":        `"=web": want key=value`,
		"app=a,,b=c":  `"": want key=value`,
		"app=a,app=b": `key "app" given twice`,
	} {
		if _, err := ParseLabels(in); err == nil || err.Error() != msg {
			t.Errorf("ParseLabels(%q): %v, want %q", in, err, msg)
		}
	}
}
