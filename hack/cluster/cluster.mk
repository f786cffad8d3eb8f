# Local control plane for `make run` and the e2e tests (see hack/cluster).
# Included by the top-level Makefile; paths are relative to this file so the
# fragment works whatever the including Makefile's directory is.
#
#   make controlplane       build hack/bin/cluster and the control-plane binaries
#                           (etcd, kube-apiserver, -controller-manager, -scheduler, metrics-server)
#                           (first time ~8 min on 2 cores; cached after)
#   make test-controlplane  unit tests + the real up/down integration test (root)

CLUSTER_DIR  := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
CLUSTER_BIN  := $(abspath $(CLUSTER_DIR)/../bin)/cluster
CLUSTER_SRCS := $(shell find $(CLUSTER_DIR) -name '*.go' -o -name go.mod -o -name go.sum)

# hack/cluster is its own module: build it there, never through the root go.mod.
$(CLUSTER_BIN): $(CLUSTER_SRCS)
	cd $(CLUSTER_DIR) && GOWORK=off go build -o $(CLUSTER_BIN) .

.PHONY: controlplane test-controlplane
controlplane: $(CLUSTER_BIN)
	$(CLUSTER_BIN) build

test-controlplane: $(CLUSTER_BIN)
	cd $(CLUSTER_DIR) && GOWORK=off go vet ./...
	@cd $(CLUSTER_DIR) && out=$$(gofmt -l .) && if [ -n "$$out" ]; then echo "gofmt -w needed: $$out"; exit 1; fi
	cd $(CLUSTER_DIR) && GOWORK=off go test ./internal/...
	cd $(CLUSTER_DIR) && GOWORK=off go test -count=1 -timeout 30m -v -run '^TestUpDown$$' ./test/
