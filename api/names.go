package api

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The name rules of host targets, in one place: policy validation, the
// installers (for names from policies, from the command line and from their
// own manifests) and anything else that turns a name into a path use them,
// so a name that passes can never be a path ("/", "..", a leading dot) nor
// make a file name too long.
const (
	// MaxUnitNameLen is the longest systemd unit name kscmp takes. systemd
	// takes 255 bytes (UNIT_NAME_MAX 256 with the NUL), but the drop-in
	// directory "<unit>.d" must fit in NAME_MAX (255) too.
	MaxUnitNameLen = 255 - len(".d")
	// MaxContainerNameLen is the longest container name kscmp takes: the
	// longest file it makes for a name N is the temporary file of its
	// profile, "." + N + ".json" + ".tmp-" + 8 random characters
	// (internal/fsutil.TempName), which must fit in NAME_MAX (255):
	// 255 - 1 - 5 - 5 - 8 = 236. (Docker and runc take longer names; such a
	// container needs a shorter name to get a profile from kscmp.)
	MaxContainerNameLen = 255 - len(".") - len(".json") - len(".tmp-") - 8
)

// ErrBadName is wrapped by the errors of ValidUnitName and
// ValidContainerName.
var ErrBadName = errors.New("bad name")

// unitTypes are the unit type suffixes systemd knows (unit_type_from_string).
var unitTypes = []string{"automount", "device", "mount", "path", "scope", "service", "slice", "socket", "swap", "target", "timer"}

// ValidUnitName returns nil when unit is a systemd unit name by systemd's own
// rules (unit_name_is_valid: a prefix of letters, digits and ":-_.\", one
// optional "@" not first for a template or an instance, then "." and a
// known unit type), at most MaxUnitNameLen bytes and not starting with a
// dot. Policies may leave ".service" out: check UnitName(u). The error says
// what is wrong and wraps ErrBadName.
func ValidUnitName(unit string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("not a valid systemd unit name: %s: %w", fmt.Sprintf(format, args...), ErrBadName)
	}
	dot := strings.LastIndexByte(unit, '.')
	switch {
	case unit == "":
		return bad("empty")
	case len(unit) > MaxUnitNameLen:
		return bad("%d bytes, at most %d (the drop-in directory <unit>.d must fit in 255)", len(unit), MaxUnitNameLen)
	case unit[0] == '.':
		return bad("starts with a dot")
	case dot < 0 || !slices.Contains(unitTypes, unit[dot+1:]):
		return bad("no unit type suffix (want one of .%s)", strings.Join(unitTypes, ", ."))
	case unit[0] == '@':
		return bad("starts with @")
	}
	for _, c := range unit[:dot] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(":-_.\\@", c)) {
			return bad("%q is not allowed (letters, digits and \":-_.\\@\")", c)
		}
	}
	return nil
}

// ValidContainerName returns nil when name is a container name by the rules
// docker, podman, runc and crun share for names and ids
// ([a-zA-Z0-9][a-zA-Z0-9_.-]*) and at most MaxContainerNameLen bytes. The
// error says what is wrong and wraps ErrBadName.
func ValidContainerName(name string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("not a valid container name: %s: %w", fmt.Sprintf(format, args...), ErrBadName)
	}
	if name == "" {
		return bad("empty")
	}
	if len(name) > MaxContainerNameLen {
		return bad("%d bytes, at most %d (its profile's temporary file name must fit in 255)", len(name), MaxContainerNameLen)
	}
	for i, c := range name {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return bad("starts with %q (want a letter or a digit)", c)
		}
		if !alnum && !strings.ContainsRune("_.-", c) {
			return bad("%q is not allowed (letters, digits and \"_.-\")", c)
		}
	}
	return nil
}
