// Package apitest runs a real Kubernetes API server for integration tests:
// kube-apiserver backed by its own etcd, both on free 127.0.0.1 ports, with
// their data under t.TempDir.
//
//	s := apitest.Start(t)
//	s.CreateNamespace(t, "demo")
//	cs := kubernetes.NewForConfigOrDie(s.Config)
//
// The binaries are the ones hack/testbin.sh (make testbin) builds from the Go
// module proxy into $KSCMP_TESTBIN/<KubeVersion>, $KSCMP_TESTBIN defaulting to
// $HOME/.cache/kscmp-testbin. When they are missing, Start skips the test, or
// fails it when CI=true.
//
// What the server is and is not:
//
//   - Authentication is by client certificates from a CA that Start
//     generates (it also signs the serving certificate, so TLS is verified).
//     Config is an admin in group system:masters; UserConfig mints a
//     certificate for any other user and groups.
//   - Authorization is RBAC only. system:masters bypasses it, every other
//     user has just the bootstrap roles (system:basic-user, ...) until a test
//     binds more.
//   - There is no controller-manager, scheduler or kubelet: nothing creates
//     ServiceAccounts or tokens, garbage-collects, finalizes deleted
//     namespaces (they stay Terminating) or runs pods. Pods are only stored.
//   - The default admission plugins run, ServiceAccount included, as in a
//     real cluster: a pod is admitted only when its ServiceAccount exists.
//     Start creates the "default" ServiceAccount of namespace "default", and
//     CreateNamespace creates a namespace with its "default" ServiceAccount.
//   - Privileged containers are allowed (--allow-privileged), as on kubeadm
//     clusters.
//
// Both processes run in their own process groups and are killed in
// t.Cleanup. They are also started with a parent-death signal, so they die
// with the test binary when it exits without running the cleanups (for
// example on a -timeout panic).
package apitest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// KubeVersion is the kube-apiserver version the tests run, the
// subdirectory of $KSCMP_TESTBIN that holds the binaries. It matches
// k8s.io/client-go in go.mod and the default of hack/testbin.sh; the
// environment variable KSCMP_KUBE_VERSION overrides it (for both).
const KubeVersion = "v1.37.2"

// startTimeout bounds the wait for etcd and kube-apiserver to become ready.
const startTimeout = 60 * time.Second

// Server is a running kube-apiserver.
type Server struct {
	// Config authenticates as the admin "apitest-admin" in group
	// system:masters (client certificate) and verifies the serving
	// certificate against CAData.
	Config *rest.Config
	// URL is the https URL of the API server, as in Config.Host.
	URL string
	// CAData is the PEM certificate of the CA that signed the serving
	// certificate and the client certificates.
	CAData []byte
	// Client is a clientset for Config.
	Client kubernetes.Interface
	// EtcdURL is the client URL of the server's etcd.
	EtcdURL string

	ca    *x509.Certificate
	caKey crypto.Signer
}

// Start starts etcd and kube-apiserver on free 127.0.0.1 ports with data in
// t.TempDir(), waits until /readyz is ok, and stops both (and removes their
// data) in t.Cleanup. It finds the binaries in $KSCMP_TESTBIN/<version> (as
// hack/testbin.sh builds them); when they are missing it skips the test with a
// message naming `make testbin`, except when CI=true, then it fails it.
func Start(t testing.TB) *Server {
	t.Helper()
	dir := binDir()
	apiserverBin := filepath.Join(dir, "kube-apiserver")
	etcdBin := filepath.Join(dir, "etcd")
	for _, b := range []string{apiserverBin, etcdBin} {
		if fi, err := os.Stat(b); err != nil || fi.Mode()&0o111 == 0 {
			testenv.Missing(t, fmt.Sprintf("%s: run `make testbin` (hack/testbin.sh) to build kube-apiserver and etcd %s", b, version()))
		}
	}

	// Registered before the process cleanups, so it runs after them: the
	// data is removed once both processes are dead.
	tmp := t.TempDir()
	s := &Server{}
	if err := s.writeCerts(tmp); err != nil {
		t.Fatalf("apitest: %v", err)
	}

	// A free port can be taken by someone else before the process binds it:
	// start again on other ports when that happens.
	attempt := 0
	err := testenv.OnFreePorts(t, 3, 3, func(ports []int) error {
		attempt++
		work := filepath.Join(tmp, "run"+strconv.Itoa(attempt))
		if err := os.Mkdir(work, 0o700); err != nil {
			return err
		}
		inUse, err := s.start(t, tmp, work, etcdBin, apiserverBin, ports)
		if inUse {
			return fmt.Errorf("%w: %w", testenv.ErrPortInUse, err)
		}
		return err
	})
	if err != nil {
		t.Fatalf("apitest: %v", err)
	}

	// Nothing else creates ServiceAccounts (no controller-manager).
	s.createServiceAccount(t, metav1.NamespaceDefault)
	return s
}

// start starts etcd and kube-apiserver on ports (etcd's client and peer
// port, the API server's) with their files in work, and fills in s. inUse
// reports whether the error came from a port that was already taken.
func (s *Server) start(t testing.TB, certs, work, etcdBin, apiserverBin string, ports []int) (inUse bool, err error) {
	deadline := time.Now().Add(startTimeout)
	clientURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])

	etcd, err := startProcess(work, "etcd", etcdBin,
		"--name=apitest",
		"--data-dir="+filepath.Join(work, "etcd-data"),
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=apitest="+peerURL,
		"--initial-cluster-state=new",
		// The data is thrown away: no need to wait for the disk.
		"--unsafe-no-fsync",
	)
	if err != nil {
		return false, err
	}
	t.Cleanup(etcd.stop)
	if err := waitReady(deadline, &http.Client{Timeout: 5 * time.Second}, clientURL+"/health", etcd); err != nil {
		etcd.stop()
		return etcd.portInUse(), etcd.failure(err)
	}

	url := "https://127.0.0.1:" + strconv.Itoa(ports[2])
	apiserver, err := startProcess(work, "kube-apiserver", apiserverBin,
		"--etcd-servers="+clientURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(ports[2]),
		"--cert-dir="+filepath.Join(work, "cert-dir"),
		"--tls-cert-file="+filepath.Join(certs, "serving.crt"),
		"--tls-private-key-file="+filepath.Join(certs, "serving.key"),
		"--client-ca-file="+filepath.Join(certs, "ca.crt"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(certs, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(certs, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		// No other apiserver and no reachable endpoint for the kubernetes
		// service on loopback: do not manage its endpoints.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
	)
	if err != nil {
		return false, err
	}
	t.Cleanup(apiserver.stop)

	s.URL = url
	s.EtcdURL = clientURL
	s.Config = s.UserConfig(t, "apitest-admin", "system:masters")
	client, err := rest.HTTPClientFor(s.Config)
	if err != nil {
		return false, err
	}
	client.Timeout = 5 * time.Second
	if err := waitReady(deadline, client, url+"/readyz", apiserver); err != nil {
		apiserver.stop()
		etcd.stop()
		return apiserver.portInUse(), apiserver.failure(err)
	}
	// Runs before the stop above: show what the server said when a test
	// using it failed.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("apitest: kube-apiserver log (tail):\n%s", apiserver.tail(30))
		}
	})
	s.Client, err = kubernetes.NewForConfig(s.Config)
	return false, err
}

// UserConfig returns a rest.Config for the server that authenticates with a
// new client certificate for user name in groups. Use it to check what RBAC
// lets a user do; Config is the admin.
func (s *Server) UserConfig(t testing.TB, name string, groups ...string) *rest.Config {
	t.Helper()
	certPEM, keyPEM, err := s.issue(pkix.Name{CommonName: name, Organization: groups},
		x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		t.Fatalf("apitest: client certificate for %s: %v", name, err)
	}
	return &rest.Config{
		Host: s.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   s.CAData,
			CertData: certPEM,
			KeyData:  keyPEM,
		},
		UserAgent: "kscmp-apitest",
		// Tests create objects in bursts; client-go's default 5 QPS only
		// slows them down.
		QPS:   1000,
		Burst: 2000,
	}
}

// Kubeconfig writes a kubeconfig file for the server (admin credentials) into
// t.TempDir() and returns its path.
func (s *Server) Kubeconfig(t testing.TB) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["apitest"] = &clientcmdapi.Cluster{
		Server:                   s.URL,
		CertificateAuthorityData: s.CAData,
	}
	cfg.AuthInfos["apitest-admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: s.Config.CertData,
		ClientKeyData:         s.Config.KeyData,
	}
	cfg.Contexts["apitest"] = &clientcmdapi.Context{Cluster: "apitest", AuthInfo: "apitest-admin"}
	cfg.CurrentContext = "apitest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatalf("apitest: %v", err)
	}
	return path
}

// CreateNamespace creates the namespace name (when it does not exist) and its
// "default" ServiceAccount, which the ServiceAccount admission plugin needs
// before it admits pods and which no controller creates here.
func (s *Server) CreateNamespace(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := s.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("apitest: create namespace %s: %v", name, err)
	}
	s.createServiceAccount(t, name)
}

func (s *Server) createServiceAccount(t testing.TB, namespace string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if _, err := s.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("apitest: create service account %s/default: %v", namespace, err)
	}
}

// version is the subdirectory of the binaries.
func version() string {
	if v := os.Getenv("KSCMP_KUBE_VERSION"); v != "" {
		return v
	}
	return KubeVersion
}

// BinDir is where hack/testbin.sh puts the binaries (with its `cluster`
// argument, the kubelet, controller manager, scheduler and kubectl too).
func BinDir() string { return binDir() }

// binDir is where hack/testbin.sh puts the binaries. A relative
// $KSCMP_TESTBIN is taken relative to the module root, where make runs.
func binDir() string {
	root := os.Getenv("KSCMP_TESTBIN")
	switch {
	case root == "":
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		root = filepath.Join(home, ".cache", "kscmp-testbin")
	case !filepath.IsAbs(root):
		if mod := moduleRoot(); mod != "" {
			root = filepath.Join(mod, root)
		}
	}
	return filepath.Join(root, version())
}

func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// waitReady polls url until it answers 200, p exits or the deadline passes.
func waitReady(deadline time.Time, client *http.Client, url string, p *process) error {
	var last string
	for {
		select {
		case <-p.done:
			return fmt.Errorf("exited before it was ready: %v", p.err)
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v; last check: %s", startTimeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// process is a started etcd or kube-apiserver.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string        // path of its combined stdout and stderr
	done chan struct{} // closed when it has exited and err is set
	err  error
}

// startProcess starts bin in its own process group with its output in
// dir/name.log.
func startProcess(dir, name, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// Killed when the test binary dies without running cleanups.
		Pdeathsig: syscall.SIGKILL,
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal comes when the thread that started the
		// child exits, and Go ends a thread when a goroutine locked to it
		// returns. Start the child from a goroutine of its own, locked to its
		// thread and alive until the child has exited, so that the signal
		// comes only when the whole test binary dies.
		runtime.LockOSThread()
		defer logFile.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			close(p.done)
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

// stop kills the process group and waits for the process to exit.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	// The data is thrown away, so there is nothing to shut down gracefully.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// failure wraps err with the tail of the process's log.
func (p *process) failure(err error) error {
	return fmt.Errorf("%s: %w\n--- tail of %s ---\n%s", p.name, err, filepath.Base(p.log), p.tail(40))
}

func (p *process) portInUse() bool {
	return strings.Contains(p.tail(100), "address already in use")
}

// tail returns the last n lines of the process's log.
func (p *process) tail(n int) string {
	f, err := os.Open(p.log)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	const max = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(fi.Size()-max, io.SeekStart)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// writeCerts generates the CA, the serving certificate and the
// ServiceAccount signing key into dir, and sets s.CAData.
func (s *Server) writeCerts(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kscmp-apitest-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		return err
	}
	if s.ca, err = x509.ParseCertificate(der); err != nil {
		return err
	}
	s.caKey = caKey
	s.CAData = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})

	servingCert, servingKey, err := s.issue(pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1)})
	if err != nil {
		return err
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saPriv, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return err
	}

	for name, data := range map[string][]byte{
		"ca.crt":      s.CAData,
		"serving.crt": servingCert,
		"serving.key": servingKey,
		"sa.key":      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: saPriv}),
		"sa.pub":      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// issue returns a PEM certificate signed by the CA and its PEM private key.
func (s *Server) issue(subject pkix.Name, usage x509.ExtKeyUsage, dnsNames []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
	if s.ca == nil {
		return nil, nil, errors.New("no CA")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    s.ca.NotBefore,
		NotAfter:     s.ca.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, key.Public(), s.caKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// PolicyCRD is kscmp's CustomResourceDefinition, relative to the module root.
const PolicyCRD = "deploy/manifests/crd/security.kubearmor.com_kubearmorseccomppolicies.yaml"

// NodeStatusCRD is the per-node status CRD the agents write, relative to
// the module root.
const NodeStatusCRD = "deploy/manifests/crd/security.kubearmor.com_kubearmorseccompnodestatuses.yaml"

// InstallPolicyCRD installs kscmp's own CustomResourceDefinitions: the
// policy (PolicyCRD) and the agents' per-node status (NodeStatusCRD).
func (s *Server) InstallPolicyCRD(t testing.TB) {
	t.Helper()
	s.InstallCRD(t, filepath.Join(testenv.ModuleRoot(t), PolicyCRD))
	s.InstallCRD(t, filepath.Join(testenv.ModuleRoot(t), NodeStatusCRD))
}

// AgentDaemonSet returns the agent DaemonSet of the manifests
// (deploy/manifests/agent/daemonset.yaml).
func AgentDaemonSet(t testing.TB) *appsv1.DaemonSet {
	t.Helper()
	path := filepath.Join(testenv.ModuleRoot(t), "deploy/manifests/agent/daemonset.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := sigsyaml.Unmarshal(data, &ds); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &ds
}

// InstallCRD creates the CustomResourceDefinition in the YAML file path and
// waits until it is established and served.
func (s *Server) InstallCRD(t testing.TB, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextv1.CustomResourceDefinition{}
	if err := sigsyaml.Unmarshal(data, crd); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	c, err := apiextclient.NewForConfig(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		got, err := c.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err == nil {
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue {
					// Established can come a moment before the resource is served.
					gv := crd.Spec.Group + "/" + crd.Spec.Versions[0].Name
					if _, err := s.Client.Discovery().ServerResourcesForGroupVersion(gv); err == nil {
						return
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("CRD %s not established: %v", crd.Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Upsert creates u through ri, or updates the object of that name, retrying
// on conflict: controllers under test (an agent writing the status) change
// objects while a test updates them.
func Upsert(t testing.TB, ri dynamic.ResourceInterface, u *unstructured.Unstructured) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		old, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = ri.Create(ctx, u, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		u.SetResourceVersion(old.GetResourceVersion())
		_, err = ri.Update(ctx, u, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("upsert %s: %v", u.GetName(), err)
	}
}
