package discover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// requireKernel skips (or, with CI=true, fails) a test whose prerequisites
// for loading the recorder are missing.
func requireKernel(tb testing.TB, tools ...string) {
	tb.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN)")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		missing = append(missing, "kernel BTF (/sys/kernel/btf/vmlinux)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" in PATH")
		}
	}
	testenv.Missing(tb, missing...)
}

// onOwnThread runs fn on an OS thread that fn may leave in other namespaces:
// the thread ends with fn. It is never the main thread, which Go keeps
// (parked) when a goroutine locked to it ends: /proc/self would then show
// fn's namespaces to the rest of the test binary.
func onOwnThread(fn func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread: held while fn runs, so fn gets another.
			defer runtime.UnlockOSThread()
			go func() {
				runtime.LockOSThread() // never unlocked: the thread ends with fn
				defer close(done)
				fn()
			}()
			<-done
			return
		}
		defer close(done)
		fn()
	}()
	<-done
}

// newTestRecorder starts a recorder and a Run loop that collects events.
func newTestRecorder(tb testing.TB, opts RecorderOptions) (*Recorder, *eventLog) {
	tb.Helper()
	r, err := NewRecorder(opts)
	if err != nil {
		tb.Fatal(err)
	}
	log := &eventLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, log.add) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			tb.Errorf("Run: %v", err)
		}
		if err := r.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return r, log
}

// eventLog collects NewKey events.
type eventLog struct {
	mu     sync.Mutex
	events []NewKey
}

func (l *eventLog) add(ev NewKey) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

// wait returns the first event that match accepts, waiting up to 5 s.
func (l *eventLog) wait(tb testing.TB, what string, match func(NewKey) bool) NewKey {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		for _, ev := range l.events {
			if match(ev) {
				l.mu.Unlock()
				return ev
			}
		}
		l.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatalf("no new-key event for %s", what)
	return NewKey{}
}

// keySet returns the snapshot of key.
func keySet(tb testing.TB, r *Recorder, key Key) KeySet {
	tb.Helper()
	sets, err := r.Snapshot()
	if err != nil {
		tb.Fatal(err)
	}
	for _, ks := range sets {
		if ks.Key == key {
			return ks
		}
	}
	tb.Fatalf("key %s not in snapshot", key)
	return KeySet{}
}

// buildC compiles testdata/<src> with gcc and extra flags into dir.
func buildC(tb testing.TB, dir, src, out string, flags ...string) string {
	tb.Helper()
	bin := filepath.Join(dir, out)
	args := append([]string{"-O2", "-static", "-Wall", "-Werror", "-o", bin, filepath.Join("testdata", src)}, flags...)
	if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		testenv.Missing(tb, fmt.Sprintf("gcc %v: %v\n%s (apt-get install gcc; for -m32: gcc-multilib)", args, err, b))
	}
	return bin
}
