# Image store and test registry targets. Include from the top-level Makefile:
#   include image/image.mk

.PHONY: test-image testregistry

# The store's tests need root for TestInsecureRegistryOnVeth (network
# namespace) and Debian's busybox-static (or apt access) for the test image.
test-image:
	go test ./image/ ./image/imagetest/...

# A registry holding busybox, e.g. inside a namespace:
#   ip netns exec NS bin/testregistry --listen 10.201.0.1:5000 --push-busybox busybox:latest
testregistry:
	go build -o bin/testregistry ./image/imagetest/cmd/testregistry
