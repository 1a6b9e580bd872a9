# kscmp: make build | test | bench | lint | demo | generate
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin/kscmp
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
CONTROLLER_GEN := $(GO) run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0
# Fuzzing time per target in `make test` (CI); longer runs: make fuzz FUZZTIME=10m
FUZZTIME ?= 15s

.PHONY: build test unit e2e fuzz bench bench-overhead bench-agent lint generate verify-generated demo demo-host deps testbin nspawn-tree clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/kscmp

deps:
	hack/deps.sh test
	hack/e2e-deps.sh

# The end-to-end proof on real servers (nginx, redis, python http.server):
# discover → recommend → merge → the same load under runc and crun.
e2e:
	hack/e2e-deps.sh
	$(GO) test -count=1 -v -run . ./e2e/

# The README's test command: installs what the tests need (Debian packages;
# kube-apiserver and etcd built from the Go module proxy into
# ~/.cache/kscmp-testbin, reused), then runs every test (privileged ones too:
# run as root) and a bounded fuzz run.
test: deps testbin nspawn-tree unit fuzz

# kube-apiserver and etcd for the integration tests (cold: ~13 min on 2 cores).
testbin:
	hack/testbin.sh >/dev/null

# The Debian tree with systemd that internal/nspawntest boots with
# systemd-nspawn, in ~/.cache/kscmp-nspawn (cold: about a minute; root).
nspawn-tree:
	hack/nspawn-tree.sh >/dev/null

unit:
	$(GO) test -count=1 -timeout 20m ./...

fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./api
	$(GO) test -run='^$$' -fuzz='^FuzzMerge$$' -fuzztime=$(FUZZTIME) ./merge
	$(GO) test -run='^$$' -fuzz='^FuzzRead$$' -fuzztime=$(FUZZTIME) ./api/report
	$(GO) test -run='^$$' -fuzz='^FuzzRecommend$$' -fuzztime=$(FUZZTIME) ./recommend

bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./merge/...

# The recorder's cost per system call against no tracing and an empty
# program on the same hook (root; run on an idle machine).
bench-overhead:
	$(GO) test -count=1 -v -run='^$$' -bench=Overhead -benchtime=1x ./discover/

# The agent with 1,000 policies and 500 pods on a real API server (make testbin).
bench-agent:
	$(GO) test -count=1 -run='^$$' -bench=Agent -benchtime=3x ./cmd/kscmp/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...

generate:
	$(GO) generate ./bpf/...
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/... crd:crdVersions=v1 output:crd:dir=deploy/manifests/crd

# Regenerates into the tree and fails when anything changed.
verify-generated: generate
	@git diff --exit-code -- api bpf deploy/manifests/crd || { echo "generated files are stale: run make generate"; exit 1; }

demo: build
	hack/deps.sh demo
	hack/demo.sh $(BIN)

# The host loop on a real systemd (booted with systemd-nspawn from the
# cached tree): discover a service from the host, recommend, kscmp apply
# --systemd --restart, the service works and mkdir fails with EPERM, kscmp
# remove restores the unit; then a runc and a crun container through
# kscmp apply --dir. Prints every command and its output.
demo-host:
	hack/deps.sh test
	hack/nspawn-tree.sh >/dev/null
	$(GO) test -count=1 -run '^TestHost(SystemdLoop|ContainerLoop)$$' -v ./cmd/kscmp/ | hack/demo-filter.sh

clean:
	rm -rf bin
