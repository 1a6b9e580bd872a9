// Package e2e holds kscmp's end-to-end tests on real servers: nginx,
// redis-server and Python's http.server, installed from Debian's packages
// (hack/e2e-deps.sh) and run in runc and crun containers whose root
// filesystem is made of read-only bind mounts of the host.
//
// Each test records a server under load with discover, turns the report into
// a seccomp profile, runs the same load again under that profile with runc
// and with crun (no false denial), and shows that a system call the server
// never made is refused with EPERM. The package has no non-test code; run
// the tests as root with
//
//	go test ./e2e/ -v
//
// They skip when a prerequisite is missing, naming it, and fail instead when
// the environment variable CI is "true".
package e2e
