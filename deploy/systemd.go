package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrNoSystemdAnalyze is returned by VerifySystemdDropIn when
// systemd-analyze is not installed.
var ErrNoSystemdAnalyze = errors.New("systemd-analyze not found (Debian package systemd)")

// VerifySystemdDropIn checks a drop-in with systemd's own parser: it places
// it under a throw-away unit and runs `systemd-analyze verify` with debug
// logging, because verify exits 0 even when it ignores a bad key or an
// unknown system call name. Every line systemd ignores, or fails to parse,
// in the drop-in is an error.
func VerifySystemdDropIn(ctx context.Context, dropIn []byte) error {
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		return ErrNoSystemdAnalyze
	}
	dir, err := os.MkdirTemp("", "kscmp-verify-")
	if err != nil {
		return fmt.Errorf("verify drop-in: %w", err)
	}
	defer os.RemoveAll(dir)
	unit := filepath.Join(dir, "kscmp-verify.service")
	conf := filepath.Join(dir, "kscmp-verify.service.d", "50-kscmp-seccomp.conf")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		return fmt.Errorf("verify drop-in: %w", err)
	}
	if err := os.WriteFile(unit, []byte("[Unit]\nDescription=kscmp drop-in check\n[Service]\nExecStart=/bin/true\n"), 0o644); err != nil {
		return fmt.Errorf("verify drop-in: %w", err)
	}
	if err := os.WriteFile(conf, dropIn, 0o644); err != nil {
		return fmt.Errorf("verify drop-in: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin, "verify", "--man=no", unit)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=debug", "SYSTEMD_LOG_TARGET=console", "SYSTEMD_LOG_COLOR=0")
	out, err := cmd.CombinedOutput()
	var problems []string
	loaded := false
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "DropIn Path: "+conf) || strings.Contains(line, conf+":") {
			loaded = true
		}
		rest, ok := strings.CutPrefix(line, conf+":")
		if !ok {
			continue
		}
		if strings.Contains(rest, "ignoring") || strings.Contains(rest, "Failed") || strings.Contains(rest, "Unknown") || strings.Contains(rest, "Invalid") {
			problems = append(problems, "line "+rest)
		}
	}
	if err != nil {
		return fmt.Errorf("systemd-analyze verify: %w: %s", err, bytes.TrimSpace(out))
	}
	if len(problems) > 0 {
		return fmt.Errorf("systemd ignores parts of the drop-in:\n%s", strings.Join(problems, "\n"))
	}
	if !loaded {
		return fmt.Errorf("systemd-analyze verify did not load the drop-in (output: %s)", bytes.TrimSpace(out))
	}
	return nil
}
