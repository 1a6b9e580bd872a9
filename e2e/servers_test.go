package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kubearmor/kscmp/merge"
)

// TestNginx serves static files with nginx (a master and two workers that
// change to www-data) under curl and wrk.
func TestNginx(t *testing.T) {
	runc, crun := requireTools(t, "/usr/sbin/nginx", "curl", "wrk")
	data := t.TempDir()
	files := writeSite(t, filepath.Join(data, "www"))
	mkdirAll(t, filepath.Join(data, "logs"), 0o755)
	w := &workload{
		name:       "nginx",
		args:       []string{"nginx", "-e", "stderr", "-p", dataDir + "/", "-c", dataDir + "/nginx.conf"},
		data:       data,
		stopSignal: syscall.SIGQUIT, // graceful shutdown
		setPort: func(t *testing.T, port int) {
			conf := fmt.Sprintf(`worker_processes 2;
daemon off;
master_process on;
user www-data;
pid /run/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
	include /etc/nginx/mime.types;
	sendfile on;
	tcp_nopush on;
	keepalive_timeout 30;
	access_log %[1]s/logs/access.log;
	client_body_temp_path /tmp/nginx-body;
	proxy_temp_path /tmp/nginx-proxy;
	fastcgi_temp_path /tmp/nginx-fastcgi;
	uwsgi_temp_path /tmp/nginx-uwsgi;
	scgi_temp_path /tmp/nginx-scgi;
	server {
		listen 127.0.0.1:%[2]d;
		root %[1]s/www;
		autoindex on;
	}
}
`, dataDir, port)
			writeFile(t, filepath.Join(data, "nginx.conf"), conf, 0o644)
		},
	}
	load := func(t *testing.T, s *server) {
		httpChecks(t, s.port, files)
		// A closing request with another one behind it: nginx closes
		// such a connection with a lingering close, shutdown() first, as
		// it closes one of wrk's connections that reaches
		// keepalive_requests while wrk's next request is already there
		// (a race: once seen under the profile after a recording that had
		// not met it).
		pipelinedClose(t, s.port, "/index.html")
		wrkLoad(t, s.port, "/index.html", 2, 16, 3*time.Second)
		wrkLoad(t, s.port, "/big.bin", 2, 8, 2*time.Second)
		if fi, err := os.Stat(filepath.Join(data, "logs", "access.log")); err != nil || fi.Size() == 0 {
			t.Errorf("nginx wrote no access log: %v", err)
		}
	}
	endToEnd(t, w, runc, crun, load)
}

// TestRedis runs redis-server (as the redis user, with an append-only file)
// under redis-benchmark's full default test set, then saves a snapshot and
// rewrites the append-only file in the background (forked children) and
// checks that no command failed.
func TestRedis(t *testing.T) {
	runc, crun := requireTools(t, "/usr/bin/redis-server", "redis-cli", "redis-benchmark")
	uid, gid := lookupUser(t, "redis")
	data := t.TempDir()
	if err := os.Chown(data, uid, gid); err != nil {
		t.Fatal(err)
	}
	w := &workload{
		name: "redis",
		user: specs.User{UID: uint32(uid), GID: uint32(gid)},
		data: data,
		// Every run starts empty, like the recorded one (no dataset to load).
		reset: func(t *testing.T) {
			entries, err := os.ReadDir(data)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if err := os.RemoveAll(filepath.Join(data, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
		},
		stopSignal: syscall.SIGTERM,
	}
	w.setPort = func(t *testing.T, port int) {
		w.args = []string{"redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
			"--dir", dataDir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "yes",
			"--appendfsync", "everysec", "--daemonize", "no", "--logfile", "", "--protected-mode", "yes"}
	}
	var firstTests []string
	load := func(t *testing.T, s *server) {
		p := strconv.Itoa(s.port)
		cli := func(args ...string) string {
			return strings.TrimSpace(command(t, 10*time.Second, "redis-cli", append([]string{"-h", "127.0.0.1", "-p", p}, args...)...))
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			got := cli("PING")
			if got == "PONG" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("PING: %q", got)
			}
		}
		value := randomText(t, 32)
		if got := cli("SET", "e2e:key", value); got != "OK" {
			t.Fatalf("SET: %q", got)
		}
		if got := cli("GET", "e2e:key"); got != value {
			t.Fatalf("GET: %q, want %q", got, value)
		}
		out := command(t, 60*time.Second, "redis-benchmark", "-h", "127.0.0.1", "-p", p, "-n", "5000", "-c", "20", "--csv")
		tests := benchmarkTests(t, out)
		if len(tests) < 15 {
			t.Fatalf("redis-benchmark completed only %d tests: %v\n%s", len(tests), tests, out)
		}
		if firstTests == nil {
			firstTests = tests
		} else if strings.Join(tests, "|") != strings.Join(firstTests, "|") {
			t.Errorf("redis-benchmark tests %v, want the recorded run's %v", tests, firstTests)
		}
		// A snapshot and a rewrite of the append-only file, both in a
		// forked child, one after the other.
		for _, bg := range []struct{ cmd, started, running, status string }{
			{"BGSAVE", "Background saving started", "rdb_bgsave_in_progress:0", "rdb_last_bgsave_status:ok"},
			{"BGREWRITEAOF", "Background append only file rewriting started", "aof_rewrite_in_progress:0", "aof_last_bgrewrite_status:ok"},
		} {
			if got := cli(bg.cmd); !strings.Contains(got, bg.started) {
				t.Fatalf("%s: %q", bg.cmd, got)
			}
			deadline := time.Now().Add(15 * time.Second)
			for {
				info := cli("INFO", "persistence")
				if strings.Contains(info, bg.running) {
					if !strings.Contains(info, bg.status) {
						t.Fatalf("%s failed:\n%s", bg.cmd, info)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s not done after 15 s:\n%s", bg.cmd, info)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		stats := cli("INFO", "stats")
		if m := regexp.MustCompile(`total_error_replies:(\d+)`).FindStringSubmatch(stats); m == nil || m[1] != "0" {
			t.Errorf("redis answered with errors (want total_error_replies:0):\n%s\n%s", cli("INFO", "errorstats"), cli("INFO", "commandstats"))
		}
		if fi, err := os.Stat(filepath.Join(data, "dump.rdb")); err != nil || fi.Size() == 0 {
			t.Errorf("no snapshot written: %v", err)
		}
	}
	endToEnd(t, w, runc, crun, load)
}

// TestPythonHTTPServer runs Debian's python3 -m http.server (as nobody)
// under curl and wrk. Its request threads are where restart_syscall shows
// up (see kernelCalls).
func TestPythonHTTPServer(t *testing.T) {
	runc, crun := requireTools(t, "/usr/bin/python3", "curl", "wrk")
	data := t.TempDir()
	files := writeSite(t, filepath.Join(data, "www"))
	w := &workload{
		name:        "python-http",
		user:        specs.User{UID: 65534, GID: 65534},
		data:        data,
		stopSignal:  syscall.SIGINT, // KeyboardInterrupt: exits with status 0
		idleThreads: 1,              // no request thread left
	}
	w.setPort = func(t *testing.T, port int) {
		// Debian's interpreter, not one found in PATH.
		w.args = []string{"/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", dataDir + "/www", strconv.Itoa(port)}
	}
	load := func(t *testing.T, s *server) {
		httpChecks(t, s.port, files)
		wrkLoad(t, s.port, "/index.html", 2, 8, 3*time.Second)
		wrkLoad(t, s.port, "/big.bin", 1, 2, 2*time.Second)
	}
	endToEnd(t, w, runc, crun, load)
}

// endToEnd is the proof for one server:
//  1. run it without a profile (runc) while load runs under discovery,
//  2. make its profile from the report, per runtime,
//  3. run it again under the profile with runc and with crun: load must
//     pass again and the server must stop cleanly,
//  4. a call it never made (a probe's) is refused with EPERM, while the
//     probe succeeds without the profile,
//  5. under the profile, whose clone, unshare and socket are conditioned
//     on the arguments observed, unshare -U, unshare -U -n and ip link
//     (netlink) are refused, while the load (TCP, forks, threads) passed.
func endToEnd(t *testing.T, w *workload, runc, crun string, load func(*testing.T, *server)) {
	w.prepare(t)

	// 1. Record.
	start := time.Now()
	name := newName(t, "e2e-"+w.name+"-")
	rec := recordContainer(t, name)
	s := w.startNamed(t, runc, nil, name)
	load(t, s)
	s.stop(t)
	report := rec.finish(t)
	own := recordedSet(t, report, s.name)
	t.Logf("%s: recorded %d calls in %v", w.name, len(own), time.Since(start).Round(time.Millisecond))
	probes := w.recordProbes(t, runc)

	for _, rt := range []struct {
		bin string
		rt  merge.Runtime
	}{{runc, merge.RuntimeRunc}, {crun, merge.RuntimeCrun}} {
		t.Run(string(rt.rt), func(t *testing.T) {
			start := time.Now()
			// 2. The profile.
			profile := profileFromReport(t, report, s.name, rt.rt)
			allowed := allowedCalls(t, profile)
			logFigures(t, w.name, rt.rt, allowed, own)
			checkKernelCalls(t, allowed)
			// 3. The same load under the profile.
			s := w.start(t, rt.bin, profile)
			load(t, s)
			res := s.stop(t)
			if strings.Contains(res.Stderr, "Operation not permitted") || strings.Contains(res.Stdout, "Operation not permitted") {
				t.Errorf("%s under %s reported EPERM:\nstdout: %s\nstderr: %s", w.name, rt.rt, tail(res.Stdout), tail(res.Stderr))
			}
			// 4. A call it never made is refused.
			w.checkProbes(t, rt.bin, rt.rt, probes, profile)
			// 5. Doors the server's own calls open are shut by their
			// arguments: user and network namespaces, netlink.
			w.checkArgProbes(t, rt.bin, rt.rt, probes, profile)
			t.Logf("%s under %s: %v", w.name, rt.rt, time.Since(start).Round(time.Millisecond))
		})
	}
}

// ---------------------------------------------------------------------------
// Test data and checks

// siteFile is a file served over HTTP and its expected body.
type siteFile struct {
	path string
	body []byte
}

// writeSite writes a small static site into dir (world-readable): an
// index page, a 1 MiB random file and a page in a subdirectory.
func writeSite(t *testing.T, dir string) []siteFile {
	t.Helper()
	mkdirAll(t, filepath.Join(dir, "sub"), 0o755)
	big := make([]byte, 1<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	files := []siteFile{
		{"/index.html", []byte("<html><body>kscmp e2e " + randomText(t, 16) + "</body></html>\n")},
		{"/big.bin", big},
		{"/sub/page.txt", []byte("page " + randomText(t, 16) + "\n")},
	}
	for _, f := range files {
		writeFile(t, filepath.Join(dir, f.path), string(f.body), 0o644)
	}
	// The temp dirs above are private to root; the servers run as other users.
	for d := dir; d != filepath.Dir(filepath.Dir(dir)); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// httpChecks fetches every file three times with curl (200 and the exact
// body), the root (200) and a missing path (404).
func httpChecks(t *testing.T, port int, files []siteFile) {
	t.Helper()
	tmp := t.TempDir()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	get := func(path string, wantCode string) []byte {
		out := filepath.Join(tmp, "body")
		code := command(t, 15*time.Second, "curl", "-sS", "--max-time", "10", "-o", out, "-w", "%{http_code}", base+path)
		if code != wantCode {
			t.Errorf("GET %s: HTTP %s, want %s", path, code, wantCode)
		}
		body, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	for i := 0; i < 3; i++ {
		for _, f := range files {
			if body := get(f.path, "200"); !bytes.Equal(body, f.body) {
				t.Errorf("GET %s: body of %d bytes differs from the file's %d bytes", f.path, len(body), len(f.body))
			}
		}
	}
	if body := get("/", "200"); !bytes.Contains(body, []byte("kscmp e2e")) && !bytes.Contains(body, []byte("index.html")) {
		t.Errorf("GET /: unexpected body %q", tail(string(body)))
	}
	get("/no-such-file", "404")
}

// pipelinedClose sends two requests for path in one write, the first with
// "Connection: close", and reads the answer to the end.
func pipelinedClose(t *testing.T, port int, path string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n"
	if _, err := c.Write([]byte(req + "Connection: close\r\n\r\n" + req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("pipelined GET %s: %v", path, err)
	}
	if !bytes.HasPrefix(out, []byte("HTTP/1.1 200")) {
		t.Errorf("pipelined GET %s: %q", path, tail(string(out)))
	}
}

// wrkLoad runs wrk against path and fails the test on any socket error or
// non-2xx/3xx answer.
func wrkLoad(t *testing.T, port int, path string, threads, conns int, d time.Duration) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, path)
	out := command(t, d+30*time.Second, "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", fmt.Sprintf("%ds", int(d.Seconds())), "--timeout", "5s", url)
	m := regexp.MustCompile(`(\d+) requests in`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" {
		t.Fatalf("wrk %s: no requests completed:\n%s", url, out)
	}
	if strings.Contains(out, "Socket errors") || strings.Contains(out, "Non-2xx") {
		t.Errorf("wrk %s: failed requests:\n%s", url, out)
	}
	t.Logf("wrk %s: %s requests", path, m[1])
}

// benchmarkTests returns the names of the tests redis-benchmark --csv
// reports with a positive rate; it fails the test on error lines.
func benchmarkTests(t *testing.T, out string) []string {
	t.Helper()
	var tests []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 2 || f[0] == `"test"` {
			continue
		}
		name := strings.Trim(f[0], `"`)
		rps, err := strconv.ParseFloat(strings.Trim(f[1], `"`), 64)
		if err != nil || rps <= 0 {
			t.Errorf("redis-benchmark: bad line %q", line)
			continue
		}
		tests = append(tests, name)
	}
	if strings.Contains(out, "Error") || strings.Contains(out, "ERR") {
		t.Errorf("redis-benchmark reported errors:\n%s", out)
	}
	return tests
}

func lookupUser(t *testing.T, name string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("user %s: %v (installed by its Debian package)", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

func randomText(t *testing.T, n int) string {
	t.Helper()
	return newName(t, "")[:min(n, 12)]
}

func mkdirAll(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}
