package api

import (
	"fmt"
	"strings"
)

// ParseLabels reads a list of labels as kubectl's --selector and --labels
// take equality: "k=v,k=v", spaces around a pair ignored. An empty or blank
// string is no labels. A pair without "=" or an empty key, and a key given
// twice, are errors that quote the pair or key; the caller adds which flag
// or field the string came from.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: want key=value", kv)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("key %q given twice", k)
		}
		out[k] = v
	}
	return out, nil
}
