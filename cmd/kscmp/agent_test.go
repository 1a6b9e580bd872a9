package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/internal/apitest"
	"github.com/kubearmor/kscmp/internal/fsutil"
)

// TestAgentCommand runs the built `kscmp agent` against a real API server:
// profiles appear for the node's pods, and killing the agent with SIGKILL in
// the middle of reconciling, again and again while policies change, never
// leaves a partial profile or a temporary file; the last agent converges.
func TestAgentCommand(t *testing.T) {
	srv := apitest.Start(t)
	srv.InstallPolicyCRD(t)
	srv.CreateNamespace(t, "shop")
	bin := buildKscmp(t)
	kubeconfig := srv.Kubeconfig(t)
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dyn := dynamic.NewForConfigOrDie(srv.Config)
	const final = 100

	for i := range 20 {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i), Namespace: "shop", Labels: map[string]string{"app": fmt.Sprintf("w%d", i)}},
			Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}
		if _, err := srv.Client.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setPolicy := func(i, gen int) {
		u := &unstructured.Unstructured{}
		calls := "[read, write, getpid"
		for j := range gen % 5 {
			calls += fmt.Sprintf(", %s", []string{"mkdirat", "openat", "close", "futex", "nanosleep"}[j])
		}
		if gen == final {
			calls += ", flock"
		}
		doc := fmt.Sprintf("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: p%d, namespace: shop}\nspec: {selector: {matchLabels: {app: w%d}}, seccomp: {syscalls: %s], action: Allow}}\n", i, i, calls)
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		apitest.Upsert(t, dyn.Resource(agent.PolicyResource).Namespace("shop"), u)
	}
	start := func() *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, "agent", "--mode", "enforce", "--kubeconfig", kubeconfig, "--node", "node-a", "--kubelet-root", root)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	checkWhole := func() int {
		n := 0
		filepath.WalkDir(filepath.Join(root, "seccomp"), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if strings.Contains(d.Name(), ".tmp-") {
				return nil // a killed write's temporary file: never read by the kubelet, removed by the next agent
			}
			data, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("%s: %v", p, err)
			}
			var prof map[string]any
			if json.Unmarshal(data, &prof) != nil || prof["defaultAction"] == nil {
				t.Errorf("partial profile %s: %q", p, data)
			}
			n++
			return nil
		})
		return n
	}

	// Each agent is killed as soon as a write of it is under way (a
	// temporary file shows that an earlier agent did not leave); a kill
	// counts as one that hit a write when such a file is still there
	// after the agent died.
	const kills = 8
	hits := 0
	for gen := range kills {
		left := tempFiles(filepath.Join(root, "seccomp"))
		a := start()
		for i := range 20 {
			setPolicy(i, gen)
		}
		awaitWrite(filepath.Join(root, "seccomp"), left, 10*time.Second)
		a.Process.Signal(syscall.SIGKILL)
		a.Wait()
		if len(newTempFiles(filepath.Join(root, "seccomp"), left)) > 0 {
			hits++
		}
		checkWhole()
	}
	t.Logf("%d of %d kills hit a write", hits, kills)
	if hits == 0 {
		t.Errorf("none of the %d kills hit a write (no temporary file left by the dead agent): \"never a partial profile\" was not tested", kills)
	}
	// The last agent must reach the last state of every policy.
	a := start()
	defer func() { a.Process.Signal(syscall.SIGTERM); a.Wait() }()
	for i := range 20 {
		setPolicy(i, final)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := checkWhole()
		tmp := tempFiles(filepath.Join(root, "seccomp"))
		latest := 0
		for i := range 20 {
			data, err := os.ReadFile(filepath.Join(root, "seccomp", filepath.FromSlash(agent.ProfilePath("shop", fmt.Sprintf("p%d", i)))))
			if err == nil && strings.Contains(string(data), `"flock"`) {
				latest++
			}
		}
		if n == 20 && len(tmp) == 0 && latest == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no convergence after the kills: %d profiles, %d up to date, temporary files %v", n, latest, tmp)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tempFiles returns the temporary files of unfinished writes
// (fsutil.IsTemp) below dir, sorted.
func tempFiles(dir string) []string {
	var tmp []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && fsutil.IsTemp(d.Name()) {
			tmp = append(tmp, p)
		}
		return nil
	})
	return tmp
}

// newTempFiles returns the temporary files below dir that are not in old
// (what an earlier, killed run left), sorted.
func newTempFiles(dir string, old []string) []string {
	return slices.DeleteFunc(tempFiles(dir), func(p string) bool { return slices.Contains(old, p) })
}

// awaitWrite returns as soon as a write below dir is under way (a
// temporary file not in old is there), or after timeout; it reports which.
func awaitWrite(dir string, old []string, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Microsecond) {
		if len(newTempFiles(dir, old)) > 0 {
			return true
		}
	}
	return false
}

// TestListenAddr: the DaemonSet's "$(HOST_IP):9476" listens on an IPv6
// node IP too; other addresses are left as given.
func TestListenAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.244.0.1:9476": "10.244.0.1:9476",
		"fd00::1:9476":    "[fd00::1]:9476",
		"[fd00::1]:9476":  "[fd00::1]:9476",
		":9476":           ":9476",
		"localhost:9476":  "localhost:9476",
		"not an address":  "not an address",
	} {
		if got := listenAddr(in); got != want {
			t.Errorf("listenAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
