package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// KubeletRootSource says how KubeletRootDir found the directory.
type KubeletRootSource string

// The ways the kubelet's root directory is found, in the order they are tried.
const (
	RootFromFlag     KubeletRootSource = "flag"         // given by the user
	RootFromCmdline  KubeletRootSource = "kubelet"      // --root-dir of the running kubelet
	RootFromDistro   KubeletRootSource = "distribution" // a known distribution's default that exists
	RootFromFallback KubeletRootSource = "default"      // /var/lib/kubelet
)

// DefaultKubeletRoot is the kubelet's own default root directory (kubeadm,
// k3s, RKE2, GKE, EKS, AKS, OpenShift).
const DefaultKubeletRoot = "/var/lib/kubelet"

// distroRoots are the distributions whose kubelet root differs from the
// default, with the process that shows the distribution runs.
var distroRoots = []struct{ process, root string }{
	{"kubelite", "/var/snap/microk8s/common/var/lib/kubelet"}, // microk8s
	{"k0s", "/var/lib/k0s/kubelet"},                           // k0s
}

// kubeletProcesses run the kubelet, or embed it.
var kubeletProcesses = map[string]bool{"kubelet": true, "k3s": true, "k3s-server": true, "k3s-agent": true,
	"rke2": true, "kubelite": true, "k0s": true, "hyperkube": true}

// KubeletRootDir finds the kubelet's root directory (its seccomp profiles
// live in <root>/seccomp): flag when not empty; else --root-dir on the
// command line of a running kubelet (or --kubelet-arg=root-dir=… of k3s and
// RKE2, --kubelet-root-dir of k0s), read from procRoot (/proc); else the
// default of a distribution that runs here (microk8s, k0s); else
// /var/lib/kubelet.
func KubeletRootDir(flag, procRoot string) (string, KubeletRootSource, error) {
	if flag != "" {
		if !filepath.IsAbs(flag) {
			return "", "", fmt.Errorf("kubelet root dir %q: not an absolute path", flag)
		}
		return filepath.Clean(flag), RootFromFlag, nil
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return "", "", fmt.Errorf("kubelet root dir: %w", err)
	}
	running := map[string]bool{}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
		name := filepath.Base(args[0])
		if !kubeletProcesses[name] {
			continue
		}
		running[name] = true
		if dir := rootDirArg(args[1:]); dir != "" {
			return filepath.Clean(dir), RootFromCmdline, nil
		}
	}
	for _, d := range distroRoots {
		if running[d.process] {
			if st, err := os.Stat(d.root); err == nil && st.IsDir() {
				return d.root, RootFromDistro, nil
			}
		}
	}
	return DefaultKubeletRoot, RootFromFallback, nil
}

// rootDirArg finds the root directory in a kubelet-like command line.
func rootDirArg(args []string) string {
	for i, a := range args {
		for _, flag := range []string{"--root-dir", "--kubelet-root-dir"} {
			if v, ok := strings.CutPrefix(a, flag+"="); ok {
				return v
			}
			if a == flag && i+1 < len(args) {
				return args[i+1]
			}
		}
		// k3s and RKE2 pass kubelet flags as --kubelet-arg=root-dir=DIR
		// (or --kubelet-arg root-dir=DIR).
		v, ok := strings.CutPrefix(a, "--kubelet-arg=")
		if !ok && a == "--kubelet-arg" && i+1 < len(args) {
			v, ok = args[i+1], true
		}
		if ok {
			if dir, found := strings.CutPrefix(strings.TrimPrefix(v, "--"), "root-dir="); found {
				return dir
			}
		}
	}
	return ""
}
