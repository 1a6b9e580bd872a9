package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/internal/fsutil"
)

const smallPolicy = "kind: KubeArmorSeccompPolicy\nname: a\nnamespace: b\napp: x\nsyscalls: [read]\naction: Allow\n"

// runBounded is runCLI that fails the test, instead of hanging it, when the
// command does not return within a minute; unblock is called then, to let
// the stuck command go.
func runBounded(t *testing.T, unblock func(), args ...string) (int, string) {
	t.Helper()
	type result struct {
		code int
		errs string
	}
	done := make(chan result, 1)
	go func() {
		code, _, errs := runCLI(t, args...)
		done <- result{code, errs}
	}()
	select {
	case r := <-done:
		return r.code, r.errs
	case <-time.After(time.Minute):
		unblock()
		<-done
		t.Fatalf("%v blocked", args)
		return 0, ""
	}
}

// TestInputsRegularAndBounded: an input that is not a regular file is
// refused by name without being read, and so is a file over the size limit,
// which --max-input-size (or KSCMP_MAX_INPUT_SIZE) raises (#12 item 7).
// Before the fix validate blocked forever on the FIFO and read /dev/zero
// until memory ran out.
func TestInputsRegularAndBounded(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo", "x.yaml")
	os.MkdirAll(filepath.Dir(fifo), 0o755)
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	unblockFIFO := func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
	}
	code, errs := runBounded(t, unblockFIFO, "validate", filepath.Dir(fifo))
	if code != exitInvalid || !strings.Contains(errs, fifo+" is a named pipe (FIFO), not a regular file: not read") {
		t.Errorf("validate a FIFO: exit %d: %s", code, errs)
	}
	zero := filepath.Join(dir, "zero", "x.yaml")
	os.MkdirAll(filepath.Dir(zero), 0o755)
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	code, errs = runBounded(t, func() {}, "validate", filepath.Dir(zero))
	if code != exitInvalid || !strings.Contains(errs, zero+" is a character device, not a regular file: not read") {
		t.Errorf("validate /dev/zero: exit %d: %s", code, errs)
	}
	// A report is read by the same reader.
	report := filepath.Join(dir, "r.json")
	syscall.Mkfifo(report, 0o644)
	code, errs = runBounded(t, func() {
		if f, err := os.OpenFile(report, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
	}, "recommend", "--from", report, "-o", filepath.Join(dir, "out"))
	if code != exitInvalid || !strings.Contains(errs, report+" is a named pipe (FIFO)") {
		t.Errorf("recommend --from a FIFO: exit %d: %s", code, errs)
	}

	// Larger than the default limit: refused before reading (a sparse file).
	big := filepath.Join(dir, "big.yaml")
	if f, err := os.Create(big); err != nil {
		t.Fatal(err)
	} else {
		f.Truncate(fsutil.DefaultMaxInput + 1)
		f.Close()
	}
	code, _, errs = runCLI(t, "validate", big)
	if code != exitInvalid || !strings.Contains(errs, "file too large: 16777217 bytes, more than the limit of 16777216") || !strings.Contains(errs, "--max-input-size raises the limit on input files (now 16Mi)") {
		t.Errorf("a file over the limit: exit %d: %s", code, errs)
	}
	// The limit is a flag, an environment variable, a config key.
	small := filepath.Join(dir, "small.yaml")
	os.WriteFile(small, []byte(smallPolicy+strings.Repeat("# padding\n", 200)), 0o644)
	if code, _, errs := runCLI(t, "validate", "--max-input-size", "1Ki", small); code != exitInvalid || !strings.Contains(errs, "more than the limit of 1024") {
		t.Errorf("--max-input-size 1Ki: exit %d: %s", code, errs)
	}
	if code, _, errs := runCLI(t, "validate", "--max-input-size", "4Ki", small); code != exitOK {
		t.Errorf("--max-input-size 4Ki: exit %d: %s", code, errs)
	}
	t.Setenv("KSCMP_MAX_INPUT_SIZE", "1Ki")
	if code, _, errs := runCLI(t, "merge", "-f", small, "-n", "b", "-l", "app=x"); code != exitInvalid || !strings.Contains(errs, "(now 1Ki)") {
		t.Errorf("KSCMP_MAX_INPUT_SIZE=1Ki: exit %d: %s", code, errs)
	}
	if code, _, errs := runCLI(t, "validate", "--max-input-size", "lots", small); code != exitUsage || !strings.Contains(errs, "--max-input-size") {
		t.Errorf("a bad size: exit %d: %s", code, errs)
	}
	// The config file too is an input file.
	cfg := filepath.Join(dir, "config.yaml")
	syscall.Mkfifo(cfg, 0o644)
	code, errs = runBounded(t, func() {
		if f, err := os.OpenFile(cfg, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
	}, "--config", cfg, "validate", small)
	if code != exitUsage || !strings.Contains(errs, "config file "+cfg+": "+cfg+" is a named pipe (FIFO)") {
		t.Errorf("--config a FIFO: exit %d: %s", code, errs)
	}
}

// TestRunUntilSignalled: SIGINT and SIGTERM cancel the command's context; a
// command that returns then gives its own exit code, one that does not is
// left after the grace period, or at a second signal, with 128+signal.
func TestRunUntilSignalled(t *testing.T) {
	var stderr strings.Builder
	// A command that stops when cancelled.
	code := runUntilSignalled(&stderr, time.Hour, func(ctx context.Context) int {
		syscall.Kill(os.Getpid(), syscall.SIGINT)
		<-ctx.Done()
		return exitOK
	})
	if code != exitOK {
		t.Errorf("a command that stops on the signal: exit %d", code)
	}
	// A command blocked where no context reaches: the grace period ends it.
	stuck := make(chan struct{})
	defer close(stuck)
	code = runUntilSignalled(&stderr, time.Millisecond, func(context.Context) int {
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		<-stuck
		return exitOK
	})
	if code != 128+int(syscall.SIGTERM) {
		t.Errorf("a stuck command after the grace period: exit %d, want %d", code, 128+int(syscall.SIGTERM))
	}
	// A second signal ends it at once.
	code = runUntilSignalled(&stderr, time.Hour, func(ctx context.Context) int {
		syscall.Kill(os.Getpid(), syscall.SIGINT)
		<-ctx.Done()
		syscall.Kill(os.Getpid(), syscall.SIGINT)
		<-stuck
		return exitOK
	})
	if code != 128+int(syscall.SIGINT) {
		t.Errorf("a stuck command at the second signal: exit %d, want %d", code, 128+int(syscall.SIGINT))
	}
	if !strings.Contains(stderr.String(), "interrupt again: ended before the command finished") {
		t.Errorf("stderr: %s", stderr.String())
	}
}

// TestSignalEndsBlockedProcess: the real binary, blocked opening a FIFO it
// was told to write the summary to (nobody reads it), ends on one SIGTERM.
// Before the fix the signal only cancelled a context nobody looked at, and
// the process never ended.
func TestSignalEndsBlockedProcess(t *testing.T) {
	bin := buildKscmp(t)
	dir := t.TempDir()
	rep, fifo := filepath.Join(dir, "r.json"), filepath.Join(dir, "summary.md")
	os.WriteFile(rep, []byte(sampleReport), 0o644)
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "recommend", "--from", rep, "-o", filepath.Join(dir, "out"), "--summary", fifo)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The policies are written before the summary: once they are there,
	// kscmp is at the FIFO.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "out", "shop", "web.yaml")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("no policy written: %s", stderr.String())
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) {
			t.Errorf("exit: %v, want %d\n%s", err, 128+int(syscall.SIGTERM), stderr.String())
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("SIGTERM did not end kscmp blocked on a FIFO\n%s", stderr.String())
	}
}
