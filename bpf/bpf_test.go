package bpf

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// prerequisite skips a test whose prerequisite is missing, or fails it when
// CI=true: CI must run everything.
func prerequisite(t *testing.T, ok bool, what string) {
	t.Helper()
	if !ok {
		testenv.Missing(t, what)
	}
}

// TestGeneratedCurrent checks that the committed objects were generated from
// the committed sources: sources.sha256, written by go generate, must match.
// It needs no compiler.
func TestGeneratedCurrent(t *testing.T) {
	f, err := os.Open("sources.sha256")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, path, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("sources.sha256: bad line %q", sc.Text())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s changed since the objects were generated: run `go generate ./bpf/...` and commit the result", path)
		}
		seen[path] = true
	}
	// Every source must be covered.
	err = filepath.WalkDir("c", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); (ext == ".c" || ext == ".h") && !seen[path] {
			t.Errorf("%s is not in sources.sha256: add it to the go:generate line in gen.go", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGeneratedReproducible regenerates the objects and bindings from the
// committed sources in a temporary directory, with the go:generate lines of
// gen.go, and compares them byte for byte with the committed ones.
func TestGeneratedReproducible(t *testing.T) {
	_, errClang := exec.LookPath("clang")
	prerequisite(t, errClang == nil, "clang (apt-get install clang llvm libbpf-dev)")
	_, errStrip := exec.LookPath("llvm-strip")
	prerequisite(t, errStrip == nil, "llvm-strip (apt-get install llvm)")
	_, errHdr := os.Stat("/usr/include/bpf/bpf_helpers.h")
	prerequisite(t, errHdr == nil, "/usr/include/bpf/bpf_helpers.h (apt-get install libbpf-dev)")

	out, err := exec.Command("go", "tool", "-n", "bpf2go").Output()
	if err != nil {
		t.Fatalf("go tool -n bpf2go: %v", err)
	}
	bpf2go := strings.TrimSpace(string(out))

	tmp := t.TempDir()
	if err := os.CopyFS(filepath.Join(tmp, "c"), os.DirFS("c")); err != nil {
		t.Fatal(err)
	}
	gen, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, line := range strings.Split(string(gen), "\n") {
		args, ok := strings.CutPrefix(line, "//go:generate go tool bpf2go ")
		if !ok {
			continue
		}
		cmd := exec.Command(bpf2go, strings.Fields(args)...)
		cmd.Dir = tmp
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("bpf2go %s: %v\n%s", args, err, b)
		}
		ran++
	}
	if ran == 0 {
		t.Fatal("no bpf2go line in gen.go")
	}
	fresh, err := filepath.Glob(filepath.Join(tmp, "*_bpfel.*"))
	if err != nil {
		t.Fatal(err)
	}
	committed, _ := filepath.Glob("*_bpfel.*")
	if len(fresh) != len(committed) {
		t.Errorf("generated %d files, %d committed", len(fresh), len(committed))
	}
	for _, path := range fresh {
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Base(path))
		if errors.Is(err, fs.ErrNotExist) || !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `go generate ./bpf/...` and commit the result", filepath.Base(path))
		}
	}
}

// TestLayout checks the Go mirror of recorder.h against the compiled object.
func TestLayout(t *testing.T) {
	spec, err := LoadRecorder()
	if err != nil {
		t.Fatal(err)
	}
	var set *btf.Struct
	if err := spec.Types.TypeByName("syscall_set", &set); err != nil {
		t.Fatal(err)
	}
	bits := member(t, set, "bits")
	outer, ok := bits.Type.(*btf.Array)
	if !ok {
		t.Fatalf("syscall_set.bits is %v", bits.Type)
	}
	inner, ok := outer.Type.(*btf.Array)
	if !ok || outer.Nelems != ABICount || inner.Nelems != NrWords || NrWords*64 != NrBits {
		t.Errorf("syscall_set.bits is [%d][%v], Go says [%d][%d]", outer.Nelems, outer.Type, ABICount, NrWords)
	}
	if int(set.Size) != binary.Size(RecorderSyscallSet{}) {
		t.Errorf("syscall_set: %d bytes in C, %d in Go", set.Size, binary.Size(RecorderSyscallSet{}))
	}
	if got := spec.Maps[RecorderMapSets].ValueSize; int(got) != binary.Size(RecorderSyscallSet{}) {
		t.Errorf("sets value size %d", got)
	}
	if got := spec.Maps[RecorderMapSets].KeySize; got != 8 {
		t.Errorf("sets key size %d, want 8 (uint64 keys)", got)
	}
	if got := spec.Maps[RecorderMapLost].MaxEntries; got != LostCount {
		t.Errorf("lost has %d counters, Go says %d", got, LostCount)
	}
	if got := len(RecorderCpuCache{}.Memo); got != MemoWays {
		t.Errorf("cpu_cache.memo has %d ways, Go says %d", got, MemoWays)
	}
	var args *btf.Struct
	if err := spec.Types.TypeByName("arg_set", &args); err != nil {
		t.Fatal(err)
	}
	if int(args.Size) != binary.Size(RecorderArgSet{}) {
		t.Errorf("arg_set: %d bytes in C, %d in Go", args.Size, binary.Size(RecorderArgSet{}))
	}
	for name, want := range map[string]int{"personas": ArgValues, "prctl_large": ArgValues, "prctl_options": PrctlBits / 64} {
		if a, ok := member(t, args, name).Type.(*btf.Array); !ok || int(a.Nelems) != want {
			t.Errorf("arg_set.%s is %v, Go says %d elements", name, member(t, args, name).Type, want)
		}
	}
	var ev *btf.Struct
	if err := spec.Types.TypeByName("new_key_event", &ev); err != nil {
		t.Fatal(err)
	}
	if int(ev.Size) != binary.Size(RecorderNewKeyEvent{}) {
		t.Errorf("new_key_event: %d bytes in C, %d in Go", ev.Size, binary.Size(RecorderNewKeyEvent{}))
	}
}

// TestVerifier loads every program of the objects into this kernel.
func TestVerifier(t *testing.T) {
	_, err := os.Stat("/sys/kernel/btf/vmlinux")
	prerequisite(t, os.Geteuid() == 0 && err == nil, "root and kernel BTF (/sys/kernel/btf/vmlinux)")
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	for name, load := range map[string]func() (*ebpf.CollectionSpec, error){"Recorder": LoadRecorder, "Bench": LoadBench, "ExitErr": LoadExitErr, "Exited": LoadExited} {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		for prog := range spec.Programs {
			one := spec.Copy()
			for other := range one.Programs {
				if other != prog {
					delete(one.Programs, other)
				}
			}
			coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{
				Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats},
			})
			if err != nil {
				var ve *ebpf.VerifierError
				if errors.As(err, &ve) {
					t.Errorf("%s/%s: %+v", name, prog, ve)
				} else {
					t.Errorf("%s/%s: %v", name, prog, err)
				}
				continue
			}
			stats := strings.Fields(coll.Programs[prog].VerifierLog)
			t.Logf("%s/%s: verifier: %s", name, prog, strings.Join(stats, " "))
			coll.Close()
		}
	}
}

// member returns the member name of s, failing the test without it.
func member(t *testing.T, s *btf.Struct, name string) btf.Member {
	t.Helper()
	for _, m := range s.Members {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("%s has no member %s", s.Name, name)
	return btf.Member{}
}
