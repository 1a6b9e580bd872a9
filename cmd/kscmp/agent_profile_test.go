package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/internal/apitest"
	"github.com/kubearmor/kscmp/internal/ocitest"
)

// agentProc is one running `kscmp agent`, possibly behind a wrapper
// (kscmp exec, strace) that shares or owns its process.
type agentProc struct {
	cmd  *exec.Cmd
	pid  int // the agent itself: the one to signal
	log  *lockedBuffer
	done chan struct{}
	err  error // cmd.Wait's, once done is closed
}

// agentLauncher starts `kscmp agent` with args; wrappers go here.
type agentLauncher func(t *testing.T, args []string) *agentProc

// lockedBuffer collects a process's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startAgentProc starts cmd; pid finds the agent's process once it runs
// (nil: the command's own process is the agent).
func startAgentProc(t *testing.T, cmd *exec.Cmd, pid func(*exec.Cmd) int) *agentProc {
	t.Helper()
	p := &agentProc{cmd: cmd, log: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	p.pid = cmd.Process.Pid
	if pid != nil {
		p.pid = pid(cmd)
	}
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			syscall.Kill(p.pid, syscall.SIGKILL)
			<-p.done
		}
	})
	return p
}

func (p *agentProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the agent to end and returns how it ended.
func (p *agentProc) wait(t *testing.T, d time.Duration) syscall.WaitStatus {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("the agent did not end within %s; its log:\n%s", d, p.log)
	}
	return p.cmd.ProcessState.Sys().(syscall.WaitStatus)
}

// badLog reports a line that shows the agent was refused something or
// crashed.
func badLog(log string) string {
	for _, line := range strings.Split(log, "\n") {
		for _, bad := range []string{"operation not permitted", "fatal error", "panic:", "SIGSYS", "bad system call"} {
			if strings.Contains(line, bad) {
				return line
			}
		}
	}
	return ""
}

// daemonSetPod is the pod the manifests' DaemonSet makes on node.
func daemonSetPod(t *testing.T, node string) *corev1.Pod {
	t.Helper()
	ds := apitest.AgentDaemonSet(t)
	p := &corev1.Pod{ObjectMeta: ds.Spec.Template.ObjectMeta, Spec: ds.Spec.Template.Spec}
	p.Name, p.Namespace, p.Spec.NodeName = "kscmp-agent-x7k2p", ds.Namespace, node
	return p
}

// agentJob runs `kscmp agent --mode enforce --restart-workloads` through its
// whole job against a real API server, with launch starting it: start-up,
// list and watch, profiles installed, rewritten and removed as policies are
// created, updated and deleted, status and Events, refused policies, a
// workload rolled, SIGTERM; then a SIGKILL in the middle of reconciling and
// a restart that converges and ends with SIGTERM again. The agent's own pod
// (the DaemonSet's, on this node) and its profile are there all along: the
// file must stay as it was installed.
func agentJob(t *testing.T, bin string, launch agentLauncher) {
	srv := apitest.Start(t)
	srv.InstallPolicyCRD(t)
	srv.CreateNamespace(t, "shop")
	srv.CreateNamespace(t, agent.OwnNamespace)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dyn := dynamic.NewForConfigOrDie(srv.Config)
	policies := dyn.Resource(agent.PolicyResource)
	kubeconfig, root := srv.Kubeconfig(t), t.TempDir()
	seccompDir := filepath.Join(root, "seccomp")
	const node = "node-a"

	// The agent's own pod and profile, as the DaemonSet's init container
	// leaves them.
	if _, err := srv.Client.CoreV1().ServiceAccounts(agent.OwnNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "kscmp-agent"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client.CoreV1().Pods(agent.OwnNamespace).Create(ctx, daemonSetPod(t, node), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "agent", "install-profile", "--kubelet-root", root).CombinedOutput(); err != nil {
		t.Fatalf("install-profile: %v\n%s", err, out)
	}
	ownPath := filepath.Join(seccompDir, filepath.FromSlash(agent.OwnProfile))
	own, err := os.ReadFile(ownPath)
	if err != nil {
		t.Fatal(err)
	}

	// Workloads on this node: a bare pod, and a Deployment's pod bound to
	// its profile (no controller-manager here: its ReplicaSet and pod are
	// made as the controllers would).
	labels := map[string]string{"app": "api"}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}
	one, yes := int32(1), true
	d, err := srv.Client.AppsV1().Deployments("shop").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := srv.Client.AppsV1().ReplicaSets("shop").Create(ctx, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "api-5d8f9",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "api", UID: d.UID, Controller: &yes}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	apiProfile := agent.ProfilePath("shop", "api")
	for _, p := range []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "api-5d8f9-abcde", Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "busybox",
				SecurityContext: &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &apiProfile}}}}}},
	} {
		if _, err := srv.Client.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setPolicy := func(ns, name, app, calls string) {
		u := &unstructured.Unstructured{}
		doc := fmt.Sprintf("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: %s, namespace: %s}\nspec: {selector: {matchLabels: {app: %s}}, seccomp: {syscalls: [%s], action: Allow}}\n", name, ns, app, calls)
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		apitest.Upsert(t, policies.Namespace(ns), u)
	}
	file := func(rel string) string {
		data, _ := os.ReadFile(filepath.Join(seccompDir, filepath.FromSlash(rel)))
		return string(data)
	}
	var a *agentProc
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for !cond() {
			if line := badLog(a.log.String()); line != "" {
				t.Fatalf("%s: the agent was refused something or crashed: %s\nits log:\n%s", what, line, a.log)
			}
			if a.exited() {
				t.Fatalf("%s: the agent ended (%v); its log:\n%s", what, a.err, a.log)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 90s; the agent's log:\n%s", what, a.log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	event := func(object, reason string) func() bool {
		return func() bool {
			evs, err := srv.Client.CoreV1().Events("").List(ctx, metav1.ListOptions{})
			if err != nil {
				return false
			}
			for _, e := range evs.Items {
				if e.InvolvedObject.Name == object && e.Reason == reason {
					return true
				}
			}
			return false
		}
	}
	ownKept := func() {
		t.Helper()
		if got, err := os.ReadFile(ownPath); err != nil || !bytes.Equal(got, own) {
			t.Fatalf("the agent's own profile was removed or changed (%v); the agent's log:\n%s", err, a.log)
		}
	}
	stop := func() {
		t.Helper()
		if err := syscall.Kill(a.pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if ws := a.wait(t, time.Minute); !ws.Exited() || ws.ExitStatus() != 0 {
			t.Fatalf("SIGTERM: the agent ended with %v, want exit status 0; its log:\n%s", a.err, a.log)
		}
		if line := badLog(a.log.String()); line != "" {
			t.Fatalf("the agent was refused something or crashed: %s\nits log:\n%s", line, a.log)
		}
	}
	args := []string{"agent", "--mode", "enforce", "--kubeconfig", kubeconfig, "--node", node, "--kubelet-root", root, "--restart-workloads"}

	// 1. Start-up, profiles, status, Events, updates, deletion, refusals, a
	// rolled workload; SIGTERM.
	setPolicy("shop", "web", "web", "read, write")
	setPolicy("shop", "api", "api", "read")
	a = launch(t, args)
	webProfile := agent.ProfilePath("shop", "web")
	waitFor("profiles installed", func() bool { return file(webProfile) != "" && file(apiProfile) != "" })
	waitFor("status written", func() bool {
		u, err := policies.Namespace("shop").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false
		}
		nodes, _, _ := unstructured.NestedStringSlice(u.Object, "status", "installedNodes")
		return slices.Equal(nodes, []string{node})
	})
	waitFor("Installed event", event("web", agent.ReasonInstalled))
	setPolicy("shop", "web", "web", "read, write, flock")
	waitFor("profile rewritten", func() bool { return strings.Contains(file(webProfile), `"flock"`) })
	setPolicy("shop", "api", "api", "read, getpid")
	waitFor("workload rolled for its rewritten profile", func() bool {
		d, err := srv.Client.AppsV1().Deployments("shop").Get(ctx, "api", metav1.GetOptions{})
		return err == nil && d.Spec.Template.Annotations[agent.RestartAnnotation] != ""
	})
	both := agent.ProfilePath("shop", "web+web2")
	setPolicy("shop", "web2", "web", "read, getppid")
	waitFor("merged profile, the old one removed", func() bool { return file(both) != "" && file(webProfile) == "" })
	// The node's status says web2 is installed a second after the change
	// (agent.DefaultStatusDelay); deleted before that, web2 was never on a
	// node as far as the status goes, and gets no Deleted Event.
	waitFor("web2's Installed event", event("web2", agent.ReasonInstalled))
	if err := policies.Namespace("shop").Delete(ctx, "web2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("deletion recomputed", func() bool { return file(webProfile) != "" && file(both) == "" })
	waitFor("Deleted event", event("web2", agent.ReasonDeleted))
	setPolicy("shop", "typo", "web", "red")
	waitFor("Refused event", event("typo", agent.ReasonRefused))
	// A policy that would overwrite the agent's own profile is refused.
	setPolicy(agent.OwnNamespace, agent.OwnName, "kscmp-agent", "read")
	waitFor("own name refused", event(agent.OwnName, agent.ReasonRefused))
	ownKept()
	stop()
	ownKept()

	// 2. SIGKILL in the middle of a write: the agent is killed as soon as
	// a temporary file shows, until one is still there after it died (a
	// write it did not finish), at most 5 times. A temporary file there
	// before the agent started is not its write.
	hit := false
	for try := 0; try < 5 && !hit; try++ {
		left := tempFiles(seccompDir)
		a = launch(t, args)
		for i := range 10 {
			setPolicy("shop", "web", "web", fmt.Sprintf("read, write, flock, getgid%s", strings.Repeat(", getpid", (i+try)%2)))
		}
		awaitWrite(seccompDir, left, 10*time.Second)
		if err := syscall.Kill(a.pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if ws := a.wait(t, time.Minute); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("the agent ended with %v before the SIGKILL; its log:\n%s", a.err, a.log)
		}
		if line := badLog(a.log.String()); line != "" {
			t.Fatalf("the agent was refused something or crashed: %s\nits log:\n%s", line, a.log)
		}
		hit = len(newTempFiles(seccompDir, left)) > 0
		t.Logf("kill %d: a write left unfinished: %v", try+1, hit)
	}
	if !hit {
		t.Fatal("no SIGKILL hit a write in 5 tries: a kill in the middle of a write was not tested")
	}

	// 3. Restart: the reload converges to the last state, leaves no
	// temporary file; SIGTERM.
	setPolicy("shop", "web", "web", "read, write, flock, getuid")
	a = launch(t, args)
	waitFor("converged after the SIGKILL", func() bool {
		tmp := false
		filepath.WalkDir(seccompDir, func(p string, d os.DirEntry, err error) error {
			tmp = tmp || (err == nil && strings.Contains(d.Name(), ".tmp-"))
			return nil
		})
		return !tmp && strings.Contains(file(webProfile), `"getuid"`) && strings.Contains(file(apiProfile), `"getpid"`)
	})
	ownKept()
	stop()
	ownKept()
}

// TestAgentUnderOwnProfile runs the built `kscmp agent --mode enforce` under
// the agent's own profile that the DaemonSet names (the one with bpf, for
// its default --attribute-exited), as `kscmp agent install-profile`
// installs it, with
// `kscmp exec` (the same filter, loaded in-process before the execve),
// through its whole job against a real API server (agentJob). A system call
// the agent needs and the profile lacks fails with EPERM, which the agent
// logs or dies of; then the test fails. To show that it would, the agent is
// also started under the profile without renameat (its atomic writes), and
// must fail.
func TestAgentUnderOwnProfile(t *testing.T) {
	bin := buildKscmp(t)
	dir := t.TempDir()
	out, err := exec.Command(bin, "agent", "install-profile", "--kubelet-root", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("install-profile: %v\n%s", err, out)
	}
	profile := filepath.Join(dir, "seccomp", filepath.FromSlash(agent.OwnBPFProfile))
	under := func(profile string) agentLauncher {
		return func(t *testing.T, args []string) *agentProc {
			cmd := exec.Command(bin, append([]string{"exec", "--profile", profile, "--", bin}, args...)...)
			// Frequent garbage collection: the runtime's rarer calls
			// (scavenger, preemption) happen under the filter too.
			cmd.Env = append(os.Environ(), "GOGC=25")
			return startAgentProc(t, cmd, nil)
		}
	}
	t.Run("job", func(t *testing.T) { agentJob(t, bin, under(profile)) })

	t.Run("without renameat the agent fails", func(t *testing.T) {
		data, err := os.ReadFile(profile)
		if err != nil {
			t.Fatal(err)
		}
		var prof struct {
			DefaultAction string            `json:"defaultAction"`
			Architectures []string          `json:"architectures"`
			Syscalls      []json.RawMessage `json:"syscalls"`
		}
		if err := json.Unmarshal(data, &prof); err != nil {
			t.Fatal(err)
		}
		var names struct {
			Names  []string `json:"names"`
			Action string   `json:"action"`
		}
		if err := json.Unmarshal(prof.Syscalls[0], &names); err != nil || names.Action != "SCMP_ACT_ALLOW" || !slices.Contains(names.Names, "renameat") {
			t.Fatalf("unexpected profile: %s", data)
		}
		names.Names = slices.DeleteFunc(names.Names, func(n string) bool { return n == "renameat" })
		prof.Syscalls[0], _ = json.Marshal(names)
		data, _ = json.Marshal(prof)
		reduced := filepath.Join(t.TempDir(), "without-renameat.json")
		if err := os.WriteFile(reduced, data, 0o644); err != nil {
			t.Fatal(err)
		}
		srv := apitest.Start(t)
		srv.InstallPolicyCRD(t)
		srv.CreateNamespace(t, "shop")
		if _, err := srv.Client.CoreV1().Pods("shop").Create(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		yaml.Unmarshal([]byte("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: web, namespace: shop}\nspec: {selector: {matchLabels: {app: web}}, seccomp: {syscalls: [read], action: Allow}}\n"), &u.Object)
		apitest.Upsert(t, dynamic.NewForConfigOrDie(srv.Config).Resource(agent.PolicyResource).Namespace("shop"), u)
		root := t.TempDir()
		a := under(reduced)(t, []string{"agent", "--mode", "enforce", "--kubeconfig", srv.Kubeconfig(t), "--node", "node-a", "--kubelet-root", root})
		deadline := time.Now().Add(90 * time.Second)
		for badLog(a.log.String()) == "" && !a.exited() {
			if time.Now().After(deadline) {
				t.Fatalf("the agent ran without renameat for 90s and reported no failure; its log:\n%s", a.log)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := os.Stat(filepath.Join(root, "seccomp", filepath.FromSlash(agent.ProfilePath("shop", "web")))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a profile was installed without renameat: %v", err)
		}
		t.Logf("without renameat: %s", badLog(a.log.String()))
	})
}

// TestAgentOwnProfileUnderRuntimes starts the agent as the DaemonSet does,
// in a container under its own profile, with runc and with crun (the
// profile holds both runtimes' start-up calls: merge.RuntimeAny): root,
// noNewPrivileges, the DaemonSet's capabilities, a read-only root file
// system, only the seccomp directory writable. The binary is built with
// CGO_ENABLED=0, as a container image would hold it (TestAgentUnderOwnProfile
// runs the cgo build). The host's network, to reach the test's API server on
// 127.0.0.1. It must install a policy's profile.
func TestAgentOwnProfileUnderRuntimes(t *testing.T) {
	runtimes := map[string]string{}
	for _, rt := range []string{"runc", "crun"} {
		runtimes[rt] = ocitest.Require(t, rt)
	}
	bin := filepath.Join(t.TempDir(), "kscmp")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	profileDir := t.TempDir()
	if out, err := exec.Command(bin, "agent", "install-profile", "--kubelet-root", profileDir).CombinedOutput(); err != nil {
		t.Fatalf("install-profile: %v\n%s", err, out)
	}
	// The profile the DaemonSet names: the agent's own plus bpf, for its
	// default --attribute-exited.
	profile, err := os.ReadFile(filepath.Join(profileDir, "seccomp", filepath.FromSlash(agent.OwnBPFProfile)))
	if err != nil {
		t.Fatal(err)
	}
	srv := apitest.Start(t)
	srv.InstallPolicyCRD(t)
	srv.CreateNamespace(t, "shop")
	ctx := context.Background()
	if _, err := srv.Client.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	yaml.Unmarshal([]byte("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorSeccompPolicy\nmetadata: {name: web, namespace: shop}\nspec: {selector: {matchLabels: {app: web}}, seccomp: {syscalls: [read], action: Allow}}\n"), &u.Object)
	apitest.Upsert(t, dynamic.NewForConfigOrDie(srv.Config).Resource(agent.PolicyResource).Namespace("shop"), u)
	kubeconfig := srv.Kubeconfig(t)

	for _, rt := range []string{"runc", "crun"} {
		t.Run(rt, func(t *testing.T) {
			rootfs := ocitest.BusyboxRootfs(t)
			data, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(rootfs, "kscmp"), data, 0o755); err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Join(rootfs, "var/lib/kubelet/seccomp"), 0o755)
			os.WriteFile(filepath.Join(rootfs, "kubeconfig"), nil, 0o644)
			seccompDir := t.TempDir()
			c := ocitest.Container{Runtime: runtimes[rt], Rootfs: rootfs, Seccomp: profile,
				Args: []string{"/kscmp", "agent", "--mode", "enforce", "--kubeconfig", "/kubeconfig", "--node", "node-a", "--kubelet-root", "/var/lib/kubelet"},
				// The DaemonSet's securityContext.
				NoNewPrivileges: true, ReadonlyRootfs: true,
				Capabilities: []string{"CAP_DAC_OVERRIDE", "CAP_CHOWN", "CAP_FOWNER", "CAP_AUDIT_READ", "CAP_AUDIT_CONTROL", "CAP_BPF", "CAP_PERFMON"},
				Mounts: []specs.Mount{
					{Destination: "/var/lib/kubelet/seccomp", Type: "bind", Source: seccompDir, Options: []string{"rbind", "rw"}},
					{Destination: "/kubeconfig", Type: "bind", Source: kubeconfig, Options: []string{"bind", "ro"}},
				},
				Adjust: func(s *specs.Spec) {
					// hostPID, as the DaemonSet (the violations monitor).
					s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool {
						return n.Type == specs.NetworkNamespace || n.Type == specs.PIDNamespace
					})
				},
			}
			rctx, stop := context.WithCancel(ctx)
			defer stop()
			type outcome struct {
				res ocitest.Result
				err error
			}
			done := make(chan outcome, 1)
			go func() {
				res, err := ocitest.Run(rctx, t, c)
				done <- outcome{res, err}
			}()
			want := filepath.Join(seccompDir, filepath.FromSlash(agent.ProfilePath("shop", "web")))
			deadline := time.Now().Add(90 * time.Second)
			for {
				if _, err := os.Stat(want); err == nil {
					break
				}
				select {
				case o := <-done:
					t.Fatalf("the agent's container ended (%v): exit %d\nstderr: %s\nruntime log: %s", o.err, o.res.ExitCode, o.res.Stderr, o.res.RuntimeLog)
				case <-time.After(50 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					stop()
					o := <-done
					t.Fatalf("no profile installed after 90s\nstderr: %s\nruntime log: %s", o.res.Stderr, o.res.RuntimeLog)
				}
			}
			stop()
			o := <-done
			if line := badLog(o.res.Stderr); line != "" {
				t.Errorf("the agent was refused something: %s\n%s", line, o.res.Stderr)
			}
		})
	}
}

// TestDaemonSetCommands: the DaemonSet's command lines are what this CLI
// takes, and install-profile prints the profile the agent runs under.
func TestDaemonSetCommands(t *testing.T) {
	pod := daemonSetPod(t, "node-a")
	initC, agentC := pod.Spec.InitContainers[0], pod.Spec.Containers[0]
	code, out, errs := runCLI(t, append(slices.Clone(initC.Args), "--dry-run")...)
	if code != exitOK {
		t.Fatalf("%v --dry-run: exit %d: %s", initC.Args, code, errs)
	}
	want, err := agent.OwnProfileJSON(api.Family(defaultFamily()))
	if err != nil || out != string(want) {
		t.Errorf("install-profile --dry-run printed another profile (%v):\n%s", err, out)
	}
	if code, _, errs := runCLI(t, append(slices.Clone(agentC.Args), "--help")...); code != exitOK {
		t.Errorf("%v: exit %d: %s", agentC.Args, code, errs)
	}
	if code, _, _ := runCLI(t, "agent", "install-profile", "--kubelet-root", "relative"); code != exitUsage {
		t.Errorf("a relative kubelet root: exit %d, want %d", code, exitUsage)
	}
}
