// Package procfs reads the few /proc fields kscmp needs.
package procfs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// StartTicks returns field 22 (starttime: clock ticks after boot) of a
// /proc stat file (/proc/PID/stat or /proc/PID/task/TID/stat).
func StartTicks(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// comm (field 2) may hold spaces and parentheses: skip to the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%s: no comm field", path)
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("%s: %d fields", path, len(fields)+2)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}
