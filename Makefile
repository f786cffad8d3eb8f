# vk-applevm — a Kubernetes node whose every container is a VM.
#
#   make run     build everything, start a local control plane and the node,
#                run a demo Deployment and print the kubectl commands to use it
#   make test    everything the project tests (installs what it needs)
#   make bench   side-by-side benchmarks (ratios, one run)
#   make mac-check  one pass/fail table for a new machine (the first Mac)
#   make build   binaries into bin/
#
# First runs install Debian packages, download Debian's cloud kernel and
# build the control plane from the Go module proxy (about 10 minutes on 2
# cores); later runs reuse the caches.

SHELL   := /bin/bash
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Test timeout for `go test ./...`: VM boots are seconds under TCG.
TEST_TIMEOUT ?= 60m

include agent/agent.mk
include guest/guest.mk
include image/image.mk
include network/network.mk
include deploy/darwin.mk
include hack/cluster/cluster.mk

.PHONY: all build deps test test-unit test-e2e bench soak run stop fmt vet clean mac-check

all: build

# Debian packages the tests and the node need; installed only when missing.
DEB_PACKAGES := qemu-system-x86 qemu-system-common qemu-utils e2fsprogs busybox-static cpio kmod \
	iproute2
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "deps: run as root (apt-get install $$missing)" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

build: bin/vk-applevm bin/vk-applevm-shim agent bin/testregistry

ifeq ($(shell uname -s),Darwin)
# macOS: every binary that links Virtualization.framework is signed with
# deploy/vz.entitlements as part of the build (deploy/darwin.mk: sign).
build: sign
sign: bin/vk-applevm bin/vk-applevm-shim
endif

.PHONY: bin/vk-applevm bin/vk-applevm-shim bin/testregistry
bin/vk-applevm:
	$(GO) build -ldflags '$(LDFLAGS)' -o $@ ./cmd/vk-applevm

# The per-VM helper process; vk-applevm starts it from its own directory.
bin/vk-applevm-shim:
	$(GO) build -ldflags '$(LDFLAGS)' -o $@ ./cmd/vk-applevm-shim

bin/testregistry:
	$(GO) build -o $@ ./image/imagetest/cmd/testregistry

# The guest bundle needs the Debian tools from deps.
guest: deps

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

ifeq ($(shell uname -s),Darwin)
# macOS (Apple silicon): no apt-get, QEMU or network namespaces. Build and
# sign, the vz guest bundle (vk-applevm kernel fetch), the platform-neutral
# unit tests with signed test binaries, then the CLI end-to-end cases on
# vz (e2e/harness_darwin_test.go; needs a real Mac, not a hosted runner).
test: build fmt vet check-darwin guest-darwin
	$(GO) test -count=1 -exec "$(CODESIGN_EXEC)" -timeout $(TEST_TIMEOUT) $(DARWIN_TEST_PKGS)
	$(GO) test -count=1 -exec "$(CODESIGN_EXEC)" -timeout $(TEST_TIMEOUT) ./e2e
	$(MAKE) mac-check
else
# The whole suite: unit tests, real-VM tests, the node against a real
# control plane, virtual-kubelet's own e2e suite, the darwin type-check.
# -count=1: many tests run bin/ and the guest bundle, which go's test cache
# does not track, so a cached pass would not have tested the new build.
test: deps build guest controlplane fmt vet check-darwin
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -p 2 ./...
	$(MAKE) test-controlplane
	$(MAKE) mac-check
endif

# One command for a new machine, the first real Mac above all: doctor, a
# busybox VM, the agent's round trip, an exit code, VM↔VM traffic through
# the switch, chown on an emptyDir-style disk volume, a stop within its grace
# period, Rosetta (Mac only); prints the results and the versions (OS,
# chip, SDK, vz, kernel) as tables to paste into a report, and fails when a
# check does (hack/maccheck). On Linux the same checks run on QEMU, as part
# of make test. MACCHECK_FLAGS=-v prints every command.
ifeq ($(shell uname -s),Darwin)
mac-check: build guest-darwin
else
mac-check: deps build guest
endif
	$(GO) run ./hack/maccheck $(MACCHECK_FLAGS)

test-unit:
	$(GO) test -short ./...

bench: deps build guest controlplane
	$(GO) run ./hack/bench $(BENCH_FLAGS)
	$(GO) run ./hack/bench/readme

# A node left running: 200 pods created and deleted in waves, then nothing
# of them may be left (VMs, helpers, switch ports, addresses, files,
# descriptors; RSS flat). SOAK_FLAGS=-soak.pods=20 for a short one.
soak: deps build guest controlplane
	$(GO) test -tags soak -count=1 -timeout 90m -run '^TestSoak$$' -v ./e2e -args $(SOAK_FLAGS)

run: deps build guest controlplane
	$(GO) run ./hack/demo up

stop:
	$(GO) run ./hack/demo down

clean:
	rm -rf bin _output
