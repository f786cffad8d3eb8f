# macOS (Virtualization.framework) targets.
#
# Include from the top-level Makefile:  include deploy/darwin.mk
# or run on its own from the repo root: make -f deploy/darwin.mk check-darwin
#
#   check-darwin        type-check the project for darwin/arm64 with cgo, from any host,
#                       and hold the darwin-only code to its bound (darwin-lines)
#   darwin-lines        count the lines of every file that builds only for darwin (the code
#                       no Linux run executes); fails above 600 lines of code
#                       (hack/checkdarwin: MaxGlueCodeLines)
#   sign                (macOS) codesign VZ_BINARIES with the virtualization entitlement
#   test-darwin         (macOS) platform-neutral unit tests incl. vm/vz, test binaries signed
#   guest-darwin        the vz guest bundle in bin/guest/arm64 (vk-applevm kernel fetch: the pinned
#                       arm64 kernel, an initrd of the arm64 agent); from the top-level Makefile only,
#                       which knows how to build bin/vk-applevm and the agent
#   test-darwin-e2e     (a real Mac) the CLI end-to-end cases on vz (e2e/harness_darwin_test.go)
#   test-vz-integration (a real Mac) boot tests; needs VKAV_VZ_KERNEL=<arm64 Image>

GO ?= go
DARWIN_ENTITLEMENTS ?= deploy/vz.entitlements
# Every binary that links Code-Hex/vz: vk-applevm-shim runs each VM (the VM
# lives in that process); vk-applevm checks the host with vz and can still
# run as a shim (`vk-applevm shim`).
VZ_BINARIES ?= bin/vk-applevm bin/vk-applevm-shim
# Packages whose unit tests run on macOS (the rest of the project tests
# Linux-only machinery: QEMU, network namespaces).
DARWIN_TEST_PKGS ?= ./vm/ ./vm/vz/... ./guest/kernelfetch/... ./hack/checkdarwin/... ./agent/logframe/... \
	./agent/binfmt/... ./container/ ./network/vznat/... ./internal/crilog/... ./cmd/vk-applevm/ \
	./internal/debbin/... ./agent/dhcp/... ./deploy/
CODESIGN_EXEC = $(CURDIR)/hack/codesign-exec.sh
# Where the vz guest bundle goes: the CLI's default --guest on Apple silicon.
DARWIN_GUEST_DIR ?= bin/guest/arm64

.PHONY: check-darwin darwin-lines sign test-darwin test-vz-integration guest-darwin test-darwin-e2e

check-darwin: darwin-lines
	$(GO) run ./hack/checkdarwin ./...
	$(GO) run ./hack/checkdarwin -tags vz_integration ./vm/vz/...

darwin-lines:
	$(GO) run ./hack/checkdarwin -glue

sign:
	@if [ "$$(uname -s)" != Darwin ]; then echo "sign: codesign exists only on macOS" >&2; exit 1; fi
	@for b in $(VZ_BINARIES); do \
	  test -f "$$b" || { echo "sign: $$b is not built" >&2; exit 1; }; \
	  codesign -f --entitlements $(DARWIN_ENTITLEMENTS) -s - "$$b" || exit 1; \
	  codesign -d --entitlements - "$$b" 2>&1 | grep -q com.apple.security.virtualization || \
	    { echo "sign: $$b lacks com.apple.security.virtualization after signing" >&2; exit 1; }; \
	  echo "signed $$b"; \
	done

test-darwin:
	$(GO) test -exec "$(CODESIGN_EXEC)" $(DARWIN_TEST_PKGS)

# Downloads Kata's arm64 release (about 600 MB) the first time; later runs
# only rebuild the initrd, since the installed kernel matches the pin.
guest-darwin: bin/vk-applevm bin/vk-applevm-agent-linux-arm64
	bin/vk-applevm --guest $(DARWIN_GUEST_DIR) kernel fetch --agent bin/vk-applevm-agent-linux-arm64

test-darwin-e2e: guest-darwin
	$(GO) test -exec "$(CODESIGN_EXEC)" -v ./e2e

test-vz-integration:
	@test -n "$$VKAV_VZ_KERNEL" || { echo "set VKAV_VZ_KERNEL to an arm64 Image (vk-applevm kernel fetch installs one)" >&2; exit 1; }
	$(GO) test -tags vz_integration -exec "$(CODESIGN_EXEC)" -run Boot -v ./vm/vz/
