package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// errNoCluster means no Kubernetes configuration was found.
var errNoCluster = errors.New("no Kubernetes configuration: no --kubeconfig, not in a cluster, no $KUBECONFIG or ~/.kube/config")

// restConfig finds the cluster: --kubeconfig, else the in-cluster
// configuration, else $KUBECONFIG or ~/.kube/config. It returns errNoCluster
// when there is none of them.
func restConfig(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	switch {
	case kubeconfig != "":
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	default:
		cfg, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			path := os.Getenv("KUBECONFIG")
			if path == "" {
				if home, herr := os.UserHomeDir(); herr == nil {
					path = filepath.Join(home, ".kube", "config")
				}
			}
			if _, serr := os.Stat(path); path == "" || serr != nil {
				return nil, errNoCluster
			}
			cfg, err = clientcmd.BuildConfigFromFlags("", path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes configuration: %w", err)
	}
	cfg.UserAgent = "kscmp/" + version
	return cfg, nil
}

// kubeClient is a clientset for restConfig's cluster.
func kubeClient(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// nodeName is --node, else $NODE_NAME (the downward API), else the host name.
func nodeName(flag string) string {
	if flag != "" {
		return flag
	}
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n
	}
	h, _ := os.Hostname()
	return h
}

// envDefault is flag, else $env, else def.
func envDefault(flag, env, def string) string {
	if flag != "" {
		return flag
	}
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}
