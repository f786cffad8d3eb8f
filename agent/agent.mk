# Make fragment for the guest agent. Include it from the top-level Makefile:
#   include agent/agent.mk
# Targets: agent (static guest binaries), proto (regenerate agent/api and
# agent/api/agentgrpc).

AGENT_VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
AGENT_ARCHES  ?= amd64 arm64
AGENT_BINS    := $(foreach a,$(AGENT_ARCHES),bin/vk-applevm-agent-linux-$(a))
# Tags and GODEBUG defaults as guest.AgentBuildTags and guest.AgentLDFlags
# (guest/agentbuild.go says why; its test checks they match).
AGENT_TAGS    := grpcnotrace
AGENT_GCFLAGS := -gcflags=all=-l -gcflags=runtime=
AGENT_LDFLAGS := -s -w -X=runtime.godebugDefault=disablethp=1,memprofilerate=0 -X main.version=$(AGENT_VERSION)

.PHONY: agent proto
agent: $(AGENT_BINS)

# Always rebuilt: go's own cache makes an unchanged build cheap.
.PHONY: $(AGENT_BINS)
$(AGENT_BINS): bin/vk-applevm-agent-linux-%:
	CGO_ENABLED=0 GOOS=linux GOARCH=$* go build -trimpath -tags '$(AGENT_TAGS)' $(AGENT_GCFLAGS) -ldflags '$(AGENT_LDFLAGS)' \
		-o $@ ./cmd/vk-applevm-agent

# protoc comes from Debian's protobuf-compiler; the Go plugins run through
# `go run` at pinned versions (agent/api/gen/). The output is committed.
# The messages (package api, linked into the guest agent) get no gRPC code;
# the Agent service's grpc-go stubs go to package agentgrpc (host side).
# (protoc-gen-go-grpc writes nothing for agent.proto, which has no service.)
proto:
	protoc -I agent/api \
		--plugin=protoc-gen-go=agent/api/gen/protoc-gen-go \
		--plugin=protoc-gen-go-grpc=agent/api/gen/protoc-gen-go-grpc \
		--go_out=agent/api --go_opt=paths=source_relative \
		--go-grpc_out=agent/api --go-grpc_opt=paths=source_relative \
		agent/api/agent.proto agent/api/agentgrpc/agent_service.proto
