# Make fragment for the guest bundle. Include it from the top-level Makefile:
#   include guest/guest.mk
# Target: guest — builds bin/guest/<arch>/{vmlinuz,initrd.img,floor-initrd.img,bundle.json}
# from Debian's cloud kernel (downloaded once into ${XDG_CACHE_HOME:-~/.cache}/vk-applevm/kernel;
# needs root, apt-get and dpkg-deb), the guest agent as /init and hack/floorinit.

GUEST_ARCH  ?= $(shell go env GOARCH)
GUEST_OUT   ?= bin/guest/$(GUEST_ARCH)
GUEST_BUILD := bin/guest/.build/$(GUEST_ARCH)
# The agent's build flags: guest.AgentBuildTags and guest.AgentLDFlags
# (guest/agentbuild.go says why; its test checks they match).
GUEST_AGENT_TAGS    := grpcnotrace
GUEST_AGENT_GCFLAGS := -gcflags=all=-l -gcflags=runtime=
GUEST_AGENT_LDFLAGS := -s -w -X=runtime.godebugDefault=disablethp=1,memprofilerate=0

.PHONY: guest
guest:
	mkdir -p $(GUEST_BUILD)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GUEST_ARCH) go build -trimpath -tags '$(GUEST_AGENT_TAGS)' $(GUEST_AGENT_GCFLAGS) \
		-ldflags '$(GUEST_AGENT_LDFLAGS)' -o $(GUEST_BUILD)/vk-applevm-agent ./cmd/vk-applevm-agent
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GUEST_ARCH) go build -trimpath -ldflags '-s -w' \
		-o $(GUEST_BUILD)/floorinit ./hack/floorinit
	go build -o $(GUEST_BUILD)/mkguest ./hack/mkguest
	$(GUEST_BUILD)/mkguest --arch $(GUEST_ARCH) --out $(GUEST_OUT) \
		--agent $(GUEST_BUILD)/vk-applevm-agent --floor-init $(GUEST_BUILD)/floorinit
