package api

import (
	"errors"
	"strings"
	"testing"
)

func TestValidUnitName(t *testing.T) {
	for _, u := range []string{
		"nginx.service", "getty@tty1.service", "foo@.service", "a@b@c.service", `a:b-c_d.e\x2d.socket`,
		"dev-sda1.device", "x.timer", strings.Repeat("u", MaxUnitNameLen-len(".service")) + ".service",
	} {
		if err := ValidUnitName(u); err != nil {
			t.Errorf("ValidUnitName(%q) = %v", u, err)
		}
	}
	for u, why := range map[string]string{
		"":              "empty",
		"../etc/passwd": "starts with a dot",
		"etc/passwd":    "no unit type suffix",
		"../x.service":  "starts with a dot",
		"a/b.service":   `'/' is not allowed`,
		".service":      "starts with a dot",
		"..service":     "starts with a dot",
		"@x.service":    "starts with @",
		"nginx":         "no unit type suffix",
		"nginx.bogus":   "no unit type suffix",
		"a b.service":   `' ' is not allowed`,
		"a\n.service":   `'\n' is not allowed`,
		"é.service":     `'é' is not allowed`,
		strings.Repeat("u", MaxUnitNameLen-len(".service")+1) + ".service": "254 bytes, at most 253",
	} {
		err := ValidUnitName(u)
		if !errors.Is(err, ErrBadName) || !strings.HasPrefix(err.Error(), "not a valid systemd unit name: ") || !strings.Contains(err.Error(), why) {
			t.Errorf("ValidUnitName(%q) = %v, want %q", u, err, why)
		}
	}
}

func TestValidContainerName(t *testing.T) {
	for _, c := range []string{"web", "a.b_c-d", "0abc", strings.Repeat("c", MaxContainerNameLen)} {
		if err := ValidContainerName(c); err != nil {
			t.Errorf("ValidContainerName(%q) = %v", c, err)
		}
	}
	for c, why := range map[string]string{
		"":          "empty",
		"-x":        "starts with '-'",
		".x":        "starts with '.'",
		"..":        "starts with '.'",
		"../victim": "starts with '.'",
		"a/b":       `'/' is not allowed`,
		"a b":       `' ' is not allowed`,
		"wéb":       `'é' is not allowed`,
		strings.Repeat("c", MaxContainerNameLen+1): "237 bytes, at most 236",
	} {
		err := ValidContainerName(c)
		if !errors.Is(err, ErrBadName) || !strings.HasPrefix(err.Error(), "not a valid container name: ") || !strings.Contains(err.Error(), why) {
			t.Errorf("ValidContainerName(%q) = %v, want %q", c, err, why)
		}
	}
}
