package violations

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/internal/ocitest"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// BenchmarkExited is what the Exited program (--attribute-exited, on by
// default) costs: it runs once per thread exit, never on a system call.
// Side by side in one run, rounds rotated:
//
//	go test -run '^$' -bench Exited -benchtime 1x ./discover/violations/
//
// Two processes, each a minimal static executable: plain (exit_group at
// once: the program's path for a task without seccomp, one compare) and
// strict (prctl into seccomp's strict mode, then exit: the path that keeps
// the exit). Figures: the median time to start, run and reap one process
// without and with the program attached, and the program's own run time
// per exit from the kernel's BPF statistics.
func BenchmarkExited(b *testing.B) {
	if runtime.GOARCH != "amd64" {
		testenv.Missing(b, "an amd64 machine (the test programs are x86-64 code)")
	}
	if os.Geteuid() != 0 {
		testenv.Missing(b, "root (CAP_BPF, CAP_PERFMON)")
	}
	dir := b.TempDir()
	progs := map[string]string{"plain": filepath.Join(dir, "plain"), "strict": filepath.Join(dir, "strict")}
	for name, data := range map[string][]byte{"plain": ocitest.ExitProgram(0), "strict": ocitest.StrictExitProgram()} {
		if err := os.WriteFile(progs[name], data, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	const rounds, spawns = 6, 300
	spawn := func(path string) time.Duration {
		var best []time.Duration
		for range spawns {
			t0 := time.Now()
			if err := exec.Command(path).Run(); err != nil {
				b.Fatalf("%s: %v", path, err)
			}
			best = append(best, time.Since(t0))
		}
		slices.Sort(best)
		return best[len(best)/2]
	}
	for b.Loop() {
		wall := map[string][]float64{}
		for round := range rounds {
			for i := range 2 {
				attached := (i+round)%2 == 1
				var x *exited
				if attached {
					var err error
					if x, err = openExited(DefaultExitedEntries); err != nil {
						b.Fatal(err)
					}
				}
				for _, p := range []string{"plain", "strict"} {
					key := fmt.Sprintf("%s/%v", p, attached)
					wall[key] = append(wall[key], float64(spawn(progs[p]).Microseconds()))
				}
				if x != nil {
					x.Close()
				}
			}
		}
		for _, p := range []string{"plain", "strict"} {
			off, on := median(wall[p+"/false"]), median(wall[p+"/true"])
			b.Logf("%-6s process, start to reap (median of %d rounds of %d): %.0f µs without, %.0f µs with the Exited program (%+.1f%%)",
				p, rounds, spawns, off, on, 100*(on-off)/off)
			b.ReportMetric(on/off, p+"-with/without")
		}
	}
	exitedRunTime(b, progs)
}

// exitedRunTime logs the Exited program's own run time per exit of each
// process kind, from the kernel's BPF statistics.
func exitedRunTime(b *testing.B, progs map[string]string) {
	restore, ok := testenv.EnableBPFStats(b)
	if !ok {
		return
	}
	defer restore()
	x, err := openExited(DefaultExitedEntries)
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	for _, p := range []string{"plain", "strict"} {
		s0, err := x.objs.ProcessExit.Stats()
		if err != nil {
			b.Fatal(err)
		}
		for range 1000 {
			if err := exec.Command(progs[p]).Run(); err != nil {
				b.Fatal(err)
			}
		}
		s1, err := x.objs.ProcessExit.Stats()
		if err != nil {
			b.Fatal(err)
		}
		// Other exits on the machine run it too; the processes here are
		// nearly all of them.
		ns := float64(s1.Runtime-s0.Runtime) / float64(s1.RunCount-s0.RunCount)
		b.Logf("%-6s process: the Exited program ran %d times, %.0f ns per run", p, s1.RunCount-s0.RunCount, ns)
		b.ReportMetric(ns, p+"-ns/exit")
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
