package discover

import (
	"errors"
	"fmt"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// TestFeatureProbes checks that each kernel feature probe answers once per
// process (a second call gives the very same answer) with nil or an error
// wrapping ErrUnsupported, and that a recorder left to choose (HookAuto)
// takes the path the probes allow.
func TestFeatureProbes(t *testing.T) {
	requireKernel(t)
	_, currentErr := directCurrentTask()
	probes := []struct {
		name string
		run  func() error
	}{
		{"tp_btf", haveTpBtf},
		{"task_free", haveTaskFree},
		{"direct current task", func() error { _, err := directCurrentTask(); return err }},
	}
	for _, p := range probes {
		err := p.run()
		if again := p.run(); again != err {
			t.Errorf("%s: probed again: %v, then %v", p.name, err, again)
		}
		if err != nil && !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v does not wrap ErrUnsupported", p.name, err)
		}
		t.Logf("%s: %v", p.name, err)
	}

	want := HookRawTp
	if haveTpBtf() == nil {
		want = tpBtfHook(runtime.GOARCH == "amd64" && currentErr != nil, haveTaskFree() == nil)
	}
	r, _ := newTestRecorder(t, RecorderOptions{})
	if r.Hook() != want {
		t.Errorf("recorder took %s, the probes allow %s", r.Hook(), want)
	}
	t.Logf("hook on this kernel: %s", r.Hook())
}

// TestHookVariants loads the tp_btf program without each shortcut in turn
// and checks that the recorder names the variant it runs (the report's
// "hook") and loads task_free only with the memo.
func TestHookVariants(t *testing.T) {
	requireKernel(t)
	if err := haveTpBtf(); err != nil {
		testenv.Missing(t, fmt.Sprintf("a kernel with tp_btf programs (%v)", err))
	}
	memo := haveTaskFree() == nil
	_, currentErr := directCurrentTask()
	direct := runtime.GOARCH != "amd64" || currentErr == nil
	for _, tc := range []struct {
		opts RecorderOptions
		want Hook
	}{
		{RecorderOptions{Hook: HookTpBtf}, tpBtfHook(!direct, memo)},
		{RecorderOptions{Hook: HookTpBtf, memo: memoOff}, tpBtfHook(!direct, false)},
		{RecorderOptions{Hook: HookTpBtf, currentTask: readCurrentAt(0)}, tpBtfHook(runtime.GOARCH == "amd64", memo)},
		{RecorderOptions{Hook: HookTpBtf, currentTask: readCurrentAt(0), memo: memoOff}, tpBtfHook(runtime.GOARCH == "amd64", false)},
		{RecorderOptions{Hook: HookRawTp}, HookRawTp},
	} {
		t.Run(tc.want.String(), func(t *testing.T) {
			r, _ := newTestRecorder(t, tc.opts)
			if r.Hook() != tc.want {
				t.Errorf("hook %s, want %s", r.Hook(), tc.want)
			}
			withMemo := r.Hook() == HookTpBtf || r.Hook() == HookTpBtfHelper
			if (r.free != nil) != withMemo || (r.freeLink != nil) != withMemo {
				t.Errorf("hook %s: task_free loaded %v, attached %v", r.Hook(), r.free != nil, r.freeLink != nil)
			}
		})
	}
	names := map[Hook]string{HookTpBtf: "tp_btf", HookTpBtfHelper: "tp_btf+helper", HookTpBtfNoMemo: "tp_btf-nomemo",
		HookTpBtfHelperNoMemo: "tp_btf+helper-nomemo", HookRawTp: "raw_tp", HookAuto: "auto"}
	for h, name := range names {
		if h.String() != name {
			t.Errorf("%d.String() = %q, want %q", int(h), h.String(), name)
		}
	}
}

// TestLoadRefused checks that a recorder the kernel refuses to load fails
// with an error wrapping ErrUnsupported, "this system cannot do it", and a
// bad option with one that does not. The refusal is real: the loading
// thread gives up CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (capabilities are
// per thread), and the thread ends with the test's goroutine.
func TestLoadRefused(t *testing.T) {
	requireKernel(t)
	// Probed with the capabilities first: the answers are kept per process.
	haveTpBtf()
	haveTaskFree()
	directCurrentTask()
	host, err := MountNSOf("/proc/self")
	if err != nil {
		t.Fatal(err)
	}

	if _, err := NewRecorder(RecorderOptions{Hook: HookTpBtfNoMemo}); err == nil || errors.Is(err, ErrUnsupported) {
		t.Errorf("a result as an option: %v, want an error that is not ErrUnsupported", err)
	}

	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		for _, c := range []uint{unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_SYS_ADMIN} {
			data[c/32].Effective &^= 1 << (c % 32)
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		r, err := NewRecorder(RecorderOptions{HostMountNS: host})
		if err == nil {
			r.Close()
			err = errors.New("loaded without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN")
		} else if !errors.Is(err, ErrUnsupported) {
			err = errors.New("not ErrUnsupported: " + err.Error())
		} else {
			t.Logf("refused: %v", err)
			err = nil
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
